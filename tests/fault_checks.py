"""Checks every fault-matrix case ends with (issue 3): used by tests/test_faults_*.py.

- `assert_clean`: no traceback and no secret (password, bearer tokens, device tokens) anywhere.
- `one_line`: exactly one non-empty stderr line, containing every given fragment.
- `assert_valid_token_file`: token.json is a regular 0600 file holding a token the stand-in issued.
- `cache_doc`: a well-formed token cache document, for planting old or foreign caches.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

from conftest import PASSWORD, SEEN_SECRETS, USERNAME, Job, Result
from standin import StandIn


PLANTED: set[str] = set()  # tokens the tests put into caches: secrets too


def secrets_of(api: StandIn, *extra: str) -> set[str]:
    found = {PASSWORD, *api.issued_tokens, *api.device_tokens, *PLANTED, *extra}
    SEEN_SECRETS.update(found)  # the suite-wide secret scan checks them too
    return {s for s in found if s}


def assert_clean(result: Result, api: StandIn, *extra_secrets: str) -> None:
    text = result.all
    assert "Traceback" not in text, text
    for secret in secrets_of(api, *extra_secrets):
        assert secret not in text, f"a secret leaked into the output: {secret[:6]}..."


def err_lines(result: Result) -> list[str]:
    return [line for line in result.err.splitlines() if line.strip()]


def one_line(result: Result, *fragments: str) -> str:
    lines = err_lines(result)
    assert len(lines) == 1, f"want exactly one stderr line, got {len(lines)}:\n{result.err}"
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def cache_doc(api: StandIn, **override) -> dict:
    """A token cache the program would accept; the token is one the stand-in would accept too."""
    now = int(time.time())
    doc = {"token": api.make_token(), "expires_at": now + 1500, "api_base_url": api.base_url,
           "username": USERNAME, "obtained_at": now - 300}
    doc.update(override)
    if isinstance(doc["token"], str) and len(doc["token"]) >= 20:
        PLANTED.add(doc["token"])
    return doc


def plant(path: Path, data: bytes | str | dict) -> bytes:
    """Write `data` at `path` (creating cache/ 0700), return the bytes written."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    raw = json.dumps(data).encode() if isinstance(data, dict) else data.encode() if isinstance(data, str) else data
    path.write_bytes(raw)
    path.chmod(0o600)
    return raw


def temp_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.tmp")) if folder.is_dir() else []


def assert_valid_token_file(job: Job, api: StandIn, clock_offset: float = 0) -> dict:
    """`clock_offset`: the run's ERA_TEST_TIME_OFFSET; expiry is on the run's (shifted) clock."""
    st = os.lstat(job.token_file)
    assert stat.S_ISREG(st.st_mode), "token.json must be a regular file, not a symlink"
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    doc = json.loads(job.token_file.read_text())
    assert doc["token"] in api.issued_tokens
    assert doc["username"] == USERNAME and doc["api_base_url"] == api.base_url
    assert isinstance(doc["expires_at"], int) and doc["expires_at"] > time.time() + clock_offset
    assert temp_files(job.cache) == []
    return doc
