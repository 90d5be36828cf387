"""Configuration: read config.ini, validate every key, resolve paths.

`parse_config` is pure (text in, `Config` out) so that validation is tested with tables;
`load_config` adds the file system: reading the file, the holiday file and the mode check.
Every problem is a `ConfigError` whose text is one line naming the file, section and key.
"""

from __future__ import annotations

import configparser
import logging
import os
import re
import stat
from collections.abc import Mapping
from datetime import date, tzinfo
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

ENV_USERNAME = "ERA_BEACON_USERNAME"
ENV_PASSWORD = "ERA_BEACON_PASSWORD"

# Optional keys and their defaults, spelled out once. The README's reference mirrors this table.
SCHEDULER_DEFAULTS: dict[str, str] = {
    "timezone": "",
    "cache_dir": "cache",
    "connect_timeout_seconds": "10",
    "read_timeout_seconds": "300",
    "max_run_seconds": "1500",
    "refresh_margin_seconds": "60",
    "warmup_url": "",
    "min_gap_minutes": "10",
    "skip_dates": "",
}
MONITORING_DEFAULTS: dict[str, str] = {"ping_url": "", "metrics_file": ""}
KNOWN_KEYS: dict[str, set[str]] = {
    "scheduler": {"threshold_minutes", "api_base_url", "auth_username", "auth_password", "weekday_start_hour",
                  "weekday_end_hour", *SCHEDULER_DEFAULTS},
    "logging": {"level", "format", "file"},
    "monitoring": set(MONITORING_DEFAULTS),
}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class ConfigError(Exception):
    """A configuration problem: one line of text, exit code 78."""


class Config(SimpleNamespace):
    """Validated settings, as parse_config builds them; the annotations document the fields.

    A SimpleNamespace rather than a dataclass or NamedTuple: `dataclasses` (~8 ms) or `typing`
    (~3 ms) would cost a run skipped outside business hours a sixth of its time (bench/results.md).
    """

    path: Path
    threshold_minutes: int
    api_base_url: str
    username: str
    password: str
    weekday_start_hour: int
    weekday_end_hour: int
    timezone: str  # "" means the server's local time
    tz: tzinfo | None
    cache_dir: Path
    connect_timeout_seconds: int
    read_timeout_seconds: int
    max_run_seconds: int
    refresh_margin_seconds: int
    warmup_url: str
    min_gap_minutes: int
    skip_dates: frozenset[date]
    skip_dates_file: Path | None
    log_level: str
    log_format: str
    log_file: Path | None  # None: stderr only
    ping_url: str
    metrics_file: Path | None
    file_holds_password: bool  # then the file must not be readable by others
    warnings: tuple[str, ...]

    @property
    def lock_path(self) -> Path:
        return self.cache_dir / "notify_once.lock"

    @property
    def token_path(self) -> Path:
        return self.cache_dir / "token.json"

    @property
    def last_run_path(self) -> Path:
        return self.cache_dir / "last_run.json"

    def __repr__(self) -> str:  # never show the password
        return f"Config(path={str(self.path)!r}, api_base_url={self.api_base_url!r}, username={self.username!r})"


class _Reader:
    """Typed access to one parsed file; every error names file, section and key."""

    def __init__(self, parser: configparser.ConfigParser, path: Path) -> None:
        self.parser = parser
        self.path = path

    def fail(self, section: str, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}: [{section}] {key}: {problem}")

    def text(self, section: str, key: str, default: str | None = None) -> str:
        if self.parser.has_option(section, key):
            return self.parser.get(section, key).strip()
        if default is None:
            raise self.fail(section, key, "missing")
        return default

    def integer(self, section: str, key: str, low: int, high: int | None = None,
                default: str | None = None) -> int:
        raw = self.text(section, key, default)
        try:
            value = int(raw)
        except ValueError:
            raise self.fail(section, key, f"must be a whole number, got {raw!r}") from None
        if value < low or (high is not None and value > high):
            span = f"{low}..{high}" if high is not None else f">= {low}"
            raise self.fail(section, key, f"must be {span}, got {value}")
        return value

    def url(self, section: str, key: str, default: str | None = None) -> str:
        raw = self.text(section, key, default)
        if raw == "":
            return raw
        parts = urlsplit(raw)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise self.fail(section, key, f"must be an http(s) URL with a host, got {raw!r}")
        return raw.rstrip("/")

    def path_or_none(self, section: str, key: str, default: str) -> Path | None:
        raw = self.text(section, key, default)
        return resolve(self.path, raw) if raw else None


