"""Fault matrix, HTTP statuses and payloads (issue 3): the real script against the stand-in, loopback only.

Each row drives notify_once.py once and checks, through `faults.check_run`: the exit code and its one
error line, no traceback, how many logins/notifies the stand-in saw and processed (never a duplicate
push), the token cache old or new, and no secret anywhere.

Notify is not idempotent: it is retried only after 429 and 503 (the server did not act), never after
500, 502, 504 or an answer it cannot read. Login is retried after 429, 502, 503, 504. A 401/403 on
notify means the server refused before acting: log in again and resend once.
"""

from __future__ import annotations

import base64
import json
import time
from email.utils import formatdate

import pytest

from conftest import SEEN_SECRETS
from faults import FAST, SUCCESS_BODY, assert_valid_token_file, cache_token, cached, check_run, seen
from standin import StandIn, big, fail_db, normal, status

pytestmark = pytest.mark.timeout(30)
FORCE = "--force"
# FAST shrinks retry sleeps tenfold where their length is not under test; the row "...-real-wait" times a
# real Retry-After, and the "past-deadline" rows show the dates and seconds are parsed.

PROXY_HTML = "<html><head><title>{code} Bad Gateway</title></head><body><center><h1>{code}</h1></center>" \
             "<hr><center>nginx</center></body></html>\n"
VALIDATION_422 = {"detail": [{"type": "missing", "loc": ["body", "threshold"], "msg": "Field required",
                              "input": {"password": "Era2025!"}},
                             {"type": "int_parsing", "loc": ["query", "x"], "msg": "Input should be a valid\ninteger",
                              "input": "y"}]}


def http_date(seconds_ahead: float) -> str:
    return formatdate(time.time() + seconds_ahead, usegmt=True)


def html(code: int):
    return status(code, PROXY_HTML.format(code=code), content_type="text/html")


