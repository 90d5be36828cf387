"""Fault matrix (issue 3): the token cache and the run lock, through the real script.

Every case checks the exit code, what the stand-in saw (no duplicate notify), what token.json is
afterwards (the old one or a new valid one, never partial, never written through a symlink), one
clear stderr line where something is wrong, and no traceback or secret anywhere.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import finish, wait_for
from faults import (assert_clean, assert_valid_token_file, cache_doc, err_lines, one_line, plant,
                    pushes_succeed)  # noqa: F401 (an autouse fixture: every push succeeds)
from standin import hold

pytestmark = pytest.mark.timeout(60)


def sent_once(api, logins: int) -> None:
    assert api.count("login") == logins
    assert api.count("notify") == 1 and api.notify_processed == 1


# --- token cache: unusable or stale caches are ignored, a fresh login replaces them ---------------

def _now() -> int:
    return int(time.time())


# (id, what token.json holds (None: no file), "warning" = unreadable, "info" = readable but stale)
STALE_CACHES = [
    ("missing", None, "info"),
    ("empty", lambda api: b"", "warning"),
    ("truncated", lambda api: json.dumps(cache_doc(api)).encode()[:45], "warning"),
    ("binary", lambda api: bytes(range(256)) * 4, "warning"),
    ("not_utf8_json", lambda api: b'{"token": "\xff\xfe"}', "warning"),
    ("json_array", lambda api: b"[1, 2, 3]", "warning"),
    ("json_null", lambda api: b"null", "warning"),
    ("key_missing", lambda api: {k: v for k, v in cache_doc(api).items() if k != "expires_at"}, "warning"),
    ("token_not_string", lambda api: cache_doc(api, token=12345), "warning"),
    ("token_empty", lambda api: cache_doc(api, token=""), "warning"),
    ("expiry_as_string", lambda api: cache_doc(api, expires_at=str(_now() + 1500)), "warning"),
    ("expiry_as_float", lambda api: cache_doc(api, expires_at=_now() + 1500.5), "warning"),
    ("expiry_as_bool", lambda api: cache_doc(api, expires_at=True), "warning"),
    ("expiry_nan", lambda api: json.dumps(cache_doc(api)).replace(
        f'"expires_at": {cache_doc(api)["expires_at"]}', '"expires_at": NaN').encode(), "warning"),
    ("token_with_newline", lambda api: cache_doc(api, token=api.make_token() + "\r\nX-Injected: 1"), "warning"),
    ("token_not_latin1", lambda api: cache_doc(api, token="t\u00f6k\u2713n"), "warning"),
    ("token_with_space", lambda api: cache_doc(api, token="two words"), "warning"),
    ("username_not_string", lambda api: cache_doc(api, username=None), "warning"),
    ("oversized", lambda api: b'{"pad": "' + b"x" * 70_000 + b'"}', "warning"),
    ("other_user", lambda api: cache_doc(api, username="someone_else"), "info"),
    ("other_url", lambda api: cache_doc(api, api_base_url="http://127.0.0.1:9/v1"), "info"),
    ("expired", lambda api: cache_doc(api, expires_at=_now() - 60), "info"),
    ("inside_refresh_margin", lambda api: cache_doc(api, expires_at=_now() + 30), "info"),
]


@pytest.mark.parametrize("holds, level", [c[1:] for c in STALE_CACHES], ids=[c[0] for c in STALE_CACHES])
def test_unusable_cache_means_one_fresh_login(job, api, holds, level):
    # The planted tokens are ones the stand-in accepts: using one would send with no login.
    if holds is not None:
        plant(job.token_file, holds(api))
    r = job.run("--force")
    assert r.code == 0, r.all
    sent_once(api, logins=1)
    assert_valid_token_file(job, api)
    if level == "warning":
        one_line(r, "WARNING", "token cache", str(job.token_file), "logging in")
        assert "WARNING" in r.log and "ignoring it and logging in" in r.log
    else:
        assert r.err == ""
        assert "INFO" in r.log and "logging in" in r.log
    assert_clean(r, api)


def test_fresh_cache_is_used_without_login(job, api):
    old = plant(job.token_file, cache_doc(api))
    r = job.run("--force")
    assert r.code == 0 and r.err == "", r.all
    sent_once(api, logins=0)
    assert job.token_file.read_bytes() == old
    assert "using cached token" in r.log
    assert_clean(r, api)


# --- where the cache cannot be: exit 73 before any HTTP -------------------------------------------

def _cache_is_file(job):
    job.cache.write_text("not a folder\n")
    return job.cache


def _cache_under_file(job):
    (job.dir / "blocker").write_text("a regular file\n")
    job.write_config(scheduler={"cache_dir": "blocker/cache"})
    return job.dir / "blocker" / "cache"


def _cache_on_proc(job):
    job.write_config(scheduler={"cache_dir": "/proc/self/fdinfo"})  # exists, a folder, nobody creates files
    return Path("/proc/self/fdinfo")


@pytest.mark.parametrize("setup", [_cache_is_file, _cache_under_file, _cache_on_proc],
                         ids=["cache_is_a_file", "cache_dir_under_a_file", "cache_dir_on_proc"])
def test_cache_folder_impossible_exits_73_without_http(job, api, setup):
    where = setup(job)
    r = job.run("--force")
    assert r.code == 73, r.all
    assert api.requests == []
    one_line(r, "ERROR", "cannot create", str(where))
    assert "cannot create" in r.log
    assert_clean(r, api)


@pytest.fixture
def immutable(tmp_path):
    """chattr +i on a folder: even root cannot create files in it. Skips where chattr is unsupported."""
    marked: list[Path] = []

    def make(folder: Path) -> None:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if shutil.which("chattr") is None:
            pytest.skip("chattr is not installed")
        done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
        if done.returncode != 0:
            pytest.skip("chattr +i is not supported here")
        marked.append(folder)

    yield make
    for folder in marked:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_unwritable_cache_folder_without_lock_exits_73(job, api, immutable):
    immutable(job.cache)
    r = job.run("--force")
    assert r.code == 73, r.all
    assert api.requests == []
    one_line(r, "ERROR", "cannot create lock", str(job.cache))
    assert_clean(r, api)


def test_unwritable_cache_folder_with_lock_sends_once_and_keeps_old_token(job, api, immutable):
    """The lock file exists (an earlier run made it), but nothing new can be written beside it."""
    old = plant(job.token_file, cache_doc(api, expires_at=_now() - 60))
    (job.cache / "notify_once.lock").touch(mode=0o600)
    immutable(job.cache)
    r = job.run("--force")
    assert r.code == 0, r.all
    sent_once(api, logins=1)
    assert job.token_file.read_bytes() == old  # the old one, untouched
    assert "cannot write token cache" in r.err and "the next run logs in again" in r.err
    assert len(err_lines(r)) <= 2  # the token cache, and the run record
    assert_clean(r, api)


def test_token_file_is_a_directory(job, api):
    (job.token_file / "inside").mkdir(parents=True)
    r = job.run("--force")
    assert r.code == 0, r.all
    sent_once(api, logins=1)
    assert job.token_file.is_dir()
    assert "ignoring it and logging in" in r.err and "cannot write token cache" in r.err
    assert len(err_lines(r)) == 2
    assert_clean(r, api)


# --- token.json as a symlink: never read through, never written through ---------------------------

def _link_to_file(job, api):
    target = job.dir / "precious.txt"
    target.write_text("someone else's file\n")
    return target


def _link_to_valid_cache(job, api):
    target = job.dir / "planted_token.json"  # a fresh, valid cache: reading it would skip the login
    target.write_text(json.dumps(cache_doc(api)))
    return target


def _link_dangling(job, api):
    return job.dir / "created_through_link"


@pytest.mark.parametrize("target_of", [_link_to_file, _link_to_valid_cache, _link_dangling],
                         ids=["to_another_file", "to_a_valid_cache", "dangling"])
def test_symlinked_token_file_is_replaced_not_followed(job, api, target_of):
    target = target_of(job, api)
    before = target.read_bytes() if target.exists() else None
    job.cache.mkdir(mode=0o700)
    job.token_file.symlink_to(target)
    r = job.run("--force")
    assert r.code == 0, r.all
    sent_once(api, logins=1)  # the link was not read
    assert (target.read_bytes() if target.exists() else None) == before  # nor written through
    assert_valid_token_file(job, api)  # a regular file now
    one_line(r, "WARNING", "is a symlink", str(job.token_file))
    assert_clean(r, api)


# --- the lock --------------------------------------------------------------------------------------

HOLDER = """
import sys, filelock
lock = filelock.FileLock(sys.argv[1], blocking=False)
lock.acquire()
print("held", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def lock_holder(job):
    """Hold cache/notify_once.lock from another live process, the way a running notify_once does."""
    procs = []

    def hold_lock() -> None:
        job.cache.mkdir(mode=0o700, exist_ok=True)
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(job.cache / "notify_once.lock")],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held"

    yield hold_lock
    for proc in procs:
        proc.stdin.close()
        proc.wait(5)