def resolve(config_path: Path, value: str) -> Path:
    """Relative paths are relative to the config file's folder, not the working directory."""
    return (config_path.parent / Path(value).expanduser()).absolute()


def parse_dates(text: str, where: str) -> frozenset[date]:
    """Dates separated by commas or newlines; `#` starts a comment."""
    found = set()
    for line in text.splitlines():
        for item in line.split("#", 1)[0].split(","):
            item = item.strip()
            if not item:
                continue
            try:
                if not _DATE.fullmatch(item):
                    raise ValueError
                found.add(date.fromisoformat(item))
            except ValueError:
                raise ConfigError(f"{where}: not a YYYY-MM-DD date: {item!r}") from None
    return frozenset(found)


def load_timezone(name: str) -> tzinfo | None:
    """The zone for the business-hours check; None means the server's local time."""
    if not name:
        return None
    from zoneinfo import ZoneInfo  # imported on use: only runs that have a time zone pay for it

    return ZoneInfo(name)


def parse_config(text: str, path: Path, env: Mapping[str, str]) -> Config:
    """Validate config text. Pure: no file system access, `env` passed in."""
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    try:
        parser.read_string(text, source=str(path))
    except configparser.DuplicateOptionError as exc:
        raise ConfigError(f"{path}: [{exc.section}] {exc.option}: duplicate key (line {exc.lineno})") from None
    except configparser.DuplicateSectionError as exc:
        raise ConfigError(f"{path}: [{exc.section}]: duplicate section (line {exc.lineno})") from None
    except configparser.Error as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not a valid INI file: {first}") from None
    for section in ("scheduler", "logging"):
        if not parser.has_section(section):
            raise ConfigError(f"{path}: [{section}]: section missing")

    r = _Reader(parser, path)
    s, d = "scheduler", SCHEDULER_DEFAULTS
    warnings: list[str] = unknown_keys(parser, path)

    file_password = r.text(s, "auth_password", "")
    username = env.get(ENV_USERNAME) or r.text(s, "auth_username", "")
    password = env.get(ENV_PASSWORD) or file_password
    for key, value, var in (("auth_username", username, ENV_USERNAME), ("auth_password", password, ENV_PASSWORD)):
        if not value:
            raise r.fail(s, key, f"empty or missing, and {var} is not set")

    start = r.integer(s, "weekday_start_hour", 0, 24)
    end = r.integer(s, "weekday_end_hour", 0, 24)
    if start >= end:
        raise r.fail(s, "weekday_end_hour", f"must be greater than weekday_start_hour ({start}), got {end}")

    tz_name = r.text(s, "timezone", d["timezone"])
    try:
        tz = load_timezone(tz_name)
    except (KeyError, ValueError, OSError):  # ZoneInfoNotFoundError is a KeyError
        raise r.fail(s, "timezone", f"unknown time zone {tz_name!r} (use an IANA name such as Asia/Jakarta)") from None
    if tz is None:
        warnings.append(f"{path}: [scheduler] timezone is not set: business hours use this server's local time")

    api = r.url(s, "api_base_url")
    if not api:
        raise r.fail(s, "api_base_url", "empty")
    host = urlsplit(api).hostname or ""
    if urlsplit(api).scheme == "http" and not _is_loopback(host):
        warnings.append(f"{path}: [scheduler] api_base_url uses plain http to {host}: the password travels unencrypted")

    skip_raw = r.text(s, "skip_dates", d["skip_dates"])
    skip_file = None
    skip_dates: frozenset[date] = frozenset()
    if skip_raw and _DATE.match(skip_raw):  # inline dates; anything else is a file of dates
        skip_dates = parse_dates(skip_raw, f"{path}: [scheduler] skip_dates")
    elif skip_raw:
        skip_file = resolve(path, skip_raw)

    level = r.text("logging", "level").upper()
    if level not in LOG_LEVELS:
        raise r.fail("logging", "level", f"must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
    fmt = r.text("logging", "format", "%(asctime)s - %(name)s - %(levelname)s - %(message)s")
    try:
        logging.Formatter(fmt)  # what logging itself refuses (a format with no field at all)
        fmt % _SAMPLE_RECORD  # and what would fail at each log line (an unknown field)
    except (KeyError, ValueError, TypeError) as exc:
        raise r.fail("logging", "format", f"not a valid logging format ({exc})") from None

    m = "monitoring"
    if parser.has_section(m):
        ping_url = r.url(m, "ping_url", MONITORING_DEFAULTS["ping_url"])
        metrics_file = r.path_or_none(m, "metrics_file", MONITORING_DEFAULTS["metrics_file"])
    else:
        ping_url, metrics_file = "", None

    return Config(
        path=path,
        threshold_minutes=r.integer(s, "threshold_minutes", 1),
        api_base_url=api,
        username=username,
        password=password,
        weekday_start_hour=start,
        weekday_end_hour=end,
        timezone=tz_name,
        tz=tz,
        cache_dir=resolve(path, r.text(s, "cache_dir", d["cache_dir"]) or d["cache_dir"]),
        connect_timeout_seconds=r.integer(s, "connect_timeout_seconds", 1, default=d["connect_timeout_seconds"]),
        read_timeout_seconds=r.integer(s, "read_timeout_seconds", 1, default=d["read_timeout_seconds"]),
        max_run_seconds=r.integer(s, "max_run_seconds", 1, default=d["max_run_seconds"]),
        refresh_margin_seconds=r.integer(s, "refresh_margin_seconds", 0, default=d["refresh_margin_seconds"]),
        warmup_url=r.url(s, "warmup_url", d["warmup_url"]),
        min_gap_minutes=r.integer(s, "min_gap_minutes", 0, default=d["min_gap_minutes"]),
        skip_dates=skip_dates,
        skip_dates_file=skip_file,
        log_level=level,
        log_format=fmt,
        log_file=r.path_or_none("logging", "file", ""),
        ping_url=ping_url,
        metrics_file=metrics_file,
        file_holds_password=bool(file_password),
        warnings=tuple(warnings),
    )


_SAMPLE_RECORD = {
    "asctime": "", "name": "", "levelname": "", "levelno": 0, "message": "", "pathname": "", "filename": "",
    "module": "", "funcName": "", "lineno": 0, "created": 0.0, "msecs": 0.0, "relativeCreated": 0.0,
    "thread": 0, "threadName": "", "process": 0, "processName": "", "taskName": "",
}


def unknown_keys(parser: configparser.ConfigParser, path: Path) -> list[str]:
    """Warnings for keys and sections the program does not read: a typo (`min_gap_minute`) or a key
    in the wrong section would otherwise be ignored without a word."""
    found = []
    for section in parser.sections():
        known = KNOWN_KEYS.get(section)
        if known is None:
            found.append(f"{path}: [{section}]: unknown section, ignored")
            continue
        for key in sorted(set(parser.options(section)) - known - set(parser.defaults())):
            from difflib import get_close_matches  # only when there is something to suggest

            home = [name for name, keys in KNOWN_KEYS.items() if key in keys]
            hint = (f"; it belongs in [{home[0]}]" if home else
                    "".join(f"; did you mean {m}?" for m in get_close_matches(key, known, n=1)))
            found.append(f"{path}: [{section}] {key}: unknown key, ignored{hint}")
    return found


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    import ipaddress  # only plain-http URLs get here

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_config(path: Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the file at `path` (UTF-8, BOM and CRLF accepted)."""
    env = os.environ if env is None else env
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.__class__.__name__}: {_reason(exc)}") from None
    cfg = parse_config(text, path, env)
    if cfg.skip_dates_file is not None:
        where = f"{path}: [scheduler] skip_dates file {cfg.skip_dates_file}"
        try:
            dates_text = cfg.skip_dates_file.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{where}: cannot read: {_reason(exc)}") from None
        cfg.skip_dates = parse_dates(dates_text, where)
    if cfg.file_holds_password and os.stat(path).st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        cfg.warnings += (f"{path}: holds a password and is readable by group or others: chmod 600 {path}",)
    return cfg


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc).splitlines()[0]
