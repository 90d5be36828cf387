"""Shared fixtures: a stand-in API on loopback, and a job folder to run notify_once.py in.

Runs go through `Job.run`: the real script as a subprocess, with a cron-like environment, from a
working directory that is not the project's. Every run's output and log are kept for the
secret scan (tests/test_zz_secret_scan.py), which runs last.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
SCRIPT = ROOT / "notify_once.py"
PASSWORD = "Era2025!"
USERNAME = "era_user"
JAKARTA = ZoneInfo("Asia/Jakarta")

sys.path.insert(0, str(TESTS))
from standin import StandIn  # noqa: E402

# Everything any run printed or logged, and every secret any stand-in handed out: see the scan.
SEEN_OUTPUT: list[str] = []
SEEN_SECRETS: set[str] = {PASSWORD}


def jakarta(text: str) -> float:
    """Epoch seconds of a Jakarta wall-clock time, e.g. '2026-12-02 10:00' (a Wednesday)."""
    return datetime.fromisoformat(text).replace(tzinfo=JAKARTA).timestamp()


BUSINESS_TIME = jakarta("2026-12-02 10:00")  # Wednesday 10:00 Jakarta, for scheduled (non --force) runs


def cron_env(**extra: str) -> dict[str, str]:
    """A cron-like environment: minimal PATH, HOME, no proxies, UTC, plus the test hooks' path."""
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8",
           "TZ": "UTC", "PYTHONPATH": str(TESTS / "inject"), "PYTHONDONTWRITEBYTECODE": "1"}
    env.update(extra)
    return env


@dataclass
class Result:
    code: int
    out: str
    err: str
    log: str
    seconds: float

    @property
    def all(self) -> str:
        return self.out + self.err + self.log


class Job:
    """One deployment in a temp folder: config.ini, cache/, notify_once.log."""

    def __init__(self, folder: Path, api: StandIn) -> None:
        self.dir = folder
        self.api = api
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = self.dir / "config.ini"
        self.cwd = self.dir / "elsewhere"  # cron's $HOME: not the config's folder
        self.cwd.mkdir(exist_ok=True)
        self.write_config()

    @property
    def cache(self) -> Path:
        return self.dir / "cache"

    @property
    def token_file(self) -> Path:
        return self.cache / "token.json"

    @property
    def last_run(self) -> Path:
        return self.cache / "last_run.json"

    @property
    def log_file(self) -> Path:
        return self.dir / "notify_once.log"

    def config_text(self, scheduler: dict | None = None, logging: dict | None = None,
                    extra: str = "") -> str:
        s = {"threshold_minutes": "30", "api_base_url": self.api.base_url, "auth_username": USERNAME,
             "auth_password": PASSWORD, "weekday_start_hour": "9", "weekday_end_hour": "18",
             "timezone": "Asia/Jakarta", "max_run_seconds": "30", "connect_timeout_seconds": "2",
             "read_timeout_seconds": "10"}
        lg = {"level": "INFO", "format": "%(asctime)s - %(name)s - %(levelname)s - %(message)s",
              "file": "notify_once.log"}
        s.update(scheduler or {})
        lg.update(logging or {})
        lines = ["[scheduler]"] + [f"{k} = {v}" for k, v in s.items() if v is not None]
        lines += ["", "[logging]"] + [f"{k} = {v}" for k, v in lg.items() if v is not None]
        return "\n".join(lines) + "\n" + textwrap.dedent(extra)

    def write_config(self, scheduler: dict | None = None, logging: dict | None = None, extra: str = "",
                     text: str | None = None) -> Path:
        self.config.write_text(self.config_text(scheduler, logging, extra) if text is None else text)
        self.config.chmod(0o600)
        return self.config

    def command(self, *args: str) -> list[str]:
        return [sys.executable, str(SCRIPT), "--config", str(self.config), *args]

    def popen(self, *args: str, env: dict | None = None) -> subprocess.Popen:
        return subprocess.Popen(self.command(*args), cwd=self.cwd, env=cron_env(**(env or {})),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    def run(self, *args: str, env: dict | None = None, timeout: float = 60) -> Result:
        started = time.monotonic()
        proc = subprocess.run(self.command(*args), cwd=self.cwd, env=cron_env(**(env or {})),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
        return self.result(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)

    def result(self, code: int, out: str, err: str, seconds: float = 0.0) -> Result:
        log = self.log_file.read_text() if self.log_file.exists() else ""
        SEEN_OUTPUT.extend([out, err, log])
        SEEN_SECRETS.update(self.api.issued_tokens)
        SEEN_SECRETS.update(self.api.device_tokens)
        return Result(code, out, err, log, seconds)


def finish(proc: subprocess.Popen, job: Job, timeout: float = 30) -> Result:
    """Wait for a Popen'd run and collect it like Job.run does."""
    out, err = proc.communicate(timeout=timeout)
    return job.result(proc.returncode, out, err)


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return False


@pytest.fixture
def api():
    with StandIn() as server:
        yield server
        SEEN_SECRETS.update(server.issued_tokens)
        SEEN_SECRETS.update(server.device_tokens)


@pytest.fixture
def job(tmp_path: Path, api: StandIn) -> Job:
    return Job(tmp_path / "job", api)
