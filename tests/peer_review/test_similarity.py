"""peer_review.similarity: shingles, MinHash estimates and LSH candidates, without a database."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peer_review.similarity import (
    NUM_PERM,
    THRESHOLD,
    candidate_pairs,
    estimate,
    jaccard,
    normalize,
    shingles,
    signature,
)
from tests.peer_review.factories import VOCABULARY, essay


def edited(text: str, share: float, seed: int) -> str:
    """The text with about `share` of its words replaced by others."""
    rng = random.Random(seed)
    words = text.split()
    for i in range(len(words)):
        if rng.random() < share:
            words[i] = rng.choice(VOCABULARY) + "x"
    return " ".join(words)


def test_normalization_ignores_case_punctuation_and_markup() -> None:
    assert normalize("**Evidence**, _matters_!  — Évidemment.") == [
        "evidence", "matters", "évidemment"
    ]  # fmt: skip
    assert shingles("The Cat sat, on the MAT today.") == shingles("the cat sat on the mat today")


def test_shingles_of_short_and_empty_texts() -> None:
    assert len(shingles("one two three")) == 1
    assert shingles("  ...  ") == set()
    assert jaccard(set(), set()) == 0.0


def test_signatures_are_the_same_in_every_process() -> None:
    # Stored signatures are compared with ones computed later, elsewhere: BLAKE2b and a fixed
    # seed, never Python's per-process salted hash. These values must not change.
    text = "The quick brown fox jumps over the lazy dog"
    assert sorted(shingles(text)) == [1010399388, 1666003772, 1674884220, 2016863831, 3731652228]
    sig = signature(shingles(text))
    assert len(sig) == NUM_PERM
    assert sig[:4] == [385774559, 963768542, 855859847, 318454847]


def test_identical_texts_estimate_one_and_unrelated_texts_near_zero() -> None:
    a, b = shingles(essay(1, 300)), shingles(essay(2, 300))
    assert estimate(signature(a), signature(a)) == 1.0
    assert jaccard(a, b) < 0.05
    assert estimate(signature(a), signature(b)) < 0.1
    assert estimate(signature(set()), signature(set())) == 0.0


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.0, 0.3))
def test_the_estimate_tracks_the_exact_jaccard(seed: int, share: float) -> None:
    original = essay(seed, 300)
    copy = edited(original, share, seed)
    a, b = shingles(original), shingles(copy)
    exact = jaccard(a, b)
    # 128 permutations: the standard error is at most 0.5 / sqrt(128) ~ 0.044.
    assert estimate(signature(a), signature(b)) == pytest.approx(exact, abs=0.15)


def test_light_edits_stay_above_the_threshold_and_rewrites_fall_below() -> None:
    original = essay(5, 400)
    light = shingles(edited(original, 0.02, 1))
    heavy = shingles(edited(original, 0.4, 1))
    base = shingles(original)
    assert jaccard(base, light) >= THRESHOLD
    assert jaccard(base, heavy) < THRESHOLD


def test_candidate_pairs_finds_near_duplicates_and_few_others() -> None:
    texts = {f"s{i}": essay(100 + i, 250) for i in range(30)}
    texts["copy-of-s3"] = edited(texts["s3"], 0.02, 9)
    texts["copy-of-s7"] = edited(texts["s7"], 0.05, 9)
    signatures = {key: signature(shingles(text)) for key, text in texts.items()}
    pairs = candidate_pairs(signatures)
    assert ("copy-of-s3", "s3") in pairs and ("copy-of-s7", "s7") in pairs
    # 496 possible pairs; unrelated essays share a band only by rare chance.
    assert len(pairs) < 20
    assert candidate_pairs({}) == set()


def test_signatures_must_match_in_length() -> None:
    with pytest.raises(ValueError):
        estimate([1, 2, 3], [1, 2])
