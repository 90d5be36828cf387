"""Fault matrix, network kinds and cold start (issue 3): the real script against the stand-in, loopback only.

Each row drives notify_once.py once and checks, through `faults.check_run`: the exit code and its one
error line, no traceback, how many logins/notifies the stand-in saw and processed (never a duplicate
push), the token cache old or new, and no secret anywhere.

The retry policy under test (era_beacon_notify/api.py): login and the warm-up GET are retried (2 retries)
on any connection error, timeout, 429, 502, 503, 504; notify only when the server certainly did not act
on it (the connect failed, 429, 503). urllib3 backs off 0 s, then 2 s. Rows marked FAST shrink that
sleep tenfold (tests/inject/sitecustomize.py): they count retries, they do not time them.
"""

from __future__ import annotations

import socket
import time

import pytest

from faults import FAST, cache_token, cached, check_run, closed_port, seen
from standin import big, close, delay, hang, normal, raw, reset, status, trickle

pytestmark = pytest.mark.timeout(30)
FORCE = "--force"


# --- connection refused, dropped, reset, hung, trickled ------------------------------------------
# (scheduler overrides, start with a cached valid token, {route: faults}, exit code, error line,
#  logins seen, notifies seen, notifies processed, retries logged by urllib3, (min s, max s), env)
CLOSED = "closed-port"
NETWORK = [
    pytest.param({"api_base_url": CLOSED}, False, {}, 69, r"login: cannot reach the API: .*refused",
                 0, 0, 0, 2, (0, 3), FAST, id="refused-login-retried-twice"),
    pytest.param({"api_base_url": CLOSED}, True, {}, 69, r"notify: cannot connect .*refused.*nothing was sent",
                 0, 0, 0, 2, (0, 3), FAST, id="refused-notify-with-cached-token-retried-nothing-sent"),
    # notify reads until max_run_seconds, not read_timeout_seconds: the server may take ~30 s per employee
    pytest.param({"read_timeout_seconds": "1", "max_run_seconds": "3"}, False, {"notify": [hang()]}, 69,
                 r"max_run_seconds \(3s\) reached while waiting for the notify answer: outcome unknown, not resent",
                 1, 1, 0, 0, (2.9, 5), {}, id="hang-on-notify-waits-until-the-deadline-not-resent"),
    pytest.param({"read_timeout_seconds": "1"}, False, {"login": [hang(), normal()]}, 0, None,
                 2, 1, 1, 1, (0.9, 4), {}, id="hang-on-login-read-timeout-retried-then-ok"),
    pytest.param({"max_run_seconds": "3", "read_timeout_seconds": "10"}, False, {"notify": [trickle(0.5)]}, 69,
                 r"max_run_seconds \(3s\) reached while waiting for the notify answer: outcome unknown, not resent",
                 1, 1, 0, 0, (2.9, 4.5), {}, id="trickle-notify-past-max-run-seconds"),
    pytest.param({"max_run_seconds": "2", "read_timeout_seconds": "10"}, False, {"login": [trickle(0.5)]}, 69,
                 r"max_run_seconds \(2s\) reached during login; nothing was sent",
                 1, 0, 0, 0, (1.9, 3.5), {}, id="trickle-login-past-max-run-seconds"),
    pytest.param({}, False, {"notify": [reset()]}, 69, r"notify: .*reset.*after the request was sent: "
                 r"outcome unknown, not resent", 1, 1, 0, 0, (0, 3), {}, id="reset-after-notify-sent-not-resent"),
    pytest.param({}, False, {"notify": [close()]}, 69, r"notify: .*after the request was sent: outcome unknown, "
                 r"not resent", 1, 1, 0, 0, (0, 3), {}, id="close-after-notify-sent-not-resent"),
    pytest.param({}, False, {"notify": [raw(b"SMTP ready\r\n\r\n")]}, 69, r"notify: .*outcome unknown, not resent",
                 1, 1, 0, 0, (0, 3), {}, id="garbage-status-line-on-notify-not-resent"),
    pytest.param({}, False, {"notify": [raw(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                            b"Content-Length: 500\r\n\r\n{\"success\": tr")]}, 69,
                 r"notify: .*after the request was sent: outcome unknown, not resent",
                 1, 1, 0, 0, (0, 3), {}, id="answer-cut-mid-body-on-notify-not-resent"),
    pytest.param({}, False, {"login": [reset(), close(), normal()]}, 0, None,
                 3, 1, 1, 2, (0, 3), FAST, id="reset-then-close-on-login-retried-then-ok"),
    pytest.param({}, False, {"login": [reset(), reset(), reset()]}, 69, r"login: cannot reach the API: .*reset",
                 3, 0, 0, 2, (0, 3), FAST, id="reset-on-login-three-times-gives-up"),
]


@pytest.mark.parametrize("overrides,use_cache,faults,code,message,logins,notifies,processed,retries,bounds,env",
                         NETWORK)
def test_network_faults(job, api, overrides, use_cache, faults, code, message, logins, notifies, processed,
                        retries, bounds, env):
    if overrides.get("api_base_url") == CLOSED:
        overrides = {**overrides, "api_base_url": f"http://127.0.0.1:{closed_port()}/v1"}
    job.write_config(scheduler=overrides)
    old = cache_token(job, api_base_url=overrides.get("api_base_url", api.base_url)) if use_cache else None
    for route, queue in faults.items():
        api.inject(route, *queue)

    r = job.run(FORCE, env=env)

    check_run(r, job, code, message, logins=logins, notifies=notifies, processed=processed, old_token=old)
    assert r.log.count("Retrying (") == retries, r.log  # urllib3 logs each retry to the log file
    low, high = bounds
    assert low <= r.seconds <= high, f"run took {r.seconds:.1f}s, expected {low}..{high}"
    if use_cache:
        assert cached(job)["token"] == old  # a network failure keeps the cached token for the next run


