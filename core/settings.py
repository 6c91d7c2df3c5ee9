"""Settings read from AGORA_* environment variables, checked once at start-up."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit


class SettingsError(ValueError):
    """A setting has a value Agora cannot use; the message names the variable."""


# Every setting, its default and what it means. docs/settings.md is checked against this table.
SETTINGS_DOC: dict[str, str] = {
    "AGORA_DATA_DIR": "Folder for the SQLite file, the secret key and uploads (default ./var).",
    "AGORA_DATABASE_URL": "sqlite:///path or postgres://user@host:port/db "
    "(default: SQLite file in the data folder).",
    "AGORA_REDIS_URL": "redis://host:port/db; when set, background jobs go to the arq worker "
    "(`agora worker`); when unset they run inside the web process.",
    "AGORA_MEILI_URL": "http(s)://host:port of Meilisearch; when unset the embedded engine "
    "is used.",
    "AGORA_MEILI_KEY": "API key for Meilisearch.",
    "AGORA_SECRET_KEY": "Secret for signing tokens (at least 32 characters); generated into the "
    "data folder when unset.",
    "AGORA_SESSION_IDLE_MINUTES": "A session ends after this long without a request (default 10080,"
    " one week).",
    "AGORA_SESSION_MAX_DAYS": "A session ends this long after log-in, whatever happens "
    "(default 30).",
    "AGORA_LOGIN_RATE_LIMIT": "Failed log-ins allowed per account and per address in 15 minutes "
    "(default 10).",
    "AGORA_SIGNUP_RATE_LIMIT": "Sign-ups allowed per address per hour (default 5).",
    "AGORA_OUTBOX_SWEEP_SECONDS": "How often the worker looks for undelivered jobs (default 10).",
    "AGORA_APPEAL_DAYS": "How long after a moderation act the affected person may appeal "
    "(default 14).",
    "AGORA_POST_RATE_LIMIT": "Posts one member may make per minute before an automatic "
    "10-minute silence (default 10).",
    "AGORA_BASE_URL": "The site's public address, used for links in emails "
    "(default http://127.0.0.1:8000).",
    "AGORA_SMTP_URL": "smtp://user:password@host:port or smtps:// (TLS) for email notifications; "
    "when unset, notifications are in-app only.",
    "AGORA_MAIL_FROM": "The From address of Agora's emails (default agora@localhost).",
    "AGORA_EXPORT_HOURS": "How long a data export can be downloaded after it is ready "
    "(default 48).",
    "AGORA_DEMO": "Load demo data on first start of `agora serve`: 1 or 0 (default 1 for the "
    "embedded SQLite set-up, 0 otherwise).",
}


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path
    database_url: str
    secret_key: str
    redis_url: str | None = None
    meili_url: str | None = None
    meili_key: str | None = None
    session_idle_minutes: int = 7 * 24 * 60
    session_max_days: int = 30
    login_rate_limit: int = 10
    signup_rate_limit: int = 5
    outbox_sweep_seconds: int = 10
    appeal_days: int = 14
    post_rate_limit: int = 10
    base_url: str = "http://127.0.0.1:8000"
    smtp_url: str | None = None
    mail_from: str = "agora@localhost"
    export_hours: int = 48
    demo: bool = True

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def with_changes(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, not {raw!r}.") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, not {value}.")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be 1 or 0, not {raw!r}.")


def _url(env: Mapping[str, str], name: str, schemes: set[str]) -> str | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in schemes:
        allowed = ", ".join(sorted(f"{s}://" for s in schemes))
        raise SettingsError(f"{name} must start with one of {allowed}; got {raw!r}.")
    if parts.scheme != "sqlite" and not parts.hostname:
        raise SettingsError(f"{name} has no host name: {raw!r}.")
    return raw


def _mail_from(env: Mapping[str, str]) -> str:
    raw = env.get("AGORA_MAIL_FROM", "").strip()
    if not raw:
        return "agora@localhost"
    local, at, domain = raw.rpartition("<")[2].rstrip(">").partition("@")
    if not at or not local or not domain or any(c.isspace() for c in local + domain):
        raise SettingsError(f"AGORA_MAIL_FROM must be an email address, not {raw!r}.")
    return raw


def _secret_key(env: Mapping[str, str], data_dir: Path) -> str:
    raw = env.get("AGORA_SECRET_KEY", "").strip()
    if raw:
        if len(raw) < 32:
            raise SettingsError("AGORA_SECRET_KEY must be at least 32 characters long.")
        return raw
    key_file = data_dir / "secret_key"
    if key_file.exists():
        key = key_file.read_text(encoding="utf-8").strip()
        if len(key) < 32:
            raise SettingsError(
                f"{key_file} holds no usable secret key (under 32 characters): delete it to have "
                "a new one made, or set AGORA_SECRET_KEY."
            )
        return key
    key = secrets.token_urlsafe(48)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key)
    return key


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build settings from the environment, raising SettingsError on the first bad value."""
    env = os.environ if env is None else env
    data_dir = Path(env.get("AGORA_DATA_DIR", "").strip() or "var").expanduser().resolve()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SettingsError(f"AGORA_DATA_DIR {str(data_dir)!r} cannot be created: {exc}") from None
    database_url = _url(env, "AGORA_DATABASE_URL", {"sqlite", "postgres", "postgresql"})
    if database_url is None:
        database_url = f"sqlite://{data_dir / 'agora.sqlite3'}"
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        secret_key=_secret_key(env, data_dir),
        redis_url=_url(env, "AGORA_REDIS_URL", {"redis", "rediss"}),
        meili_url=_url(env, "AGORA_MEILI_URL", {"http", "https"}),
        meili_key=env.get("AGORA_MEILI_KEY", "").strip() or None,
        session_idle_minutes=_int(env, "AGORA_SESSION_IDLE_MINUTES", 7 * 24 * 60),
        session_max_days=_int(env, "AGORA_SESSION_MAX_DAYS", 30),
        login_rate_limit=_int(env, "AGORA_LOGIN_RATE_LIMIT", 10),
        signup_rate_limit=_int(env, "AGORA_SIGNUP_RATE_LIMIT", 5),
        outbox_sweep_seconds=_int(env, "AGORA_OUTBOX_SWEEP_SECONDS", 10),
        appeal_days=_int(env, "AGORA_APPEAL_DAYS", 14),
        post_rate_limit=_int(env, "AGORA_POST_RATE_LIMIT", 10),
        base_url=(_url(env, "AGORA_BASE_URL", {"http", "https"}) or "http://127.0.0.1:8000").rstrip(
            "/"
        ),
        smtp_url=_url(env, "AGORA_SMTP_URL", {"smtp", "smtps"}),
        mail_from=_mail_from(env),
        export_hours=_int(env, "AGORA_EXPORT_HOURS", 48),
        demo=_bool(env, "AGORA_DEMO", database_url.startswith("sqlite")),
    )