# --- HTTP statuses ---------------------------------------------------------------------------------
# (overrides, start with a cached token, {route: [fault factories]}, exit code, error line,
#  logins, notifies, processed, (min s, max s), env). Factories run at test time (HTTP dates).
HTTP = [
    # 429 / 503 with Retry-After: notify may be retried, the server did not act
    pytest.param({}, False, {"notify": lambda: [status(429, {"detail": "Too Many Requests"},
                                                       headers={"Retry-After": "1"}), normal()]},
                 0, None, 1, 2, 1, (0.9, 4), {}, id="notify-429-retry-after-seconds-then-ok-real-wait"),
    pytest.param({}, False, {"notify": lambda: [status(503, "Service Unavailable", headers={"Retry-After": "1"}),
                                                normal()]},
                 0, None, 1, 2, 1, (0, 3), FAST, id="notify-503-retry-after-seconds-then-ok"),
    pytest.param({}, False, {"notify": lambda: [status(429, {"detail": "slow down"},
                                                       headers={"Retry-After": http_date(1)}), normal()]},
                 0, None, 1, 2, 1, (0, 3), FAST, id="notify-429-retry-after-http-date-then-ok"),
    pytest.param({}, False, {"notify": lambda: [status(503, "down", headers={"Retry-After": http_date(1)}),
                                                normal()]},
                 0, None, 1, 2, 1, (0, 3), FAST, id="notify-503-retry-after-http-date-then-ok"),
    pytest.param({}, False, {"login": lambda: [status(429, {"detail": "slow"}, headers={"Retry-After": "1"}),
                                               normal()]},
                 0, None, 2, 1, 1, (0, 3), FAST, id="login-429-retry-after-then-ok"),
    pytest.param({}, False, {"notify": lambda: [status(503, "down", headers={"Retry-After": "soon"}), normal()]},
                 0, None, 1, 2, 1, (0, 3), {}, id="notify-503-unparseable-retry-after-backs-off-then-ok"),
    pytest.param({"max_run_seconds": "10"}, False,
                 {"notify": lambda: [status(503, "down", headers={"Retry-After": "120"})]},
                 69, r"notify: HTTP 503 with Retry-After 10s or more would pass max_run_seconds .*nothing was sent",
                 1, 1, 0, (0, 3), {}, id="notify-503-retry-after-past-deadline-stops-at-once"),
    pytest.param({}, False, {"notify": lambda: [status(429, {"detail": "x"},
                                                       headers={"Retry-After": http_date(3600)})]},
                 69, r"notify: HTTP 429 with Retry-After 30s or more would pass max_run_seconds .*nothing was sent",
                 1, 1, 0, (0, 3), {}, id="notify-429-http-date-past-deadline-stops-at-once"),
    pytest.param({}, False, {"login": lambda: [status(503, "down", headers={"Retry-After": "3600"})]},
                 69, r"login: HTTP 503 with Retry-After 30s or more would pass max_run_seconds",
                 1, 0, 0, (0, 3), {}, id="login-503-retry-after-past-deadline-stops-at-once"),
    pytest.param({}, False, {"notify": lambda: [status(503, {"detail": "maintenance"})] * 3},
                 69, r"notify: server failed with HTTP 503 maintenance", 1, 3, 0, (0, 3), FAST,
                 id="notify-503-thrice-gives-up"),
    # 500: the server may have pushed part of the list: never resend
    pytest.param({}, False, {"notify": lambda: [fail_db()]},
                 69, r"notify: server failed with HTTP 500 Error processing absence notifications: "
                     r"\(psycopg2.OperationalError\)", 1, 1, 0, (0, 3), {}, id="notify-500-json-detail-not-resent"),
    pytest.param({}, False, {"login": lambda: [fail_db()]},
                 69, r"login: server failed with HTTP 500 \(text/plain, 21 bytes\)", 1, 0, 0, (0, 3), {},
                 id="login-500-text-plain"),
    # 502 / 504 HTML pages from a proxy: the request may have reached the app
    pytest.param({}, False, {"notify": lambda: [html(502)]},
                 69, r"notify: server failed with HTTP 502 \(text/html, \d+ bytes\)", 1, 1, 0, (0, 3), {},
                 id="notify-502-html-not-resent"),
    pytest.param({}, False, {"notify": lambda: [html(504)]},
                 69, r"notify: server failed with HTTP 504 \(text/html", 1, 1, 0, (0, 3), {},
                 id="notify-504-html-not-resent"),
    pytest.param({}, False, {"login": lambda: [html(502), normal()]}, 0, None, 2, 1, 1, (0, 3), {},
                 id="login-502-html-retried-then-ok"),
    pytest.param({}, False, {"login": lambda: [html(504), html(502), normal()]}, 0, None, 3, 1, 1, (0, 3), FAST,
                 id="login-504-then-502-retried-then-ok"),
    # answers the contract does not allow: 76, detail summarized on one line
    pytest.param({"api_base_url": "no-v1"}, False, {}, 76, r"login: unexpected HTTP 404 Not Found.*api_base_url",
                 0, 0, 0, (0, 3), {}, id="404-wrong-base-url-without-v1"),
    pytest.param({}, True, {"notify": lambda: [status(404, {"detail": "Not Found"})]},
                 76, r"notify: unexpected HTTP 404 Not Found", 0, 1, 0, (0, 3), {}, id="notify-404"),
    pytest.param({}, False, {"notify": lambda: [status(405, {"detail": "Method Not Allowed"},
                                                       headers={"Allow": "GET"})]},
                 76, r"notify: unexpected HTTP 405 Method Not Allowed", 1, 1, 0, (0, 3), {}, id="notify-405"),
    pytest.param({}, False, {"notify": lambda: [status(422, VALIDATION_422)]},
                 76, r"notify: unexpected HTTP 422 body\.threshold: Field required; query\.x: Input should be "
                     r"a valid integer \(exit 76\)$", 1, 1, 0, (0, 3), {}, id="notify-422-fastapi-detail-list"),
    pytest.param({}, False, {"login": lambda: [status(422, {"detail": [{"loc": None, "msg": "odd"}, "plain"]})]},
                 76, r"login: unexpected HTTP 422 odd; plain", 1, 0, 0, (0, 3), {}, id="login-422-odd-detail-list"),
    # credentials and tokens refused: 77
    pytest.param({"auth_password": "wrong-Era2025"}, False, {}, 77,
                 r"login: HTTP 401 Invalid username or password", 1, 0, 0, (0, 3), {}, id="login-401-wrong-password"),
    pytest.param({}, False, {"notify": lambda: [status(401, {"detail": "Could not validate credentials"},
                                                       headers={"WWW-Authenticate": "Bearer"})] * 2},
                 77, r"notify: HTTP 401 Could not validate credentials", 2, 2, 0, (0, 3), {},
                 id="notify-401-relogin-401-again"),
    pytest.param({}, False, {"notify": lambda: [status(403, {"detail": "Not authenticated"})] * 2},
                 77, r"notify: HTTP 403 Not authenticated", 2, 2, 0, (0, 3), {}, id="notify-403-relogin-403-again"),
    pytest.param({}, True, {"notify": lambda: [status(401, {"detail": "Could not validate credentials"})]},
                 0, None, 1, 2, 1, (0, 3), {}, id="cached-token-refused-relogin-then-ok"),
]


