"""Tests for the moderation log's Merkle tree: shared vectors, known answers, properties."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moderation.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    CompactRange,
    ProofError,
    SubtreeHashes,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).resolve().parent.parent / "data" / "merkle" / "testdata"

# Leaf data of the reference tree used by the RFC 6962 test suites.
REFERENCE_DATA = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
REFERENCE_LEAVES = [leaf_hash(d) for d in REFERENCE_DATA]
REFERENCE_ROOTS = [
    bytes.fromhex(h)
    for h in (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]

INCLUSION_KEYS = {"leafIdx", "treeSize", "root", "leafHash", "proof", "desc", "wantErr"}
CONSISTENCY_KEYS = {"size1", "size2", "root1", "root2", "proof", "desc", "wantErr"}

PROPERTY_SETTINGS = settings(max_examples=40, deadline=None, database=None)
_BIT = st.integers(0, 8 * HASH_SIZE - 1)


def _load(kind: str) -> list[Any]:
    return [
        pytest.param(json.loads(path.read_text()), id=path.relative_to(VECTORS).as_posix())
        for path in sorted((VECTORS / kind).rglob("*.json"))
    ]


INCLUSION_CASES = _load("inclusion")
CONSISTENCY_CASES = _load("consistency")


def _hash(case: dict[str, Any], key: str) -> bytes:
    value = case.get(key)
    return b"" if value is None else base64.b64decode(value, validate=True)


def _proof(case: dict[str, Any]) -> list[bytes]:
    # Some vectors store an empty proof as null (or could omit it): both mean "no hashes".
    return [base64.b64decode(p, validate=True) for p in case.get("proof") or []]


def _verify_inclusion_case(case: dict[str, Any]) -> None:
    verify_inclusion(
        _hash(case, "leafHash"),
        case["leafIdx"],
        case["treeSize"],
        _proof(case),
        _hash(case, "root"),
    )


def _verify_consistency_case(case: dict[str, Any]) -> None:
    verify_consistency(
        case["size1"],
        case["size2"],
        _proof(case),
        _hash(case, "root1"),
        _hash(case, "root2"),
    )


def _happy(cases: list[Any]) -> list[dict[str, Any]]:
    return [p.values[0] for p in cases if p.id.endswith("/happy-path.json")]


def _flip(value: bytes, bit: int) -> bytes:
    flipped = bytearray(value)
    flipped[bit // 8] ^= 1 << (bit % 8)
    return bytes(flipped)


def _leaves(n: int, salt: int = 0) -> list[bytes]:
    return [leaf_hash(f"{salt}:{i}".encode()) for i in range(n)]


def _reference_mth(leaves: list[bytes]) -> bytes:
    """Return MTH straight from the recursive definition in RFC 9162 section 2.1.1."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(_reference_mth(leaves[:k]), _reference_mth(leaves[k:]))


# Shared vectors


def test_vectors_are_present() -> None:
    assert len(INCLUSION_CASES) > 0
    assert len(CONSISTENCY_CASES) > 0
    cases = [p.values[0] for p in INCLUSION_CASES + CONSISTENCY_CASES]
    assert any(c["wantErr"] for c in cases)
    assert any(not c["wantErr"] for c in cases)
    assert _happy(INCLUSION_CASES)
    assert _happy(CONSISTENCY_CASES)


@pytest.mark.parametrize("case", INCLUSION_CASES)
def test_inclusion_vector_format(case: dict[str, Any]) -> None:
    _check_format(case, INCLUSION_KEYS, ("leafIdx", "treeSize"), ("root", "leafHash"))


@pytest.mark.parametrize("case", CONSISTENCY_CASES)
def test_consistency_vector_format(case: dict[str, Any]) -> None:
    _check_format(case, CONSISTENCY_KEYS, ("size1", "size2"), ("root1", "root2"))


def _check_format(
    case: dict[str, Any], keys: set[str], ints: tuple[str, ...], hashes: tuple[str, ...]
) -> None:
    assert set(case) <= keys
    assert isinstance(case["wantErr"], bool)
    for key in ints:
        assert type(case[key]) is int and case[key] >= 0
    for key in hashes:
        assert case.get(key) is None or isinstance(case[key], str)
        _hash(case, key)
    assert case.get("proof") is None or isinstance(case["proof"], list)
    _proof(case)


