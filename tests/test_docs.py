"""docs/settings.md, core.settings.SETTINGS_DOC and what load_settings reads agree."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import core.settings
from core.settings import SETTINGS_DOC

ROOT = Path(__file__).resolve().parent.parent
SETTINGS_PAGE = ROOT / "docs" / "settings.md"
NAME = re.compile(r"\bAGORA_[A-Z0-9_]*[A-Z0-9]\b")
TEST_PREFIX = "AGORA_TEST_"
TEST_SECTION = "## Test suite"


def page() -> str:
    return SETTINGS_PAGE.read_text(encoding="utf-8")


def split_page() -> tuple[str, str]:
    """The page before its "Test suite" section, and that section."""
    text = page()
    assert TEST_SECTION in text, f"docs/settings.md needs a '{TEST_SECTION}' section"
    before, _, rest = text.partition(TEST_SECTION)
    section = re.split(r"^## ", rest, maxsplit=1, flags=re.MULTILINE)[0]
    return before, section


def literal_names(source: str, *, skip_assignment_to: str | None = None) -> set[str]:
    """AGORA_ names written as whole string literals in Python source."""
    tree = ast.parse(source)
    skipped: set[int] = set()
    if skip_assignment_to is not None:
        for node in ast.walk(tree):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AnnAssign):
                targets = [node.target]
            if any(isinstance(t, ast.Name) and t.id == skip_assignment_to for t in targets):
                skipped.update(id(inner) for inner in ast.walk(node))
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in skipped
        and NAME.fullmatch(node.value)
    }


def test_every_setting_is_on_the_settings_page() -> None:
    mentioned = set(NAME.findall(page()))
    missing = sorted(set(SETTINGS_DOC) - mentioned)
    assert not missing, f"docs/settings.md does not describe {missing}"


def test_settings_page_mentions_no_unknown_variable() -> None:
    unknown = sorted(
        name
        for name in set(NAME.findall(page()))
        if name not in SETTINGS_DOC and not name.startswith(TEST_PREFIX)
    )
    assert not unknown, f"docs/settings.md mentions settings Agora does not have: {unknown}"


def test_settings_are_described_before_the_test_suite_section() -> None:
    before, _ = split_page()
    missing = sorted(set(SETTINGS_DOC) - set(NAME.findall(before)))
    assert not missing, f"{missing} are only mentioned in the test suite section"


def test_test_variables_live_in_the_test_suite_section() -> None:
    before, section = split_page()
    misplaced = sorted(n for n in NAME.findall(before) if n.startswith(TEST_PREFIX))
    assert not misplaced, f"{misplaced} belong in the '{TEST_SECTION}' section"

    # Every AGORA_TEST_ variable the suite reads is described there.
    used: set[str] = set()
    this_file = Path(__file__).resolve()
    for path in [*(ROOT / "tests").rglob("*.py"), ROOT / "pyproject.toml"]:
        if path.resolve() == this_file:
            continue
        used.update(
            n for n in NAME.findall(path.read_text(encoding="utf-8")) if n.startswith(TEST_PREFIX)
        )
    assert used, "found no AGORA_TEST_ variables in the suite: the search is broken"
    missing = sorted(used - set(NAME.findall(section)))
    assert not missing, f"the '{TEST_SECTION}' section does not describe {missing}"


def test_load_settings_reads_only_documented_variables() -> None:
    source = Path(core.settings.__file__).read_text(encoding="utf-8")
    read = literal_names(source, skip_assignment_to="SETTINGS_DOC")
    assert read, "found no AGORA_ names in core/settings.py: the search is broken"
    undocumented = sorted(read - set(SETTINGS_DOC))
    assert not undocumented, f"load_settings reads {undocumented} but SETTINGS_DOC lacks them"
    unread = sorted(set(SETTINGS_DOC) - read)
    assert not unread, f"SETTINGS_DOC describes {unread}, which load_settings never reads"


def test_every_setting_has_a_description() -> None:
    empty = sorted(name for name, text in SETTINGS_DOC.items() if len(text.strip()) < 10)
    assert not empty, f"SETTINGS_DOC has no real description for {empty}"


def test_literal_names_sees_reads_and_skips_the_table() -> None:
    # The checker itself: a read outside the table counts, the table's own keys do not.
    source = (
        'DOC = {"AGORA_ONE": "x"}\n'
        'def load(env):\n    return env.get("AGORA_TWO"), f"AGORA_THREE is bad"\n'
    )
    assert literal_names(source, skip_assignment_to="DOC") == {"AGORA_TWO"}
    assert literal_names(source) == {"AGORA_ONE", "AGORA_TWO"}