@pytest.mark.parametrize("overrides,use_cache,faults,code,message,logins,notifies,processed,bounds,env", HTTP)
def test_http_statuses(job, api, overrides, use_cache, faults, code, message, logins, notifies, processed,
                       bounds, env):
    if overrides.get("api_base_url") == "no-v1":
        overrides = {**overrides, "api_base_url": api.url}
    if "auth_password" in overrides:
        SEEN_SECRETS.add(overrides["auth_password"])
    job.write_config(scheduler=overrides)
    old = cache_token(job) if use_cache else None
    for route, make in faults.items():
        api.inject(route, *make())

    r = job.run(FORCE, env=env)

    check_run(r, job, code, message, logins=logins, notifies=notifies, processed=processed, old_token=old)
    low, high = bounds
    assert low <= r.seconds <= high, f"run took {r.seconds:.1f}s, expected {low}..{high}"
    if "auth_password" in overrides:
        assert overrides["auth_password"] not in r.out + r.err + r.log
    if overrides.get("api_base_url") == api.url:  # without /v1: the only request went to the wrong path
        assert seen(api) == ["POST other"] and api.requests[0].path == "/auth/login"
    if code == 77:
        assert not job.token_file.exists()  # a refused token is not kept
    elif use_cache and code == 0 and logins:
        assert assert_valid_token_file(job, api)["token"] == api.issued_tokens[-1]  # the refused one replaced
    elif use_cache:
        assert cached(job)["token"] == old


# --- redirects: never followed, credentials never sent elsewhere -----------------------------------

@pytest.fixture
def other_host():
    """A second stand-in on another loopback address, standing for any other host."""
    with StandIn(host="127.0.0.2") as server:
        yield server


@pytest.mark.parametrize("route,code,use_cache", [
    pytest.param("login", 307, False, id="login-307"),
    pytest.param("notify", 307, True, id="notify-307-cached-token"),
    pytest.param("notify", 308, False, id="notify-308-after-login"),
])
def test_redirect_to_other_host_not_followed(job, api, other_host, route, code, use_cache):
    path = "/auth/login" if route == "login" else "/notifications/notify-absence"
    location = other_host.base_url + path
    old = cache_token(job) if use_cache else None
    api.inject(route, status(code, headers={"Location": location}))

    r = job.run(FORCE)

    check_run(r, job, 76, rf"{route}: HTTP {code} redirect to '{location}' not followed: check api_base_url",
              notifies=int(route == "notify"), processed=0, old_token=old)
    assert other_host.requests == []  # no password, no bearer token went to the other host
    assert api.count(route) == 1


