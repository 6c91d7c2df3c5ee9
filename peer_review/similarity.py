"""Near-duplicate detection: word shingles, MinHash signatures and LSH banding.

Pure functions, no database. Texts are normalized (Unicode NFKC, case-folded, punctuation and
Markdown markup dropped), cut into overlapping runs of `SHINGLE_WORDS` words, and each shingle
is hashed with BLAKE2b, which, unlike Python's `hash`, is the same in every process. A MinHash
signature keeps, for each of `NUM_PERM` random universal hash functions, the smallest value
over the shingles; the share of positions where two signatures agree estimates the Jaccard
similarity of their shingle sets. `candidate_pairs` buckets bands of the signatures so that
pairs above a threshold are found without comparing every pair.

A match is evidence for staff to look at, never a verdict.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "NUM_PERM",
    "SHINGLE_WORDS",
    "THRESHOLD",
    "candidate_pairs",
    "estimate",
    "jaccard",
    "normalize",
    "shingles",
    "signature",
]

SHINGLE_WORDS = 5
NUM_PERM = 128
# Two submissions sharing at least this share of their shingles are shown to staff.
THRESHOLD = 0.5
_PRIME = (1 << 31) - 1  # Mersenne prime; shingle hashes are 32-bit, so a*x+b stays in uint64.
_SEED = 20240611
_EMPTY = _PRIME  # above every hash value mod _PRIME: the "minimum" over no shingles

_WORD = re.compile(r"[^\W_]+", re.UNICODE)

K = TypeVar("K")


def normalize(text: str) -> list[str]:
    """The words of a text, case-folded, without punctuation or markup characters."""
    return _WORD.findall(unicodedata.normalize("NFKC", text or "").casefold())


def _hash(shingle: str) -> int:
    return int.from_bytes(hashlib.blake2b(shingle.encode(), digest_size=4).digest(), "big")


def shingles(text: str, *, size: int = SHINGLE_WORDS) -> set[int]:
    """Hashed runs of `size` consecutive words; a shorter text is a single shingle."""
    words = normalize(text)
    if not words:
        return set()
    if len(words) < size:
        return {_hash(" ".join(words))}
    return {_hash(" ".join(words[i : i + size])) for i in range(len(words) - size + 1)}


def jaccard(a: set[int], b: set[int]) -> float:
    """Exact Jaccard similarity; two empty sets share nothing."""
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def _permutations(num_perm: int) -> tuple[NDArray[np.uint64], NDArray[np.uint64]]:
    rng = np.random.default_rng(_SEED)
    a = rng.integers(1, _PRIME, size=num_perm, dtype=np.uint64)
    b = rng.integers(0, _PRIME, size=num_perm, dtype=np.uint64)
    return a, b


_A, _B = _permutations(NUM_PERM)


def signature(shingle_set: Iterable[int], *, num_perm: int = NUM_PERM) -> list[int]:
    """The MinHash signature of a set of shingle hashes."""
    values = np.fromiter(shingle_set, dtype=np.uint64)
    if num_perm == NUM_PERM:
        a, b = _A, _B
    else:
        a, b = _permutations(num_perm)
    if values.size == 0:
        return [_EMPTY] * num_perm
    hashed = (a[:, None] * values[None, :] + b[:, None]) % np.uint64(_PRIME)
    return [int(v) for v in hashed.min(axis=1)]


def estimate(sig_a: Sequence[int], sig_b: Sequence[int]) -> float:
    """Estimated Jaccard similarity of the sets behind two signatures."""
    if len(sig_a) != len(sig_b) or not sig_a:
        raise ValueError("signatures must be non-empty and of the same length")
    if sig_a[0] == _EMPTY and all(v == _EMPTY for v in sig_a):
        return 0.0
    if sig_b[0] == _EMPTY and all(v == _EMPTY for v in sig_b):
        return 0.0
    return sum(x == y for x, y in zip(sig_a, sig_b, strict=True)) / len(sig_a)


def _rows_for(threshold: float, num_perm: int, recall: float = 0.99) -> int:
    """The most rows per band (fewest false candidates) that still make a pair at
    `threshold` share some band with probability `recall`: 1 - (1 - t^r)^(n/r)."""
    best = 1
    for rows in range(1, num_perm + 1):
        if num_perm % rows == 0 and 1 - (1 - threshold**rows) ** (num_perm // rows) >= recall:
            best = rows
    return best


def candidate_pairs(
    signatures: Mapping[K, Sequence[int]], *, threshold: float = THRESHOLD
) -> set[tuple[K, K]]:
    """Pairs (in key order) sharing a band: a superset, with high probability, of the pairs
    whose similarity reaches `threshold`. Confirm each with `estimate` or `jaccard`."""
    if not signatures:
        return set()
    num_perm = len(next(iter(signatures.values())))
    rows = _rows_for(threshold, num_perm)
    bands = num_perm // rows
    keys = sorted(signatures, key=repr)
    order = {key: i for i, key in enumerate(keys)}
    pairs: set[tuple[K, K]] = set()
    for band in range(bands):
        buckets: dict[tuple[int, ...], list[K]] = defaultdict(list)
        for key in keys:
            sig = signatures[key]
            if all(v == _EMPTY for v in sig):
                continue
            buckets[tuple(sig[band * rows : (band + 1) * rows])].append(key)
        for members in buckets.values():
            for i, first in enumerate(members):
                for second in members[i + 1 :]:
                    pair = (first, second) if order[first] < order[second] else (second, first)
                    pairs.add(pair)
    return pairs
