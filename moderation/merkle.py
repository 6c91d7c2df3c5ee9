"""Append-only Merkle tree for the moderation log, hashed as in RFC 9162 (and RFC 6962).

Leaves are hashed as SHA-256(0x00 || data) and interior nodes as SHA-256(0x01 || left || right),
so that a leaf can never be passed off as an interior node. Proof generation takes the leaf
hashes in memory; verification needs only the proof, the sizes and the roots.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


class ProofError(ValueError):
    """An inclusion or consistency proof failed to verify."""


def leaf_hash(data: bytes) -> bytes:
    """Return the RFC 9162 hash of a leaf holding ``data``."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 9162 hash of an interior node with the given children."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """Return the largest power of two strictly smaller than ``n`` (for n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _check_leaf_hashes(leaf_hashes: Sequence[bytes], size: int) -> None:
    if not 0 <= size <= len(leaf_hashes):
        raise ValueError(f"tree size {size} is outside 0..{len(leaf_hashes)}")
    lengths = list(map(len, leaf_hashes[:size]))
    if lengths.count(HASH_SIZE) != size:
        i = next(i for i, n in enumerate(lengths) if n != HASH_SIZE)
        raise ValueError(f"leaf hash {i} has {lengths[i]} bytes, not {HASH_SIZE}")


def _mth(hashes: Sequence[bytes]) -> bytes:
    # Pairing level by level and carrying an odd last node up unchanged builds exactly the
    # left-balanced tree of RFC 9162 section 2.1.1, without recursion.
    if not hashes:
        return EMPTY_ROOT
    level = list(hashes)
    while len(level) > 1:
        pairs = zip(level[::2], level[1::2], strict=False)
        paired = [node_hash(left, right) for left, right in pairs]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def root_from_leaf_hashes(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return the Merkle tree hash (MTH) of a tree with these leaf hashes."""
    _check_leaf_hashes(leaf_hashes, len(leaf_hashes))
    return _mth(leaf_hashes)


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int, size: int) -> list[bytes]:
    """Return the audit path of leaf ``index`` in the tree of the first ``size`` leaves."""
    _check_leaf_hashes(leaf_hashes, size)
    return _inclusion(lambda lo, hi: _mth(leaf_hashes[lo:hi]), index, size)


def _inclusion(mth: Callable[[int, int], bytes], index: int, size: int) -> list[bytes]:
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    path: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        mid = lo + _split(hi - lo)
        if index < mid:
            path.append(mth(mid, hi))
            hi = mid
        else:
            path.append(mth(lo, mid))
            lo = mid
    # Siblings were found from the root down; the proof lists them from the leaf up.
    path.reverse()
    return path


def consistency_proof(leaf_hashes: Sequence[bytes], size1: int, size2: int) -> list[bytes]:
    """Return the proof that the tree of ``size2`` leaves extends the one of ``size1``."""
    _check_leaf_hashes(leaf_hashes, size2)
    return _consistency(lambda lo, hi: _mth(leaf_hashes[lo:hi]), size1, size2)


def _consistency(mth: Callable[[int, int], bytes], size1: int, size2: int) -> list[bytes]:
    if not 0 <= size1 <= size2:
        raise ValueError(f"sizes must satisfy 0 <= size1 <= size2, got {size1} and {size2}")
    if size1 == size2:
        return []
    if size1 == 0:
        raise ValueError("a consistency proof from the empty tree is undefined")
    path: list[bytes] = []
    lo, hi = 0, size2
    whole_old_tree = True
    while hi != size1:
        mid = lo + _split(hi - lo)
        if size1 <= mid:
            path.append(mth(mid, hi))
            hi = mid
        else:
            path.append(mth(lo, mid))
            lo = mid
            whole_old_tree = False
    # The verifier already knows the old root, so it is sent only when it is not itself
    # the subtree that the remaining path starts from.
    if not whole_old_tree:
        path.append(mth(lo, hi))
    path.reverse()
    return path


