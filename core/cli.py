"""The one command-line entry point, `agora`; commands parse arguments and call actions."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from core.settings import Settings, SettingsError, load_settings

T = TypeVar("T")


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise click.ClickException(f"configuration error: {exc}") from None


def _with_database(settings: Settings, work: Callable[[], Awaitable[T]]) -> T:
    from core import jobs, runtime

    async def run() -> T:
        opened = await runtime.start(settings)
        try:
            result = await work()
            if isinstance(opened.dispatcher, jobs.InProcessDispatcher):
                await opened.dispatcher.drain()
            return result
        finally:
            await runtime.stop(opened)

    return asyncio.run(run())


def _migrate(settings: Settings) -> None:
    from core.db import migrate

    try:
        asyncio.run(migrate(settings))
    except OSError as exc:
        raise click.ClickException(f"cannot reach the database: {exc}") from None


@click.group()
@click.version_option(package_name="agora")
def main() -> None:
    """Agora: course forums, calibrated peer review, moderation anyone can check."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
def serve(host: str, port: int, workers: int) -> None:
    """Run the web site (migrates first; demo data on a first start)."""
    import uvicorn

    settings = _settings()
    _migrate(settings)
    if settings.demo:
        from core.demo import database_is_empty, load_demo

        async def demo_if_empty() -> Any:
            return await load_demo(settings) if await database_is_empty() else None

        path = _with_database(settings, demo_if_empty)
        if path is not None:
            click.echo(path.read_text(encoding="utf-8"))
            click.echo(f"(saved in {path})")
    click.echo(f"Agora is at http://{host}:{port}/")
    uvicorn.run(
        "core.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=True,
        log_level="info",
    )


@main.command()
def migrate() -> None:
    """Apply database migrations."""
    _migrate(_settings())
    click.echo("Database is up to date.")


@main.command()
@click.option("--burst", is_flag=True, help="Stop when the queue is empty (for scripts).")
def worker(burst: bool) -> None:
    """Run the background job worker (needs AGORA_REDIS_URL)."""
    settings = _settings()
    if not settings.redis_url:
        raise click.ClickException(
            "AGORA_REDIS_URL is not set: without Redis, jobs run inside 'agora serve'."
        )
    _migrate(settings)
    asyncio.run(_run_worker(settings, burst))


async def _run_worker(settings: Settings, burst: bool) -> None:
    from core.worker import build_worker

    worker = build_worker(settings, burst=burst)
    try:
        await worker.async_run()
    finally:
        await worker.close()


@main.command()
def demo() -> None:
    """Load the demo course and accounts into an empty database."""
    from core.demo import database_is_empty, load_demo

    settings = _settings()
    _migrate(settings)

    async def work() -> Any:
        if not await database_is_empty():
            raise click.ClickException(
                "The database already has users; demo data is for a new site."
            )
        return await load_demo(settings)

    path = _with_database(settings, work)
    click.echo(path.read_text(encoding="utf-8"))


@main.group()
def users() -> None:
    """Manage accounts."""


@users.command("create")
@click.argument("username")
@click.option("--display-name", default=None, help="Defaults to the username.")
@click.option("--email", default=None)
@click.option("--admin", is_flag=True, help="Site administrator.")
@click.option("--instructor", is_flag=True, help="May create courses.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def users_create(
    username: str,
    display_name: str | None,
    email: str | None,
    admin: bool,
    instructor: bool,
    password_stdin: bool,
) -> None:
    """Create an account."""
    from core import actions
    from core.errors import ActionError

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    settings = _settings()
    _migrate(settings)

    async def work() -> Any:
        return await actions.create_user(
            username=username,
            display_name=display_name or username,
            password=password,
            email=email,
            is_admin=admin,
            can_create_courses=instructor,
            acting_user=None,
        )

    try:
        user = _with_database(settings, work)
    except ActionError as exc:
        details = "; ".join(f"{k}: {v}" for k, v in exc.fields.items())
        raise click.ClickException(f"{exc.message} {details}".strip()) from None
    click.echo(f"Created user {user.username}.")


@users.command("suspend")
@click.argument("username")
@click.option("--undo", is_flag=True, help="Reinstate the account.")
def users_suspend(username: str, undo: bool) -> None:
    """Suspend an account site-wide (ends its sessions) or reinstate it."""
    from core import actions
    from core.models import User

    settings = _settings()

    async def work() -> Any:
        user = await User.get_or_none(username=actions.normalize_username(username))
        if user is None:
            raise click.ClickException(f"No user {username!r}.")
        return await actions.set_user_active(user, undo, acting_user=None)

    user = _with_database(settings, work)
    click.echo(f"{user.username} is {'active' if user.is_active else 'suspended'}.")


