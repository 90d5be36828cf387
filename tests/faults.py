"""Shared checks for the fault-matrix tests (issue 3): tests/test_faults_*.py.

Every fault case ends with the same promises: the documented exit code and one clear line, no
traceback; no duplicate notification; the token cache old or new, never partial; no secret in any
output.

- `check_run`: all of them for one network/HTTP/payload run (its one ERROR line carries "(exit N)").
- `one_line`: exactly one non-empty stderr line (a WARNING, `config error:`, a signal...) with fragments.
- `assert_clean`: no traceback and no secret (`secrets_of`) in a run's output.
- `cache_doc` + `plant` (or `cache_token` for both at job.token_file): plant a token cache.
- `cached`: token.json whole (regular 0600 file, the five keys) or absent; `assert_valid_token_file`:
  it holds a fresh token the stand-in issued.
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import time
from pathlib import Path

import pytest

from conftest import PASSWORD, SEEN_SECRETS, USERNAME, Job, Result
from standin import StandIn

FAST = {"ERA_TEST_SLEEP_SCALE": "0.1"}  # shrink retry sleeps tenfold (tests/inject/sitecustomize.py)
TOKEN_KEYS = {"token", "expires_at", "api_base_url", "username", "obtained_at"}
SUCCESS_BODY = {"success": True, "threshold_minutes": 30, "message": "Processed 1 employees", "total_employees": 1,
                "notifications_sent": 1, "notifications_failed": 0,
                "notifications_detail": [{"employee_id": "EMP-0001", "request_curl": "curl -d '{\"token\": "
                                          "\"devtok-canned-secret\"}'", "response_code": 200,
                                          "response_message": "{\"success\": true}"}]}
SEEN_SECRETS.add("devtok-canned-secret")
PLANTED: set[str] = set()  # tokens the tests put into caches: secrets too


@pytest.fixture(autouse=True)
def pushes_succeed(api):
    """Every push succeeds, so a good run prints nothing and stderr holds only what the case causes.

    Autouse in each test module that imports it (`from faults import pushes_succeed`), and only there.
    """
    for employee in api.employees:
        employee["push_ok"] = True


# --- the stand-in's side ----------------------------------------------------------------------------

def closed_port(host: str = "127.0.0.1") -> int:
    """A loopback port nobody listens on (bound, then closed): connecting to it is refused."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def seen(api: StandIn) -> list[str]:
    """What the stand-in saw, in order, e.g. ["GET health", "POST login", "POST notify"]."""
    return [f"{x.method} {x.route}" for x in api.requests]


# --- secrets and stderr -----------------------------------------------------------------------------

def secrets_of(api: StandIn, *extra: str | None) -> set[str]:
    """The password, every token the stand-in issued or a test planted, every device token, and `extra`."""
    found = {s for s in (PASSWORD, *api.issued_tokens, *api.device_tokens, *PLANTED, *extra) if s}
    SEEN_SECRETS.update(found)  # the suite-wide secret scan checks them too
    return found


def assert_clean(result: Result, api: StandIn, *extra_secrets: str | None, also: str = "") -> None:
    """No traceback and no secret in stdout, stderr, the log, nor in `also` (e.g. last_run.json)."""
    text = result.all + also
    assert "Traceback" not in text, text
    for secret in secrets_of(api, *extra_secrets):
        assert secret not in text, f"a secret leaked into the output: {secret[:6]}..."


def err_lines(result: Result) -> list[str]:
    return [line for line in result.err.splitlines() if line.strip()]


def one_line(result: Result, *fragments: str) -> str:
    """Exactly one non-empty stderr line, containing every fragment; returned."""
    lines = err_lines(result)
    assert len(lines) == 1, f"want exactly one stderr line, got {len(lines)}:\n{result.err}"
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


# --- the token cache --------------------------------------------------------------------------------

def cache_doc(api: StandIn, **override) -> dict:
    """A token cache the program would accept; the token is one the stand-in would accept too."""
    now = int(time.time())
    doc = {"token": api.make_token(), "expires_at": now + 1500, "api_base_url": api.base_url,
           "username": USERNAME, "obtained_at": now - 300}
    doc.update(override)
    if isinstance(doc["token"], str) and len(doc["token"]) >= 20:
        PLANTED.add(doc["token"])
        SEEN_SECRETS.add(doc["token"])
    return doc