class SubtreeHashes:
    """Roots and proofs over a growing list of leaf hashes, remembering the big subtrees.

    A perfect subtree (2^k leaves starting at a multiple of 2^k) hashes the same for ever once
    its leaves exist, so its hash is kept; every root and proof after the first then costs a
    few dozen hashes instead of hashing the whole log again. Leaves may only be appended.
    """

    def __init__(self, leaf_hashes: Sequence[bytes] = (), *, smallest_kept: int = 256) -> None:
        self.leaves: list[bytes] = []
        self._kept: dict[tuple[int, int], bytes] = {}
        self._smallest_kept = max(2, smallest_kept)
        self.extend(leaf_hashes)

    def __len__(self) -> int:
        return len(self.leaves)

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        added = list(leaf_hashes)
        _check_leaf_hashes(added, len(added))
        self.leaves.extend(added)

    def mth(self, lo: int, hi: int) -> bytes:
        """The Merkle tree hash of leaves lo..hi-1."""
        if not 0 <= lo <= hi <= len(self.leaves):
            raise ValueError(f"range {lo}..{hi} is outside 0..{len(self.leaves)}")
        return self._mth(lo, hi)

    def _mth(self, lo: int, hi: int) -> bytes:
        n = hi - lo
        if n < self._smallest_kept:
            return _mth(self.leaves[lo:hi])
        half = _split(n)
        if _is_power_of_two(n) and lo % n == 0:
            kept = self._kept.get((lo, n))
            if kept is None:
                kept = self._kept[(lo, n)] = node_hash(
                    self._mth(lo, lo + half), self._mth(lo + half, hi)
                )
            return kept
        return node_hash(self._mth(lo, lo + half), self._mth(lo + half, hi))

    def root(self, size: int) -> bytes:
        return self.mth(0, size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """As `inclusion_proof` on the first `size` leaves."""
        if not 0 <= size <= len(self.leaves):
            raise ValueError(f"tree size {size} is outside 0..{len(self.leaves)}")
        return _inclusion(self._mth, index, size)

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """As `consistency_proof` on the first `size2` leaves."""
        if not 0 <= size2 <= len(self.leaves):
            raise ValueError(f"tree size {size2} is outside 0..{len(self.leaves)}")
        return _consistency(self._mth, size1, size2)


def _check_proof_hash(name: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{name} has {len(value)} bytes, not {HASH_SIZE}")


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise ProofError unless ``proof`` puts ``leaf_hash`` at ``index`` under ``root``."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    _check_proof_hash("leaf hash", leaf_hash)
    _check_proof_hash("root", root)
    for i, element in enumerate(proof):
        _check_proof_hash(f"proof element {i}", element)

    fn, sn = index, size - 1
    r = leaf_hash
    for p in proof:
        if sn == 0:
            raise ProofError(f"inclusion proof is too long for leaf {index} of {size}")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"inclusion proof is too short for leaf {index} of {size}")
    if r != root:
        raise ProofError("inclusion proof does not lead to the given root")


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Raise ProofError unless ``proof`` shows the tree (size2, root2) extends (size1, root1)."""
    if size1 < 0:
        raise ProofError(f"size1 {size1} is negative")
    if size1 > size2:
        raise ProofError(f"size1 {size1} is larger than size2 {size2}")
    if size1 == size2:
        if proof:
            raise ProofError("trees of equal size need an empty consistency proof")
        # Every empty tree has the same root, so any other claimed root is false.
        if size1 == 0 and not root1 == root2 == EMPTY_ROOT:
            raise ProofError("the root of the empty tree must be SHA-256 of the empty string")
        # Only equality matters here: identical claims about one tree are consistent whatever
        # their form, and the published test vectors expect exactly that.
        if root1 != root2:
            raise ProofError(f"trees of equal size {size1} have different roots")
        return
    if size1 == 0:
        raise ProofError("a consistency proof from the empty tree is undefined")
    if not proof:
        raise ProofError("consistency proof is empty")
    _check_proof_hash("root1", root1)
    _check_proof_hash("root2", root2)
    for i, element in enumerate(proof):
        _check_proof_hash(f"proof element {i}", element)

    path = [root1, *proof] if _is_power_of_two(size1) else list(proof)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError(f"consistency proof is too long for sizes {size1} and {size2}")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"consistency proof is too short for sizes {size1} and {size2}")
    if fr != root1:
        raise ProofError("consistency proof does not lead to root1")
    if sr != root2:
        raise ProofError("consistency proof does not lead to root2")


class CompactRange:
    """Roots of the perfect subtrees covering leaves [0, size), for O(log n) appends.

    The hashes are ordered left to right, so the largest subtree comes first; there is one
    per set bit of ``size``.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Iterable[bytes] = ()) -> None:
        stack = list(hashes)
        if size < 0:
            raise ValueError(f"size {size} is negative")
        if len(stack) != size.bit_count():
            raise ValueError(
                f"a range of size {size} has {size.bit_count()} hashes, not {len(stack)}"
            )
        for i, h in enumerate(stack):
            if len(h) != HASH_SIZE:
                raise ValueError(f"hash {i} has {len(h)} bytes, not {HASH_SIZE}")
        self._size = size
        self._hashes = stack

    @classmethod
    def from_leaf_hashes(cls, leaf_hashes: Iterable[bytes]) -> CompactRange:
        """Return the range covering all of ``leaf_hashes``."""
        compact = cls()
        compact.extend(leaf_hashes)
        return compact

    @classmethod
    def from_hex(cls, size: int, hashes: Sequence[str]) -> CompactRange:
        """Rebuild a range from its size and the output of ``to_hex``."""
        decoded = []
        for i, text in enumerate(hashes):
            raw = bytes.fromhex(text)
            # bytes.fromhex skips whitespace and accepts capitals; insist on the one form we write.
            if raw.hex() != text:
                raise ValueError(f"hash {i} is not written as lowercase hex digits")
            decoded.append(raw)
        return cls(size, decoded)

    @property
    def size(self) -> int:
        """Return the number of leaves covered."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """Return the subtree roots, largest (leftmost) first."""
        return tuple(self._hashes)

    def to_hex(self) -> list[str]:
        """Return the subtree roots as lowercase hex strings, for storage beside the size."""
        return [h.hex() for h in self._hashes]

    def append(self, leaf_hash: bytes) -> None:
        """Add one leaf hash at the right edge of the tree."""
        if len(leaf_hash) != HASH_SIZE:
            raise ValueError(f"leaf hash has {len(leaf_hash)} bytes, not {HASH_SIZE}")
        h = leaf_hash
        n = self._size
        # Each trailing one bit of the old size is a subtree of the same height to merge with.
        while n & 1:
            h = node_hash(self._hashes.pop(), h)
            n >>= 1
        self._hashes.append(h)
        self._size += 1

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append each of ``leaf_hashes`` in order."""
        for h in leaf_hashes:
            self.append(h)

    def root(self) -> bytes:
        """Return the Merkle tree hash of the leaves covered so far."""
        hashes = self._hashes
        if not hashes:
            return EMPTY_ROOT
        r = hashes[-1]
        sha256, prefix = hashlib.sha256, _NODE_PREFIX  # node_hash, inlined: verify_log's loop
        for i in range(len(hashes) - 2, -1, -1):
            r = sha256(prefix + hashes[i] + r).digest()
        return r

    def copy(self) -> CompactRange:
        """Return an independent copy."""
        return CompactRange(self._size, self._hashes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CompactRange):
            return NotImplemented
        return self._size == other._size and self._hashes == other._hashes

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size}, hashes={self.to_hex()!r})"
