"""Shared checks for the network/HTTP/payload fault-matrix tests (tests/test_faults_network.py, _http.py).

Every fault case ends with the same four promises (issue 3): the documented exit code and one clear
line, no traceback; no duplicate notification; the token cache old or new, never partial; no secret
in any output. `check_run` asserts all of them for one run.
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import time

from conftest import PASSWORD, SEEN_SECRETS, USERNAME, Job, Result

TOKEN_KEYS = {"token", "expires_at", "api_base_url", "username", "obtained_at"}
SUCCESS_BODY = {"success": True, "threshold_minutes": 30, "message": "Processed 1 employees", "total_employees": 1,
                "notifications_sent": 1, "notifications_failed": 0,
                "notifications_detail": [{"employee_id": "EMP-0001", "request_curl": "curl -d '{\"token\": "
                                          "\"devtok-canned-secret\"}'", "response_code": 200,
                                          "response_message": "{\"success\": true}"}]}
SEEN_SECRETS.add("devtok-canned-secret")


def closed_port(host: str = "127.0.0.1") -> int:
    """A loopback port nobody listens on (bound, then closed): connecting to it is refused."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def cache_token(job: Job, token: str, lifetime: int = 1800, url: str | None = None) -> dict:
    """Write a valid token cache for `token` (and the run's API URL), as a previous run would have left it."""
    now = int(time.time())
    doc = {"token": token, "expires_at": now + lifetime, "api_base_url": url or job.api.base_url,
           "username": USERNAME, "obtained_at": now}
    job.cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    job.token_file.write_text(json.dumps(doc))
    job.token_file.chmod(0o600)
    SEEN_SECRETS.add(token)
    return doc


def cached(job: Job) -> dict | None:
    """token.json parsed (it must parse: never partial), or None when absent."""
    if not job.token_file.exists():
        return None
    st = os.lstat(job.token_file)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    doc = json.loads(job.token_file.read_text())
    assert set(doc) == TOKEN_KEYS, doc.keys()
    return doc


def check_run(r: Result, job: Job, code: int, message: str | None = None, *, logins: int | None = None,
              notifies: int | None = None, processed: int | None = None, tokens: tuple[str, ...] = (),
              old_token: str | None = None, warning: str | None = None) -> None:
    """The run's exit code and one-line message, the stand-in's counts, the cache, the secrets."""
    api = job.api
    text = r.out + r.err + r.log
    assert r.code == code, f"exit {r.code}, expected {code}\nstderr: {r.err}\nlog: {r.log}"
    assert "Traceback" not in text, text

    lines = [line for line in r.err.splitlines() if line.strip()]
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
    assert not list(job.cache.glob(".*.tmp")) if job.cache.exists() else True  # no partial temp file left

    record = json.loads(job.last_run.read_text()) if job.last_run.exists() else None
    if record is not None:
        assert record["exit_code"] == code
        text += json.dumps(record)
    for secret in {PASSWORD, *api.issued_tokens, *api.device_tokens, *tokens, old_token} - {None, ""}:
        assert secret not in text, "a secret leaked into stdout, stderr, the log or last_run.json"
    SEEN_SECRETS.update(tokens)


def seen(api) -> list[str]:
    """What the stand-in saw, in order, e.g. ["GET health", "POST login", "POST notify"]."""
    return [f"{x.method} {x.route}" for x in api.requests]

