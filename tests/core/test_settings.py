"""Settings from AGORA_* variables (core.settings) and how the command line reports bad ones."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from core.cli import main
from core.settings import Settings, SettingsError, load_settings


def settings_for(tmp_path: Path, **env: str) -> Settings:
    return load_settings({"AGORA_DATA_DIR": str(tmp_path), **env})


def test_defaults_are_the_embedded_set_up(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    assert settings.data_dir == tmp_path.resolve()
    assert settings.is_sqlite
    assert settings.database_url == f"sqlite://{tmp_path.resolve() / 'agora.sqlite3'}"
    assert settings.redis_url is None
    assert settings.meili_url is None
    assert settings.meili_key is None
    assert settings.demo is True
    assert settings.session_idle_minutes == 7 * 24 * 60
    assert settings.session_max_days == 30
    assert settings.login_rate_limit == 10
    assert settings.signup_rate_limit == 5
    assert settings.outbox_sweep_seconds == 10


def test_data_dir_is_created(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir()
    assert settings.data_dir == (tmp_path / "a" / "b").resolve()


@pytest.mark.parametrize(
    "url", ["postgres://agora@db.example:5432/agora", "postgresql://agora@localhost/agora"]
)
def test_demo_is_off_for_postgres(tmp_path: Path, url: str) -> None:
    settings = settings_for(tmp_path, AGORA_DATABASE_URL=url)
    assert settings.database_url == url
    assert not settings.is_sqlite
    assert settings.demo is False
    assert settings_for(tmp_path, AGORA_DATABASE_URL=url, AGORA_DEMO="1").demo is True


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("yes", True), ("0", False), ("off", False), (" TRUE ", True), ("", True)],
)
def test_demo_switch(tmp_path: Path, raw: str, expected: bool) -> None:
    assert settings_for(tmp_path, AGORA_DEMO=raw).demo is expected


def test_services_and_numbers_are_read(tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path,
        AGORA_REDIS_URL="redis://cache:6379/2",
        AGORA_MEILI_URL="https://search.example",
        AGORA_MEILI_KEY=" key ",
        AGORA_SESSION_IDLE_MINUTES="30",
        AGORA_SESSION_MAX_DAYS="2",
        AGORA_LOGIN_RATE_LIMIT="3",
        AGORA_SIGNUP_RATE_LIMIT="4",
        AGORA_OUTBOX_SWEEP_SECONDS="5",
    )
    assert settings.redis_url == "redis://cache:6379/2"
    assert settings.meili_url == "https://search.example"
    assert settings.meili_key == "key"
    assert (
        settings.session_idle_minutes,
        settings.session_max_days,
        settings.login_rate_limit,
        settings.signup_rate_limit,
        settings.outbox_sweep_seconds,
    ) == (30, 2, 3, 4, 5)


def test_secret_key_is_generated_privately_and_kept(tmp_path: Path) -> None:
    first = settings_for(tmp_path)
    key_file = tmp_path / "secret_key"
    assert key_file.is_file()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text(encoding="utf-8").strip() == first.secret_key
    assert len(first.secret_key) >= 32
    second = settings_for(tmp_path)
    assert second.secret_key == first.secret_key
    other = settings_for(tmp_path / "elsewhere")
    assert other.secret_key != first.secret_key


def test_explicit_secret_key_wins_and_writes_no_file(tmp_path: Path) -> None:
    key = "k" * 40
    assert settings_for(tmp_path, AGORA_SECRET_KEY=f" {key} ").secret_key == key
    assert not (tmp_path / "secret_key").exists()


@pytest.mark.parametrize("content", ["", "\n", "too-short"])
def test_unusable_secret_key_file_is_refused(tmp_path: Path, content: str) -> None:
    # An empty file (say, the disk filled up while writing it) must not sign with "".
    (tmp_path / "secret_key").write_text(content, encoding="utf-8")
    with pytest.raises(SettingsError, match="AGORA_SECRET_KEY"):
        settings_for(tmp_path)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AGORA_DATABASE_URL", "mysql://x"),
        ("AGORA_DATABASE_URL", "postgres:///nohost"),
        ("AGORA_DATABASE_URL", "agora.sqlite3"),
        ("AGORA_REDIS_URL", "http://x"),
        ("AGORA_REDIS_URL", "redis://"),
        ("AGORA_MEILI_URL", "ftp://x"),
        ("AGORA_MEILI_URL", "localhost:7700"),
        ("AGORA_SESSION_IDLE_MINUTES", "abc"),
        ("AGORA_SESSION_IDLE_MINUTES", "0"),
        ("AGORA_SESSION_IDLE_MINUTES", "1.5"),
        ("AGORA_SESSION_MAX_DAYS", "-1"),
        ("AGORA_LOGIN_RATE_LIMIT", "ten"),
        ("AGORA_SIGNUP_RATE_LIMIT", "0"),
        ("AGORA_OUTBOX_SWEEP_SECONDS", "soon"),
        ("AGORA_DEMO", "maybe"),
        ("AGORA_SECRET_KEY", "short"),
        ("AGORA_SECRET_KEY", "x" * 31),
    ],
)
def test_bad_value_names_its_variable(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        settings_for(tmp_path, **{name: value})
    assert name in str(caught.value)


def test_data_dir_that_is_a_file(tmp_path: Path) -> None:
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("hello", encoding="utf-8")
    with pytest.raises(SettingsError) as caught:
        load_settings({"AGORA_DATA_DIR": str(a_file)})
    assert "AGORA_DATA_DIR" in str(caught.value)


def test_cli_reports_a_bad_setting_in_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        main, ["migrate"], env={"AGORA_DATABASE_URL": "mysql://x", "AGORA_DATA_DIR": str(tmp_path)}
    )
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "AGORA_DATABASE_URL" in lines[0]
    assert "mysql://x" in lines[0]
    assert not (tmp_path / "agora.sqlite3").exists()