@pytest.mark.parametrize("case", INCLUSION_CASES)
def test_inclusion_vector(case: dict[str, Any]) -> None:
    if case["wantErr"]:
        with pytest.raises(ProofError):
            _verify_inclusion_case(case)
    else:
        _verify_inclusion_case(case)


@pytest.mark.parametrize("case", CONSISTENCY_CASES)
def test_consistency_vector(case: dict[str, Any]) -> None:
    if case["wantErr"]:
        with pytest.raises(ProofError):
            _verify_consistency_case(case)
    else:
        _verify_consistency_case(case)


def test_generated_proofs_equal_vector_proofs() -> None:
    for case in _happy(INCLUSION_CASES):
        proof = inclusion_proof(REFERENCE_LEAVES, case["leafIdx"], case["treeSize"])
        assert proof == _proof(case), case
    for case in _happy(CONSISTENCY_CASES):
        proof = consistency_proof(REFERENCE_LEAVES, case["size1"], case["size2"])
        assert proof == _proof(case), case


# Known answers


def test_hash_primitives() -> None:
    assert EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    left, right = b"a" * HASH_SIZE, b"b" * HASH_SIZE
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    # Domain separation: a leaf holding two child hashes differs from their parent node.
    assert leaf_hash(left + right) != node_hash(left, right)


@pytest.mark.parametrize("size", range(len(REFERENCE_ROOTS)))
def test_reference_tree_roots(size: int) -> None:
    assert root_from_leaf_hashes(REFERENCE_LEAVES[:size]) == REFERENCE_ROOTS[size]
    assert CompactRange.from_leaf_hashes(REFERENCE_LEAVES[:size]).root() == REFERENCE_ROOTS[size]


def test_reference_roots_agree_with_vectors() -> None:
    for case in _happy(INCLUSION_CASES):
        assert _hash(case, "root") == REFERENCE_ROOTS[case["treeSize"]]
        assert _hash(case, "leafHash") == REFERENCE_LEAVES[case["leafIdx"]]
    for case in _happy(CONSISTENCY_CASES):
        assert _hash(case, "root1") == REFERENCE_ROOTS[case["size1"]]
        assert _hash(case, "root2") == REFERENCE_ROOTS[case["size2"]]


def test_root_matches_recursive_definition() -> None:
    leaves = _leaves(70)
    for n in range(len(leaves) + 1):
        assert root_from_leaf_hashes(leaves[:n]) == _reference_mth(leaves[:n])


def test_large_tree() -> None:
    leaves = _leaves(2**14 + 5)
    root = root_from_leaf_hashes(leaves)
    assert CompactRange.from_leaf_hashes(leaves).root() == root
    size, index, old_size = len(leaves), 2**14 + 3, 12345
    verify_inclusion(leaves[index], index, size, inclusion_proof(leaves, index, size), root)
    old_root = root_from_leaf_hashes(leaves[:old_size])
    proof = consistency_proof(leaves, old_size, size)
    verify_consistency(old_size, size, proof, old_root, root)


# Rejection of malformed input


_LEAF3 = REFERENCE_LEAVES[3]
_PATH3 = inclusion_proof(REFERENCE_LEAVES, 3, 8)
_ROOT8 = REFERENCE_ROOTS[8]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((_LEAF3, 8, 8, _PATH3, _ROOT8), "outside a tree of size 8"),
        ((_LEAF3, -1, 8, _PATH3, _ROOT8), "outside a tree of size 8"),
        ((_LEAF3, 0, 0, [], EMPTY_ROOT), "outside a tree of size 0"),
        ((_LEAF3, 3, 8, _PATH3, _ROOT8[:-1]), "root has 31 bytes"),
        ((_LEAF3[:-1], 3, 8, _PATH3, _ROOT8), "leaf hash has 31 bytes"),
        ((_LEAF3, 3, 8, [*_PATH3[:2], _PATH3[2] + b"!"], _ROOT8), "proof element 2 has 33"),
        ((_LEAF3, 3, 8, _PATH3[:-1], _ROOT8), "too short"),
        ((_LEAF3, 3, 8, [], _ROOT8), "too short"),
        ((_LEAF3, 3, 8, [*_PATH3, _ROOT8], _ROOT8), "too long"),
        ((_LEAF3, 3, 8, [_ROOT8, *_PATH3], _ROOT8), "too long"),
        ((_LEAF3, 3, 8, _PATH3[::-1], _ROOT8), "does not lead to the given root"),
        ((REFERENCE_LEAVES[2], 3, 8, _PATH3, _ROOT8), "does not lead to the given root"),
    ],
)
def test_inclusion_rejects_malformed_input(
    args: tuple[bytes, int, int, list[bytes], bytes], message: str
) -> None:
    with pytest.raises(ProofError, match=message):
        verify_inclusion(*args)