# --- connect timeout --------------------------------------------------------------------------------

@pytest.fixture
def full_backlog():
    """A loopback port whose accept queue is full: the kernel drops new SYNs, so connect() times out.

    listen(0) and never accept(); fill the queue with connections until one times out. Skips where
    the kernel answers anyway (then a real connect timeout is not possible on loopback).
    """
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):
            probe = socket.socket()
            probe.settimeout(0.3)
            try:
                probe.connect(("127.0.0.1", port))
            except (TimeoutError, socket.timeout):
                probe.close()
                break
            fillers.append(probe)
        else:
            pytest.skip("this kernel accepts beyond the backlog: no connect timeout on loopback")
        yield port
    finally:
        for s in fillers:
            s.close()
        server.close()


def test_connect_timeout_on_notify_is_retried_and_nothing_sent(job, api, full_backlog):
    """A connect timeout happens before a byte is sent, so even notify may retry it (2 retries)."""
    url = f"http://127.0.0.1:{full_backlog}/v1"
    job.write_config(scheduler={"api_base_url": url, "connect_timeout_seconds": "1"})
    old = cache_token(job, api_base_url=url)

    r = job.run(FORCE, env=FAST)

    check_run(r, job, 69, r"notify: cannot connect to the API \(ConnectTimeoutError.*\); nothing was sent",
              logins=0, notifies=0, old_token=old)
    assert r.log.count("Retrying (") == 2
    assert 2.9 <= r.seconds < 6  # 3 connects of 1 s each (backoff shrunk by FAST)
    assert cached(job)["token"] == old


# --- cold start: warmup_url ---------------------------------------------------------------------------
# (warm-up URL, health faults, start with a cached token, what the stand-in saw in order, a warning
#  expected on stderr, (min s, max s), env). Every row ends with exit 0 and one notification.
COLD = [
    pytest.param("health", [delay(2)], False, ["GET health", "POST login", "POST notify"], None, (1.9, 4), {},
                 id="sleeping-host-wakes-on-get-before-login"),
    pytest.param("health", [delay(0.5)], True, ["GET health", "POST notify"], None, (0.4, 3), {},
                 id="sleeping-host-wakes-on-get-before-notify-cached-token"),
    pytest.param("health", [status(503, {"detail": "waking"})] * 3, False,
                 ["GET health"] * 3 + ["POST login", "POST notify"], r"warm-up GET .*/health: HTTP 503",
                 (0, 3), FAST, id="health-503-thrice-warns-still-sends"),
    pytest.param("health", [status(503, "waking", headers={"Retry-After": "1"}), normal()], False,
                 ["GET health"] * 2 + ["POST login", "POST notify"], None, (0, 3), FAST,
                 id="health-503-retry-after-then-ok"),
    pytest.param("health", [close(), reset(), normal()], False,
                 ["GET health"] * 3 + ["POST login", "POST notify"], None, (0, 3), FAST,
                 id="health-dropped-twice-then-ok"),
    pytest.param("health", [status(503, "asleep", headers={"Retry-After": "3600"})], False,
                 ["GET health", "POST login", "POST notify"], r"warm-up GET: HTTP 503 with Retry-After .*gave up",
                 (0, 3), {}, id="health-retry-after-past-deadline-warns-still-sends"),
    pytest.param("health", [big(40_000_000)], False, ["GET health", "POST login", "POST notify"],
                 r"warm-up GET: HTTP 200 answer is larger than 33554432 bytes; going on", (0, 3), {},
                 id="health-huge-answer-warns-still-sends"),
    pytest.param("v1-health", [], False, ["GET other", "POST login", "POST notify"],
                 r"warm-up GET .*/v1/health: HTTP 404", (0, 3), {}, id="wrong-warmup-url-404-warns-still-sends"),
    pytest.param("closed", [], False, ["POST login", "POST notify"],
                 r"warm-up GET .* failed \(NewConnectionError.*refused", (0, 3), FAST,
                 id="warmup-refused-warns-still-sends"),
]


@pytest.mark.parametrize("target,faults,use_cache,order,warning,bounds,env", COLD)
def test_cold_start_warmup(job, api, target, faults, use_cache, order, warning, bounds, env):
    url = {"health": api.url + "/health", "v1-health": api.base_url + "/health",
           "closed": f"http://127.0.0.1:{closed_port()}/health"}[target]
    job.write_config(scheduler={"warmup_url": url})
    old = cache_token(job) if use_cache else None
    api.inject("health", *faults)

    r = job.run(FORCE, env=env)

    check_run(r, job, 0, None, logins=0 if use_cache else 1, notifies=1, processed=1, old_token=old,
              warning=warning)
    assert seen(api) == order  # the GET (and its retries) strictly before any POST
    if warning is None:
        assert "warm-up" not in r.err
    low, high = bounds
    assert low <= r.seconds <= high, f"run took {r.seconds:.1f}s, expected {low}..{high}"


def test_cold_start_longer_than_max_run_seconds_sends_nothing(job, api):
    """A host still asleep at max_run_seconds: stop during the warm-up, before any POST."""
    job.write_config(scheduler={"warmup_url": api.url + "/health", "max_run_seconds": "2",
                                "read_timeout_seconds": "10"})
    api.inject("health", hang())

    started = time.monotonic()
    r = job.run(FORCE)

    check_run(r, job, 69, r"max_run_seconds \(2s\) reached during warm-up; nothing was sent",
              logins=0, notifies=0, processed=0)
    assert seen(api) == ["GET health"]
    assert time.monotonic() - started < 4