@users.command("delete")
@click.argument("username")
@click.option(
    "--remove-posts",
    is_flag=True,
    help="Remove their posts and blank their review comments where the course allows it "
    "(default: keep them, shown as by a deleted user).",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def users_delete(username: str, remove_posts: bool, yes: bool) -> None:
    """Delete an account: its personal data goes, the public record stays without its name."""
    from core import actions, deletion
    from core.errors import ActionError
    from core.models import User

    settings = _settings()
    _migrate(settings)

    async def look() -> tuple[int, deletion.DeletionPlan]:
        user = await User.get_or_none(username=actions.normalize_username(username))
        if user is None or user.deleted_at is not None:
            raise click.ClickException(f"No user {username!r}.")
        return user.id, await deletion.deletion_plan(user)

    user_id, plan = _with_database(settings, look)
    if plan.blocked:
        titles = ", ".join(course.title for course in plan.sole_instructor_of)
        raise click.ClickException(
            f"{username} is the only instructor of {titles}. Make another member an "
            "instructor there first; nothing was deleted."
        )
    choice = "removed where the course allows it" if remove_posts else "kept, unnamed"
    click.echo(
        f"{username} has {plan.post_count} posts and {plan.review_count} reviews; "
        f"posts and review comments will be {choice}."
    )
    if remove_posts and plan.keeps_posts_in:
        titles = ", ".join(course.title for course in plan.keeps_posts_in)
        click.echo(f"These courses do not allow removal, so posts there stay: {titles}.")
    if not yes:
        click.confirm(f"Delete the account {username}? This cannot be undone", abort=True)

    async def work() -> deletion.DeletionResult:
        user = await User.get(id=user_id)
        return await deletion.delete_account(user, remove_posts=remove_posts, acting_user=None)

    try:
        result = _with_database(settings, work)
    except ActionError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(
        f"Deleted {username} (now {result.username}): {result.posts_removed} posts "
        f"removed, {result.posts_kept} kept unnamed, {result.reviews_blanked} review comments "
        "blanked."
    )


@users.command("export")
@click.argument("username")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Where to write the ZIP (default: agora-export-USERNAME-DATE.zip here).",
)
def users_export(username: str, output: Path | None) -> None:
    """Write USERNAME's data export (the same ZIP the learner can download) to a file."""
    from core import actions, export
    from core.models import User
    from core.timeutil import utcnow

    settings = _settings()
    _migrate(settings)

    async def work() -> tuple[Path, int]:
        user = await User.get_or_none(username=actions.normalize_username(username))
        if user is None:
            raise click.ClickException(f"No user {username!r}.")
        target = output or Path(f"agora-export-{user.username}-{utcnow():%Y%m%d-%H%M}.zip")
        if not target.parent.is_dir():
            raise click.ClickException(f"The folder {str(target.parent)!r} does not exist.")

        async def progress(percent: int, stage: str) -> None:
            click.echo(f"{percent:3d} %  {stage}", err=True)

        size = await export.write_archive(user, target, settings=settings, on_progress=progress)
        return target, size

    target, size = _with_database(settings, work)
    click.echo(f"Wrote the data export of {username} to {target.resolve()} ({size} bytes).")


@main.group()
def tokens() -> None:
    """Manage API tokens."""


@tokens.command("create")
@click.argument("username")
@click.option("--name", default="", help="A label to recognise the token by.")
def tokens_create(username: str, name: str) -> None:
    """Create an API token for USERNAME and print it (shown only once)."""
    from core import actions
    from core.models import User

    settings = _settings()
    _migrate(settings)

    async def work() -> Any:
        user = await User.get_or_none(username=actions.normalize_username(username))
        if user is None:
            raise click.ClickException(f"No user {username!r}.")
        return await actions.issue_api_token(user, name=name, acting_user=None)

    click.echo(_with_database(settings, work))


@main.group()
def notifications() -> None:
    """Email notifications."""


@notifications.command("digest")
def notifications_digest() -> None:
    """Send the daily digests that are due now, and say to whom."""
    from core.notifications import send_due_digests

    settings = _settings()
    if not settings.smtp_url:
        raise click.ClickException(
            "AGORA_SMTP_URL is not set: without a mail server, notifications stay in the app."
        )
    _migrate(settings)
    run = _with_database(settings, send_due_digests)
    for username, count in run.sent:
        noun = "notification" if count == 1 else "notifications"
        click.echo(f"Sent {username} a digest of {count} {noun}.")
    if not (run.sent or run.failed or run.server_down):
        click.echo("No digest was due.")
    for username, error in run.failed:
        click.echo(f"Not sent to {username}: {error}", err=True)
    if run.server_down:
        raise click.ClickException(
            f"could not send through the mail server ({run.server_down}); "
            "the remaining digests go out on the next run."
        )
    if run.failed:
        sys.exit(1)


def _attach_subcommands() -> None:
    from moderation.cli import audit
    from peer_review.cli import peer
    from search.cli import search

    main.add_command(audit)
    main.add_command(peer)
    main.add_command(search)


_attach_subcommands()