_R = REFERENCE_ROOTS
_PROOF_3_7 = consistency_proof(REFERENCE_LEAVES, 3, 7)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((7, 3, _PROOF_3_7, _R[7], _R[3]), "larger than size2"),
        ((-1, 7, _PROOF_3_7, _R[3], _R[7]), "negative"),
        ((0, 7, [], EMPTY_ROOT, _R[7]), "from the empty tree"),
        ((0, 7, _PROOF_3_7, EMPTY_ROOT, _R[7]), "from the empty tree"),
        ((0, 0, [], _R[1], _R[1]), "root of the empty tree"),
        ((0, 0, [EMPTY_ROOT], EMPTY_ROOT, EMPTY_ROOT), "need an empty consistency proof"),
        ((5, 5, [_R[5]], _R[5], _R[5]), "need an empty consistency proof"),
        ((5, 5, [], _R[5], _R[6]), "different roots"),
        ((3, 7, [], _R[3], _R[7]), "proof is empty"),
        ((3, 7, _PROOF_3_7, _R[3][:-1], _R[7]), "root1 has 31 bytes"),
        ((3, 7, _PROOF_3_7, _R[3], _R[7] + b"!"), "root2 has 33 bytes"),
        ((3, 7, [*_PROOF_3_7[:-1], _PROOF_3_7[-1][:-1]], _R[3], _R[7]), "proof element 3 has 31"),
        ((3, 7, _PROOF_3_7[:-1], _R[3], _R[7]), "too short"),
        ((3, 7, [*_PROOF_3_7, _R[1]], _R[3], _R[7]), "too long"),
        ((3, 7, _PROOF_3_7, _R[4], _R[7]), "does not lead to root1"),
        ((3, 7, _PROOF_3_7, _R[3], _R[8]), "does not lead to root2"),
        ((4, 7, consistency_proof(REFERENCE_LEAVES, 4, 7), _R[4], _R[6]), "root2"),
    ],
)
def test_consistency_rejects_malformed_input(
    args: tuple[int, int, list[bytes], bytes, bytes], message: str
) -> None:
    with pytest.raises(ProofError, match=message):
        verify_consistency(*args)


def test_trivial_consistency_cases_verify() -> None:
    verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)
    verify_consistency(5, 5, [], _R[5], _R[5])
    verify_consistency(3, 7, _PROOF_3_7, _R[3], _R[7])


def test_proof_generation_rejects_bad_arguments() -> None:
    leaves = REFERENCE_LEAVES
    for index, size in ((8, 8), (-1, 8), (0, 0), (0, 9)):
        with pytest.raises(ValueError):
            inclusion_proof(leaves, index, size)
    for size1, size2 in ((5, 4), (-1, 4), (0, 4), (2, 9)):
        with pytest.raises(ValueError):
            consistency_proof(leaves, size1, size2)
    assert consistency_proof(leaves, 0, 0) == []
    assert consistency_proof(leaves, 4, 4) == []
    with pytest.raises(ValueError, match="leaf hash 2"):
        root_from_leaf_hashes([*leaves[:2], b"short", *leaves[3:]])
    with pytest.raises(ValueError):
        inclusion_proof([*leaves[:2], b"short"], 0, 3)


def test_proof_error_is_a_value_error() -> None:
    assert issubclass(ProofError, ValueError)