def _flock_in_test(job):
    job.cache.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(job.cache / "notify_once.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


@pytest.mark.parametrize("holder", ["child_process", "flock_here"])
@pytest.mark.parametrize("args, env", [(("--force",), {}), ((), "business")], ids=["forced", "scheduled"])
def test_lock_held_by_live_process_exits_75_without_http(job, api, lock_holder, holder, args, env):
    from conftest import BUSINESS_TIME

    old = plant(job.token_file, cache_doc(api))
    fd = None
    if holder == "child_process":
        lock_holder()
    else:
        fd = _flock_in_test(job)
    try:
        r = job.run(*args, env={"ERA_TEST_NOW": str(BUSINESS_TIME)} if env == "business" else {})
    finally:
        if fd is not None:
            os.close(fd)
    assert r.code == 75, r.all
    assert api.requests == []
    one_line(r, "WARNING", "another run holds", str(job.cache / "notify_once.lock"))
    assert "another run holds" in r.log
    assert job.token_file.read_bytes() == old and not job.last_run.exists()
    assert_clean(r, api)


def test_lock_file_left_by_killed_run_does_not_block(job, api):
    release = threading.Event()
    api.inject("login", hold(release))
    proc = job.popen("--force")
    try:
        assert wait_for(lambda: api.count("login") == 1), "the first run never reached login"
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
    finally:
        release.set()
    assert (job.cache / "notify_once.lock").exists()
    r = job.run("--force")
    assert r.code == 0 and r.err == "", r.all
    assert api.count("login") == 2 and api.count("notify") == 1 and api.notify_processed == 1
    assert_valid_token_file(job, api)
    assert_clean(r, api)


def test_twenty_runs_at_once_send_exactly_once(job, api):
    """The stand-in holds the winner's login until the 19 others have exited, so they race on 2 cores."""
    release = threading.Event()
    api.inject("login", hold(release))
    procs = [job.popen("--force") for _ in range(20)]
    try:
        assert wait_for(lambda: api.count("login") == 1, timeout=30), "no run reached login"
        assert wait_for(lambda: sum(p.poll() is not None for p in procs) == 19, timeout=30), \
            [p.poll() for p in procs]
    finally:
        release.set()
    results = [finish(p, job) for p in procs]
    codes = sorted(r.code for r in results)
    assert codes == [0] + [75] * 19, codes
    assert api.count("login") == 1 and api.count("notify") == 1 and api.notify_processed == 1
    for r in results:
        if r.code == 75:
            one_line(r, "another run holds")
        else:
            assert r.err == "", r.err
        assert_clean(r, api)
    assert_valid_token_file(job, api)
