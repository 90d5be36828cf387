"""Logging: the log file at its level, stderr for cron, and no secret in either.

- The log file gets the configured level and format; once a run holds the lock, through
  `WatchedFileHandler`, so logrotate can move it while a slow run is still writing.
- stderr without a terminal (cron) gets WARNING and up, so a clean run prints nothing and MAILTO
  mails only problems; on a terminal, the configured level. -v/-q move it one step.
- A filter on every handler masks the password, every token seen, and anything shaped like a JWT
  or `Bearer ...`, whatever code logs it.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

PROG = "notify_once"
log = logging.getLogger("era_beacon_notify")

_SECRETS: set[str] = set()
_TOKEN_LIKE = re.compile(r"(eyJ[\w-]+\.[\w-]+\.[\w-]*|Bearer\s+\S+)")
FILE_ONLY = {"file_only": True}  # `extra=` for records that belong in the log file, not on stderr


def add_secret(value: str) -> None:
    """Never let `value` reach a log line, whatever code logs it."""
    if value:
        _SECRETS.add(value)


def redact(text: str) -> str:
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, "[REDACTED]")
    return _TOKEN_LIKE.sub("[REDACTED]", text)


class _Redact(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


def _not_file_only(record: logging.LogRecord) -> bool:
    return not getattr(record, "file_only", False)


def _ours_or_error(record: logging.LogRecord) -> bool:
    """Libraries' chatter below ERROR (urllib3's "Retrying (...)" lines) goes to the log file only:
    a failed cron run mails one clear line, the program's own."""
    return record.name.startswith(log.name) or record.levelno >= logging.ERROR


class _ConsoleFormatter(logging.Formatter):
    """One line per record on stderr: tracebacks go to the log file, when there is one."""

    def __init__(self, fmt: str, tracebacks: bool) -> None:
        super().__init__(fmt)
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        if self.tracebacks:
            return super().format(record)
        return super().format(logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None}))


def console_level(configured: str, tty: bool, verbose: bool, quiet: bool) -> int:
    """Cron (no terminal) sees WARNING and up, so a good run mails nothing; -v/-q move one step."""
    if quiet:
        return logging.ERROR
    level = logging.getLevelName(configured) if tty else logging.WARNING
    return max(logging.DEBUG, level - 10) if verbose else level


def setup_logging(level: str, fmt: str, log_file: Path | None, verbose: bool = False, quiet: bool = False) -> None:
    """stderr as console_level says, and the log file (plain FileHandler until watch_rotation()).

    Raises OSError when the log file cannot be opened (exit 73).
    """
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(console_level(level, sys.stderr.isatty(), verbose, quiet))
    # Without a log file (a container, `file =`), stderr is the log: a bug's traceback goes there.
    console.setFormatter(_ConsoleFormatter(f"{PROG}: %(levelname)s: %(message)s", tracebacks=not log_file))
    if log_file:
        console.addFilter(_not_file_only)
    console.addFilter(_ours_or_error)
    handlers: list[logging.Handler] = [console]
    if log_file:
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setLevel(level)
        file_handler.setFormatter(logging.Formatter(fmt))
        handlers.append(file_handler)
    for handler in handlers:
        handler.addFilter(_Redact())
        root.addHandler(handler)
    root.setLevel(min(h.level for h in handlers))


def watch_rotation() -> None:
    """Swap the log file's FileHandler for a WatchedFileHandler, which reopens the file when
    logrotate has moved it. Called once the run holds the lock and may last minutes; a run that
    skips or finds the lock busy is over in milliseconds and never pays for `logging.handlers`
    (~6-9 ms, a sixth of such a run: bench/results.md)."""
    from logging.handlers import WatchedFileHandler

    root = logging.getLogger()
    for plain in [h for h in root.handlers if type(h) is logging.FileHandler]:
        watched = WatchedFileHandler(plain.baseFilename, encoding=plain.encoding)
        watched.setLevel(plain.level)
        watched.setFormatter(plain.formatter)
        for log_filter in plain.filters:
            watched.addFilter(log_filter)
        root.removeHandler(plain)
        plain.close()
        root.addHandler(watched)


def one_line(value: object, limit: int = 300) -> str:
    """Server text for a one-line message: whitespace (newlines too) collapsed, cut at `limit`."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def log_bug(exc: Exception) -> str:
    """Log the traceback (to the log file, or to stderr when there is none); return the one line (exit 70)."""
    log.critical("traceback of the internal error:", exc_info=True, extra=FILE_ONLY)
    return f"internal error (a bug; its traceback is in the log): {type(exc).__name__}: {exc}"