# Properties


@st.composite
def _tree_and_index(draw: st.DrawFn) -> tuple[list[bytes], int, int]:
    leaves = _leaves(draw(st.integers(1, 200)), draw(st.integers(0, 2**32)))
    size = draw(st.integers(1, len(leaves)))
    index = draw(st.integers(0, size - 1))
    return leaves, index, size


@st.composite
def _tree_and_sizes(draw: st.DrawFn) -> tuple[list[bytes], int, int]:
    leaves = _leaves(draw(st.integers(1, 200)), draw(st.integers(0, 2**32)))
    size2 = draw(st.integers(1, len(leaves)))
    size1 = draw(st.integers(1, size2))
    return leaves, size1, size2


@PROPERTY_SETTINGS
@given(_tree_and_index(), st.data())
def test_inclusion_proofs_verify_and_resist_tampering(
    tree: tuple[list[bytes], int, int], data: st.DataObject
) -> None:
    leaves, index, size = tree
    root = root_from_leaf_hashes(leaves[:size])
    proof = inclusion_proof(leaves, index, size)
    verify_inclusion(leaves[index], index, size, proof, root)
    bits = data.draw(st.lists(_BIT, min_size=len(proof) + 2, max_size=len(proof) + 2))

    tampered: list[tuple[bytes, int, list[bytes], bytes]] = [
        (_flip(leaves[index], bits[-2]), index, proof, root),
        (leaves[index], index, proof, _flip(root, bits[-1])),
        (leaves[index], index, [leaves[0], *proof], root),
    ]
    for i in range(len(proof)):
        tampered.append(
            (leaves[index], index, [*proof[:i], _flip(proof[i], bits[i]), *proof[i + 1 :]], root)
        )
    if proof:
        tampered.append((leaves[index], index, proof[:-1], root))
        tampered.append((leaves[index], index, proof[1:], root))
    for other in range(size):
        if other != index:
            tampered.append((leaves[index], other, proof, root))
    for leaf, at, bad_proof, bad_root in tampered:
        with pytest.raises(ProofError):
            verify_inclusion(leaf, at, size, bad_proof, bad_root)
    with pytest.raises(ProofError, match="too long"):
        verify_inclusion(leaves[index], index, size, [*proof, leaves[0]], root)


@PROPERTY_SETTINGS
@given(_tree_and_sizes(), st.data())
def test_consistency_proofs_verify_and_resist_tampering(
    tree: tuple[list[bytes], int, int], data: st.DataObject
) -> None:
    leaves, size1, size2 = tree
    root1 = root_from_leaf_hashes(leaves[:size1])
    root2 = root_from_leaf_hashes(leaves[:size2])
    proof = consistency_proof(leaves, size1, size2)
    verify_consistency(size1, size2, proof, root1, root2)
    bits = data.draw(st.lists(_BIT, min_size=len(proof) + 2, max_size=len(proof) + 2))

    tampered: list[tuple[list[bytes], bytes, bytes]] = [
        (proof, _flip(root1, bits[-2]), root2),
        (proof, root1, _flip(root2, bits[-1])),
        ([leaves[0], *proof], root1, root2),
    ]
    for i in range(len(proof)):
        tampered.append(([*proof[:i], _flip(proof[i], bits[i]), *proof[i + 1 :]], root1, root2))
    if proof:
        tampered.append((proof[:-1], root1, root2))
        tampered.append((proof[1:], root1, root2))
    for bad_proof, bad_root1, bad_root2 in tampered:
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, bad_proof, bad_root1, bad_root2)
    with pytest.raises(ProofError, match=r"too long|empty consistency proof"):
        verify_consistency(size1, size2, [*proof, leaves[0]], root1, root2)


def test_consistency_proofs_verify_for_all_small_sizes() -> None:
    leaves = _leaves(40)
    roots = [root_from_leaf_hashes(leaves[:n]) for n in range(len(leaves) + 1)]
    for size2 in range(1, len(leaves) + 1):
        for size1 in range(1, size2 + 1):
            proof = consistency_proof(leaves, size1, size2)
            verify_consistency(size1, size2, proof, roots[size1], roots[size2])
        for index in range(size2):
            proof = inclusion_proof(leaves, index, size2)
            verify_inclusion(leaves[index], index, size2, proof, roots[size2])


