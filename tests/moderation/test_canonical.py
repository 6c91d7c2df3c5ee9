"""The canonical text's fast paths give exactly what the plain definitions give.

An entry's canonical text is hashed, so one different byte would report an intact log as
tampered (or let a changed one through): the shortcuts `verify_log` takes are checked here
against the definitions they stand in for.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from moderation._entries import stored_timestamp, timestamp
from moderation._heads import canonical_json

flat_values = st.dictionaries(
    st.text(max_size=12),
    st.one_of(st.none(), st.integers(), st.text(), st.booleans()),
    max_size=16,
)


@given(flat_values)
def test_canonical_json_is_json_dumps_with_sorted_keys(values: dict[str, object]) -> None:
    assert canonical_json(values) == json.dumps(
        values, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def test_canonical_json_still_refuses_what_json_cannot_write() -> None:
    try:
        canonical_json({"when": datetime(2026, 1, 1)})
    except TypeError as exc:
        assert "not JSON serializable" in str(exc)
    else:
        raise AssertionError("a datetime was written")


offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
moments = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)


@given(moments)
def test_a_stored_time_reads_as_the_moment_it_was(moment: datetime) -> None:
    expected = timestamp(moment)
    assert stored_timestamp(moment) == expected  # PostgreSQL's driver
    assert stored_timestamp(moment.replace(tzinfo=None)) == expected  # naive means UTC
    # The text SQLite keeps, as the ORM writes it, and the same with a "T".
    assert stored_timestamp(moment.isoformat(" ")) == expected
    assert stored_timestamp(moment.isoformat()) == expected


@given(moments, offsets)
def test_a_stored_time_in_another_offset_is_the_same_moment(
    moment: datetime, offset: timezone
) -> None:
    try:
        shifted = moment.astimezone(offset)
    except OverflowError:
        return
    assert stored_timestamp(shifted.isoformat(" ")) == timestamp(moment)


@given(
    st.from_regex(
        r"[0-9]{4}-(W[0-9]{2}-[0-9]|[0-9]{2}-[0-9]{2})[ T][0-9]{2}:[0-9]{2}:[0-9]{2}"
        r"[.,][0-9]{1,7}([+-][0-9]{2}:[0-9]{2}|Z)?",
        fullmatch=True,
    )
)
def test_odd_iso_text_reads_as_the_datetime_parser_reads_it(text: str) -> None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        assert stored_timestamp(text) is None
        return
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        expected: str | None = timestamp(moment)
    except OverflowError:  # its UTC is outside the years a datetime holds
        expected = None
    assert stored_timestamp(text) == expected


def test_what_is_not_a_time_is_left_to_the_orm() -> None:
    for raw in (
        None,
        1764000000,
        b"2026-11-22 10:00:00.000000+00:00",
        "yesterday",
        "",
        "0001-01-01 00:00:00.000000+05:00",  # before year 1 in UTC
    ):
        assert stored_timestamp(raw) is None
