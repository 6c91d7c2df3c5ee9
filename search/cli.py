"""``agora search``: rebuild the search index and see how far behind it is."""

from __future__ import annotations

from typing import Any

import click

__all__ = ["search"]


@click.group("search")
def search() -> None:
    """Maintain the search index."""


def _unavailable(exc: Exception) -> click.ClickException:
    return click.ClickException(
        f"The search engine is unavailable ({exc}). Nothing in the database was changed; "
        "run this again when the engine is back."
    )


@search.command("reindex")
@click.option(
    "--course",
    "course_slug",
    metavar="SLUG",
    default=None,
    help="Only this course (by its slug); default: every course.",
)
def reindex_command(course_slug: str | None) -> None:
    """Rebuild the index from the database; safe while the site is running."""
    from core.cli import _settings, _with_database
    from core.models import Course
    from search.backends import SearchUnavailable
    from search.indexing import posts_in, reindex

    settings = _settings()

    async def work() -> tuple[int, str]:
        course_id: int | None = None
        where = "all courses"
        if course_slug is not None:
            course = await Course.get_or_none(slug=course_slug.strip().lower())
            if course is None:
                raise click.ClickException(
                    f"There is no course with the slug {course_slug!r} "
                    "('agora search status' lists the courses)."
                )
            course_id, where = course.id, f"course {course.slug}"
        total = await posts_in(course_id).count()
        with click.progressbar(length=total, label=f"Indexing {where}", show_pos=True) as bar:
            indexed = await reindex(course_id, progress=bar.update)
        return indexed, where

    try:
        indexed, where = _with_database(settings, work)
    except SearchUnavailable as exc:
        raise _unavailable(exc) from None
    click.echo(f"Indexed {indexed} visible post{'s' if indexed != 1 else ''} of {where}.")


def _lag_text(report: dict[str, Any]) -> str:
    lag = report["lag_seconds"]
    if lag is None:
        return "0 s (no indexing job is waiting)"
    text = f"{lag:.1f} s ({report['pending']} job{'s' if report['pending'] != 1 else ''} waiting"
    if report["failing"]:
        text += f", {report['failing']} failed at least once"
    if report["given_up"]:
        text += f", {report['given_up']} given up after too many attempts"
    return text + ")"


@search.command("status")
def status_command() -> None:
    """Documents in the index per course, and how far indexing is behind."""
    from core.cli import _settings, _with_database
    from search.indexing import status

    report: dict[str, Any] = _with_database(_settings(), status)
    state = "available" if report["available"] else "UNAVAILABLE"
    click.echo(f"Engine: {report['engine']} ({state}): {report['detail']}")
    total = report["total"]
    click.echo(f"Documents: {'unknown' if total is None else total}")
    for row in report["courses"]:
        documents = "unknown" if row["documents"] is None else row["documents"]
        click.echo(f"  {row['slug']}: {documents} documents, {row['visible_posts']} visible posts")
    if report["unattributed"]:
        click.echo(f"  (other: {report['unattributed']} documents of no current course)")
    click.echo(f"Indexing lag: {_lag_text(report)}")
    if report["last_error"]:
        click.echo(f"Last error: {report['last_error']}")
    if not report["available"]:
        raise click.exceptions.Exit(1)