def test_compact_range_root_at_every_size() -> None:
    leaves = _leaves(300)
    compact = CompactRange()
    assert compact.size == 0
    assert compact.root() == EMPTY_ROOT
    for n, leaf in enumerate(leaves, start=1):
        compact.append(leaf)
        assert compact.size == n
        assert len(compact.hashes) == n.bit_count()
        assert compact.root() == root_from_leaf_hashes(leaves[:n])


@PROPERTY_SETTINGS
@given(st.lists(st.binary(max_size=40), max_size=200), st.integers(1, 20))
def test_compact_range_serialization_round_trips(entries: list[bytes], more: int) -> None:
    leaves = [leaf_hash(e) for e in entries]
    compact = CompactRange.from_leaf_hashes(leaves)
    assert compact.root() == root_from_leaf_hashes(leaves)

    stored = compact.to_hex()
    assert all(isinstance(h, str) and len(h) == 2 * HASH_SIZE for h in stored)
    restored = CompactRange.from_hex(compact.size, stored)
    assert restored == compact
    assert CompactRange(compact.size, compact.hashes) == compact

    extra = _leaves(more, salt=len(entries))
    restored.extend(extra)
    assert restored.root() == root_from_leaf_hashes(leaves + extra)
    assert compact.size == len(leaves)


def test_compact_range_copy_is_independent() -> None:
    compact = CompactRange.from_leaf_hashes(REFERENCE_LEAVES[:5])
    copy = compact.copy()
    copy.append(REFERENCE_LEAVES[5])
    assert compact.root() == REFERENCE_ROOTS[5]
    assert copy.root() == REFERENCE_ROOTS[6]
    assert compact != copy


def test_compact_range_rejects_bad_state() -> None:
    good = CompactRange.from_leaf_hashes(REFERENCE_LEAVES[:6]).to_hex()
    bad_states: list[tuple[int, list[str]]] = [
        (7, good),
        (4, good),
        (-1, []),
        (6, [good[0], good[1].upper()]),
        (6, [good[0], good[1][:-2]]),
        (6, [good[0], good[1] + "00"]),
        (6, [good[0], "zz" * HASH_SIZE]),
        (6, [good[0], " " + good[1][1:]]),
    ]
    for size, hashes in bad_states:
        with pytest.raises(ValueError):
            CompactRange.from_hex(size, hashes)
    with pytest.raises(ValueError):
        CompactRange(1, [b"short"])
    with pytest.raises(ValueError):
        CompactRange().append(b"short")


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 300), st.integers(1, 8), st.data())
def test_kept_subtrees_give_the_same_roots_and_proofs(
    total: int, smallest_kept: int, data: st.DataObject
) -> None:
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(total)]
    # Built in two steps, as a process reads the log and later its new entries.
    first = data.draw(st.integers(0, total), label="leaves at first")
    tree = SubtreeHashes(leaves[:first], smallest_kept=smallest_kept)
    if first:
        tree.root(first)  # keeps subtrees that must stay right once more leaves come
    tree.extend(leaves[first:])
    size = data.draw(st.integers(1, total), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    older = data.draw(st.integers(1, size), label="older size")
    assert tree.root(size) == root_from_leaf_hashes(leaves[:size])
    assert tree.inclusion_proof(index, size) == inclusion_proof(leaves, index, size)
    assert tree.consistency_proof(older, size) == consistency_proof(leaves, older, size)
    verify_inclusion(leaves[index], index, size, tree.inclusion_proof(index, size), tree.root(size))


def test_kept_subtrees_refuse_sizes_beyond_their_leaves() -> None:
    tree = SubtreeHashes([leaf_hash(b"a"), leaf_hash(b"b")])
    with pytest.raises(ValueError):
        tree.inclusion_proof(0, 3)
    with pytest.raises(ValueError):
        tree.consistency_proof(1, 3)
    with pytest.raises(ValueError):
        tree.extend([b"short"])
    assert len(tree) == 2
