"""Does a text carry real content? Word counts that filler cannot inflate.

Pure functions, no database. A "real word" has at least one letter and is not one character
repeated ("aaaa", "zzzzzz"); numbers, punctuation and separators do not count. A text whose
four-word phrases are mostly repeats ("lorem lorem lorem …", one paragraph pasted ten times)
is refused whatever its length.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from forum.markup import plain_text

__all__ = ["TextCheck", "check_text", "real_words", "visible_text"]

_TOKEN = re.compile(r"[^\W_]+(?:['\u2019-][^\W_]+)*")
PHRASE_WORDS = 4
# Below this share of distinct four-word phrases a text is repetition, not writing. Natural
# prose stays above 0.9 even over thousands of words.
MIN_DISTINCT_PHRASES = 0.5
MIN_PHRASES_TO_JUDGE = 8
_VISIBLE_CHARS = 1_000_000


def visible_text(markdown: str) -> str:
    """The words a reader sees in Markdown: no markup, link targets or HTML."""
    return plain_text(markdown or "", max_chars=_VISIBLE_CHARS)


def _is_real(token: str) -> bool:
    if not any(unicodedata.category(ch).startswith("L") for ch in token):
        return False
    letters = token.casefold()
    return not (len(letters) >= 3 and len(set(letters)) == 1)


def real_words(text: str) -> list[str]:
    """The words of plain text that count toward a minimum, case-folded."""
    return [
        t.casefold() for t in _TOKEN.findall(unicodedata.normalize("NFKC", text)) if _is_real(t)
    ]


@dataclass(frozen=True, slots=True)
class TextCheck:
    words: int
    problem: str | None

    @property
    def ok(self) -> bool:
        return self.problem is None


def _repetitive(words: list[str]) -> bool:
    phrases = [tuple(words[i : i + PHRASE_WORDS]) for i in range(len(words) - PHRASE_WORDS + 1)]
    if len(phrases) < MIN_PHRASES_TO_JUDGE:
        return len(words) >= PHRASE_WORDS + 2 and len(set(words)) == 1
    return len(set(phrases)) < MIN_DISTINCT_PHRASES * len(phrases)


def check_text(text: str, *, min_words: int, what: str = "Your submission") -> TextCheck:
    """Count the real words of plain text and say what is wrong with it, if anything."""
    words = real_words(text)
    if _repetitive(words):
        return TextCheck(
            len(words),
            f"{what} repeats the same words or passage over and over. Write it out in your "
            "own words; repeated text does not count toward the minimum.",
        )
    if len(words) < min_words:
        return TextCheck(
            len(words),
            f"{what} has {len(words)} real word{'s' if len(words) != 1 else ''}; at least "
            f"{min_words} are needed. Repeated characters, numbers and punctuation do not count.",
        )
    return TextCheck(len(words), None)