# --- payloads: login answers ---------------------------------------------------------------------
# (login answer fault, error line); every row: exit 76, one login, no notify, no token cached.
LOGIN_PAYLOADS = [
    pytest.param(lambda api: status(200, "OK"), r"login: HTTP 200 answer is not JSON \(text/plain, 2 bytes\)",
                 id="not-json"),
    pytest.param(lambda api: status(200, "<html><body>Welcome</body></html>", content_type="text/html"),
                 r"login: HTTP 200 answer is not JSON \(text/html", id="html-200"),
    pytest.param(lambda api: status(200, [api.make_token()]), r"login: login answer is a JSON list, not an object",
                 id="json-array"),
    pytest.param(lambda api: status(200, {"detail": "ok"}), r"login: login answer has no token", id="missing-token"),
    pytest.param(lambda api: status(200, {"token": 12345}), r"login: login answer has no token", id="token-number"),
    pytest.param(lambda api: status(200, {"token": "  "}), r"login: login answer has no token", id="token-blank"),
    pytest.param(lambda api: status(200, {"token": "eyJabc def"}), r"login: .*token is not a valid bearer token",
                 id="token-with-space"),
    pytest.param(lambda api: status(200, {"token": "t\u00f6k\u20acn"}), r"login: .*token is not a valid bearer token",
                 id="token-non-ascii"),
    pytest.param(lambda api: big(10_000_000), r"login: login answer has no token", id="10-MB-body"),
    pytest.param(lambda api: big(40_000_000), r"login: HTTP 200 answer is larger than 33554432 bytes",
                 id="40-MB-body-over-the-cap"),
    pytest.param(lambda api: status(200, "[" * 200_000 + "]" * 200_000, content_type="application/json"),
                 r"login: HTTP 200 answer is not JSON", id="json-nested-200000-deep"),
    pytest.param(lambda api: status(200, '{"token": "eyJhbGciOi', content_type="application/json"),
                 r"login: HTTP 200 answer is not JSON", id="truncated-json"),
]


@pytest.mark.parametrize("answer,message", LOGIN_PAYLOADS)
def test_login_payloads(job, api, answer, message):
    api.inject("login", answer(api))
    r = job.run(FORCE)
    check_run(r, job, 76, message, logins=1, notifies=0, processed=0)
    assert not job.token_file.exists()


# --- payloads: notify answers ---------------------------------------------------------------------
# (notify answer fault, exit code, error line); every row: one notify seen, never resent.
NOTIFY_PAYLOADS = [
    pytest.param(status(200, "Processed 2 employees"), 76, r"notify: HTTP 200 answer is not JSON", id="not-json"),
    pytest.param(status(200, "<html>ok</html>", content_type="text/html"), 76,
                 r"notify: HTTP 200 answer is not JSON \(text/html", id="html-200"),
    pytest.param(status(200, [SUCCESS_BODY]), 76, r"notify: answer is a JSON list, not an object", id="json-array"),
    pytest.param(big(10_000_000), 76, r"notify: answer lacks success=true or the counts", id="10-MB-body"),
    pytest.param(big(40_000_000), 76, r"notify: HTTP 200 answer is larger than 33554432 bytes", id="40-MB-body"),
    pytest.param(status(204), 76, r"notify: HTTP 204 answer is not JSON", id="204-empty"),
    pytest.param(status(200, {"success": True, "message": "Processed 2 employees"}), 76,
                 r"notify: answer lacks success=true or the counts", id="missing-counts"),
    pytest.param(status(200, {**SUCCESS_BODY, "notifications_sent": "1"}), 76,
                 r"notify: answer lacks success=true or the counts", id="count-as-string"),
    pytest.param(status(200, {**SUCCESS_BODY, "success": "true"}), 76,
                 r"notify: answer lacks success=true or the counts", id="success-as-string"),
    pytest.param(status(200, {"success": False, "message": "Push service\nunavailable"}), 69,
                 r"notify: API answered success=false: Push service unavailable \(exit 69\)$", id="success-false"),
]


