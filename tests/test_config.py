"""Config validation (era_beacon_notify.config): parse_config is pure, load_config adds the file."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import pytest

from era_beacon_notify.config import ENV_PASSWORD, ENV_USERNAME, ConfigError, load_config, parse_config

PATH = Path("/srv/job/config.ini")
ROOT = Path(__file__).resolve().parent.parent

BASE = {
    "threshold_minutes": "30", "api_base_url": "https://era-beacon-api.onrender.com/v1",
    "auth_username": "era_user", "auth_password": "Era2025!", "weekday_start_hour": "9",
    "weekday_end_hour": "18", "timezone": "Asia/Jakarta",
}
LOGGING = {"level": "INFO", "format": "%(asctime)s - %(name)s - %(levelname)s - %(message)s",
           "file": "notify_once.log"}


def text(scheduler: dict | None = None, logging: dict | None = None, extra: str = "") -> str:
    s = {**BASE, **(scheduler or {})}
    lg = {**LOGGING, **(logging or {})}
    out = ["[scheduler]"] + [f"{k} = {v}" for k, v in s.items() if v is not None]
    out += ["[logging]"] + [f"{k} = {v}" for k, v in lg.items() if v is not None]
    return "\n".join(out) + "\n" + extra


def test_the_original_schedulers_config_is_read_unchanged() -> None:
    cfg = parse_config(text({"timezone": None}), PATH, {})
    assert (cfg.threshold_minutes, cfg.username, cfg.password) == (30, "era_user", "Era2025!")
    assert (cfg.weekday_start_hour, cfg.weekday_end_hour, cfg.log_level) == (9, 18, "INFO")
    assert cfg.log_format == LOGGING["format"]  # % kept literally: no interpolation


def test_defaults_are_spelled_out() -> None:
    cfg = parse_config(text(), PATH, {})
    assert cfg.cache_dir == Path("/srv/job/cache")  # relative to the config file, not the cwd
    assert cfg.log_file == Path("/srv/job/notify_once.log")
    assert (cfg.connect_timeout_seconds, cfg.read_timeout_seconds, cfg.max_run_seconds) == (10, 300, 1500)
    assert (cfg.refresh_margin_seconds, cfg.min_gap_minutes, cfg.warmup_url) == (60, 10, "")
    assert cfg.skip_dates == frozenset() and cfg.ping_url == "" and cfg.metrics_file is None


@pytest.mark.parametrize("scheduler, logging, key", [
    ({"threshold_minutes": None}, {}, "threshold_minutes"),
    ({"api_base_url": None}, {}, "api_base_url"),
    ({"weekday_start_hour": None}, {}, "weekday_start_hour"),
    ({"threshold_minutes": "abc"}, {}, "threshold_minutes"),
    ({"threshold_minutes": "30.5"}, {}, "threshold_minutes"),
    ({"threshold_minutes": "0"}, {}, "threshold_minutes"),
    ({"weekday_start_hour": "-1"}, {}, "weekday_start_hour"),
    ({"weekday_end_hour": "25"}, {}, "weekday_end_hour"),
    ({"weekday_start_hour": "18", "weekday_end_hour": "9"}, {}, "weekday_end_hour"),
    ({"weekday_start_hour": "9", "weekday_end_hour": "9"}, {}, "weekday_end_hour"),
    ({"timezone": "Mars/Olympus"}, {}, "timezone"),
    ({"timezone": "../../etc/passwd"}, {}, "timezone"),
    ({"api_base_url": "ftp://host/v1"}, {}, "api_base_url"),
    ({"api_base_url": "era-beacon-api.onrender.com/v1"}, {}, "api_base_url"),
    ({"api_base_url": "https:///v1"}, {}, "api_base_url"),
    ({"auth_username": ""}, {}, "auth_username"),
    ({"auth_password": ""}, {}, "auth_password"),
    ({"auth_password": None}, {}, "auth_password"),
    ({"max_run_seconds": "0"}, {}, "max_run_seconds"),
    ({"connect_timeout_seconds": "ten"}, {}, "connect_timeout_seconds"),
    ({"warmup_url": "health"}, {}, "warmup_url"),
    ({"skip_dates": "2026-12-25, 2026-13-01"}, {}, "skip_dates"),
    ({}, {"level": "LOUD"}, "level"),
    ({}, {"level": None}, "level"),
    ({}, {"format": "%(nosuchfield)s"}, "format"),
    ({}, {"format": "plain text, no field"}, "format"),  # logging.Formatter refuses it at every run
])
def test_invalid_values_name_the_file_and_key(scheduler: dict, logging: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text(scheduler, logging), PATH, {})
    message = str(err.value)
    assert str(PATH) in message and key in message and "\n" not in message


@pytest.mark.parametrize("body, where", [
    ("[logging]\nlevel = INFO\n", "[scheduler]"),
    (text().split("[logging]")[0], "[logging]"),
    (text() + "[scheduler]\nthreshold_minutes = 5\n", "duplicate section"),
    (text().replace("threshold_minutes = 30", "threshold_minutes = 30\nthreshold_minutes = 45"), "threshold_minutes"),
    ("not an ini file at all", "not a valid INI file"),
])
def test_structure_errors(body: str, where: str) -> None:
    with pytest.raises(ConfigError, match=None) as err:
        parse_config(body, PATH, {})
    assert where in str(err.value) and str(PATH) in str(err.value)


def test_percent_signs_are_literal_everywhere() -> None:
    cfg = parse_config(text({"auth_password": "50%off%(x)s"}), PATH, {})
    assert cfg.password == "50%off%(x)s"


def test_environment_overrides_and_may_replace_the_keys() -> None:
    env = {ENV_USERNAME: "env_user", ENV_PASSWORD: "env-pass"}
    cfg = parse_config(text({"auth_username": None, "auth_password": None}), PATH, env)
    assert (cfg.username, cfg.password) == ("env_user", "env-pass")
    assert parse_config(text(), PATH, env).password == "env-pass"


@pytest.mark.parametrize("scheduler, warning", [
    ({"api_base_url": "http://api.example.com/v1"}, "plain http"),
    ({"timezone": None}, "timezone is not set"),
    ({"timezone": ""}, "timezone is not set"),
])
def test_warnings_do_not_fail(scheduler: dict, warning: str) -> None:
    cfg = parse_config(text(scheduler), PATH, {})
    assert any(warning in w for w in cfg.warnings)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/v1", "http://localhost/v1", "http://[::1]:80/v1",
                                 "https://api.example.com/v1"])
def test_no_plain_http_warning_for_loopback_or_https(url: str) -> None:
    assert parse_config(text({"api_base_url": url}), PATH, {}).warnings == ()


def test_skip_dates_inline() -> None:
    cfg = parse_config(text({"skip_dates": "2026-12-25, 2027-01-01"}), PATH, {})
    assert cfg.skip_dates == {date(2026, 12, 25), date(2027, 1, 1)}


def test_load_accepts_bom_and_crlf_and_reads_a_holiday_file(tmp_path: Path) -> None:
    (tmp_path / "holidays.txt").write_text("# public holidays\n2026-12-25  # Christmas\n\n2027-01-01\n")
    path = tmp_path / "config.ini"
    path.write_bytes(b"\xef\xbb\xbf" + text({"skip_dates": "holidays.txt"}).replace("\n", "\r\n").encode())
    path.chmod(0o600)
    cfg = load_config(path, env={})
    assert cfg.skip_dates == {date(2026, 12, 25), date(2027, 1, 1)}
    assert cfg.warnings == ()


def test_load_warns_when_a_password_is_readable_by_others(tmp_path: Path) -> None:
    path = tmp_path / "config.ini"
    path.write_text(text())
    path.chmod(0o644)
    assert any("chmod 600" in w for w in load_config(path, env={}).warnings)
    path.write_text(text({"auth_password": None}) + "[monitoring]\n")
    assert load_config(path, env={ENV_PASSWORD: "x"}).warnings == ()
    path.write_text(text({"auth_password": None}).replace("[logging]", "auth_password: colon-form\n[logging]"))
    assert any("chmod 600" in w for w in load_config(path, env={}).warnings)  # INI's other separator


@pytest.mark.parametrize("setup, problem", [
    (lambda p: None, "not found"),
    (lambda p: p.write_bytes(b"[scheduler]\n\xff\xfe"), "cannot read"),
    (lambda p: p.mkdir(), "cannot read"),
])
def test_load_file_problems(tmp_path: Path, setup, problem: str) -> None:
    path = tmp_path / "config.ini"
    setup(path)
    with pytest.raises(ConfigError, match=problem):
        load_config(path, env={})


def test_shipped_config_is_valid_and_points_at_production() -> None:
    cfg = load_config(ROOT / "config.ini", env={})
    assert cfg.api_base_url == "https://era-beacon-api.onrender.com/v1"
    assert (cfg.threshold_minutes, cfg.timezone, cfg.weekday_start_hour, cfg.weekday_end_hour) == \
        (30, "Asia/Jakarta", 9, 18)
    assert cfg.log_file == ROOT / "notify_once.log" and cfg.cache_dir == ROOT / "cache"
    assert os.path.basename(cfg.path) == "config.ini"


@pytest.mark.parametrize("extra, warning", [
    ("min_gap_minute = 0\n", "[scheduler] min_gap_minute: unknown key, ignored; did you mean min_gap_minutes?"),
    ("timezon = UTC\n", "[scheduler] timezon: unknown key, ignored; did you mean timezone?"),
])
def test_a_misspelled_key_warns_with_a_suggestion(extra: str, warning: str) -> None:
    body = text().replace("[logging]", extra + "[logging]")
    assert any(warning in w for w in parse_config(body, PATH, {}).warnings)


def test_a_key_in_the_wrong_section_or_an_unknown_section_warns() -> None:
    warnings = parse_config(text(extra="skip_dates = 2026-12-25\n[monitorng]\nping_url = x\n"), PATH, {}).warnings
    assert any("[logging] skip_dates: unknown key, ignored; it belongs in [scheduler]" in w for w in warnings)
    assert any("[monitorng]: unknown section" in w for w in warnings)


def test_the_original_config_has_no_unknown_keys() -> None:
    assert parse_config(text(), PATH, {}).warnings == ()