def plant(path: Path, data: bytes | str | dict) -> bytes:
    """Write `data` at `path` (creating cache/ 0700), return the bytes written."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    raw = json.dumps(data).encode() if isinstance(data, dict) else data.encode() if isinstance(data, str) else data
    path.write_bytes(raw)
    path.chmod(0o600)
    return raw


def cache_token(job: Job, **override) -> str:
    """Plant a valid token cache (`cache_doc`) at job.token_file, as a previous run left it; its token."""
    doc = cache_doc(job.api, **override)
    plant(job.token_file, doc)
    return doc["token"]


def temp_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.tmp")) if folder.is_dir() else []


def cached(job: Job) -> dict | None:
    """token.json parsed and whole (a regular 0600 file, never partial, never a symlink), or None when absent."""
    if not os.path.lexists(job.token_file):
        return None
    st = os.lstat(job.token_file)
    assert stat.S_ISREG(st.st_mode), "token.json must be a regular file, not a symlink"
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    doc = json.loads(job.token_file.read_text())
    assert set(doc) == TOKEN_KEYS, doc.keys()
    return doc


def assert_valid_token_file(job: Job, api: StandIn, clock_offset: float = 0) -> dict:
    """token.json holds a fresh token the stand-in issued, for this API and user; no temp file is left.

    `clock_offset`: the run's ERA_TEST_TIME_OFFSET; expiry is on the run's (shifted) clock.
    """
    doc = cached(job)
    assert doc is not None, "token.json is missing"
    assert doc["token"] in api.issued_tokens
    assert doc["username"] == USERNAME and doc["api_base_url"] == api.base_url
    assert isinstance(doc["expires_at"], int) and doc["expires_at"] > time.time() + clock_offset
    assert temp_files(job.cache) == []
    return doc


# --- one network/HTTP/payload run -------------------------------------------------------------------

def check_run(r: Result, job: Job, code: int, message: str | None = None, *, logins: int | None = None,
              notifies: int | None = None, processed: int | None = None, tokens: tuple[str, ...] = (),
              old_token: str | None = None, warning: str | None = None) -> None:
    """The run's exit code and one ERROR line, the stand-in's counts, the cache, the secrets.

    `tokens`: tokens the test handed out itself (secrets, and allowed in token.json); `old_token`: the one
    planted before the run. Also checked in last_run.json: the exit code, and no secret.
    """
    api = job.api
    assert r.code == code, f"exit {r.code}, expected {code}\nstderr: {r.err}\nlog: {r.log}"
    record = json.loads(job.last_run.read_text()) if job.last_run.exists() else None
    if record is not None:
        assert record["exit_code"] == code
    assert_clean(r, api, *tokens, old_token, also=json.dumps(record) if record is not None else "")

    lines = err_lines(r)
    assert all(line.startswith("notify_once: ") for line in lines), r.err  # nothing raw from a library
    assert "Retrying (" not in r.err, r.err  # urllib3's retry chatter belongs in the log file only
    errors = [line for line in lines if line.startswith(("notify_once: ERROR: ", "notify_once: CRITICAL: "))]
    if code == 0:
        assert not errors, r.err
    else:
        assert len(errors) == 1, r.err
        assert f"(exit {code})" in errors[0]
    if message is not None:
        where = errors[0] if errors else r.err
        assert re.search(message, where, re.I | re.S), f"{message!r} not in {where!r}"
    if warning is not None:
        assert any(": WARNING: " in line and re.search(warning, line, re.I) for line in lines), r.err

    if logins is not None:
        assert api.count("login") == logins, [x.route for x in api.requests]
    if notifies is not None:
        assert api.count("notify") == notifies, [x.route for x in api.requests]
    if processed is not None:
        assert api.notify_processed == processed
    assert api.notify_processed <= 1  # never a duplicate push

    doc = cached(job)
    if doc is not None:
        allowed = {old_token, *api.issued_tokens, *tokens} - {None}
        assert doc["token"] in allowed, "token.json holds a token nobody issued"
    assert temp_files(job.cache) == []  # no partial temp file left