@pytest.mark.parametrize("answer,code,message", NOTIFY_PAYLOADS)
def test_notify_payloads(job, api, answer, code, message):
    api.inject("notify", answer)
    r = job.run(FORCE)
    check_run(r, job, code, message, logins=1, notifies=1, processed=0)
    assert assert_valid_token_file(job, api)["token"] == api.issued_tokens[0]  # the login was fine: kept
    record = json.loads(job.last_run.read_text())
    assert record["last_notify_at"] == record["finished_at"]  # a 2xx: the server acted, the guard must know
    if code == 76:
        assert "notifications went out; do not resend" in record["message"] or \
            "notifications may have gone out; do not resend" in record["message"]


# --- payloads: token expiry -------------------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(claims: bytes | dict, segments: int = 3) -> str:
    """An unsigned-looking token with this payload (the program never verifies signatures)."""
    payload = claims if isinstance(claims, bytes) else json.dumps(claims).encode()
    parts = [_b64(b'{"alg":"HS256","typ":"JWT"}'), _b64(payload), _b64(b"not-a-real-signature")]
    return ".".join(parts[:segments])


def exp_in(seconds: int) -> dict:
    return {"sub": "u", "exp": int(time.time()) + seconds}


# (login answer body as a function of the time, expected token.json expires_at - now, or None: not cached)
EXPIRY = [
    pytest.param(lambda: {"access_token": jwt(exp_in(1800)), "expires_in": "600"}, 600, id="expires_in-string"),
    pytest.param(lambda: {"access_token": jwt(exp_in(1800)), "expires_in": -5}, None, id="expires_in-negative"),
    pytest.param(lambda: {"access_token": jwt(exp_in(1800)), "expires_in": 0}, None, id="expires_in-zero"),
    pytest.param(lambda: {"access_token": jwt(exp_in(1800)), "expires_in": 10**12}, 1800,
                 id="expires_in-huge-jwt-exp-wins"),
    pytest.param(lambda: {"access_token": "opaque-token-abc123", "expires_in": 10**12}, 86400,
                 id="expires_in-huge-no-jwt-capped-24h"),
    pytest.param(lambda: {"access_token": jwt(exp_in(1800)), "expires_in": "soon"}, 1800,
                 id="expires_in-not-a-number-ignored"),
    pytest.param(lambda: {"token": jwt({"sub": "u"})}, 900, id="jwt-without-exp-default-15min"),
    pytest.param(lambda: {"token": jwt(b"\xff\x00 not json")}, 900, id="jwt-garbage-payload"),
    pytest.param(lambda: {"token": jwt({"exp": "tomorrow"})}, 900, id="jwt-exp-string"),
    pytest.param(lambda: {"token": jwt(exp_in(1800), segments=2)}, 900, id="jwt-two-segments"),
    pytest.param(lambda: {"token": jwt(exp_in(-100))}, None, id="jwt-already-expired-used-once"),
]


@pytest.mark.parametrize("body,lifetime", EXPIRY)
def test_token_expiry_payloads(job, api, body, lifetime):
    answer = body()
    token = answer.get("token") or answer["access_token"]
    SEEN_SECRETS.add(token)
    api.inject("login", status(200, answer))
    api.inject("notify", status(200, SUCCESS_BODY))  # the stand-in would refuse these hand-made tokens

    before = time.time()
    r = job.run(FORCE)

    check_run(r, job, 0, None, logins=1, notifies=1, tokens=(token,),
              warning=r"no lifetime left.*not caching" if lifetime is None else None)
    assert [x.headers.get("authorization") for x in api.requests if x.route == "notify"] == [f"Bearer {token}"]
    doc = cached(job)
    if lifetime is None:
        assert doc is None  # used once, never cached
    else:
        assert doc["token"] == token
        assert before + lifetime - 5 <= doc["expires_at"] <= time.time() + lifetime + 5


def test_access_token_shape_with_string_expires_in_end_to_end(job, api):
    """The older answer shape from the real stand-in: {"access_token", "expires_in": "600"}."""
    api.login_shape, api.token_lifetime = "access_token", "600"
    r = job.run(FORCE)
    check_run(r, job, 0, None, logins=1, notifies=1, processed=1)
    doc = assert_valid_token_file(job, api)
    assert doc["token"] == api.issued_tokens[0]
    assert abs(doc["expires_at"] - (time.time() + 600)) < 5
