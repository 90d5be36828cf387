"""API client: `requests` with urllib3's `Retry`, and a stricter policy for the non-idempotent notify.

Imported only by runs that talk to the API, so skipped and lock-busy runs never pay for `requests`.

Retry policy, per call (at most two retries each, waits bounded by the run's deadline):
- warm-up GET and login POST: connection errors, timeouts, 429, 502, 503, 504;
- notify POST: only when the server certainly did not act on it: a failed *connect* (urllib3's
  `connect` counter: ConnectTimeoutError/NewConnectionError happen before a byte is sent), 429 and
  503. A read timeout, a connection dropped after sending (urllib3's `read` counter, set to
  False so they re-raise at once), a 500, 502 or 504 are never retried: the push may have gone out.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, InvalidHeader, MaxRetryError
from urllib3.util.retry import Retry

from .logs import one_line
from .runtime import Deadline

log = logging.getLogger("era_beacon_notify")

MAX_BODY_BYTES = 32 << 20  # the notify answer lists every absent employee (~400 bytes each)
RETRIES = 2
BACKOFF_FACTOR = 1.0  # urllib3: 0 s before the first retry, 2 s before the second


class ApiError(Exception):
    """An API call failed; `exit_code` says how (sysexits).

    `acted`: the server may have acted on the request (it answered 2xx, or 5xx other than 503, or
    the connection failed after the request was sent). For notify, that means employees may already
    have their notification, so the run must count as a send for the repeat guard.
    """

    exit_code = 69

    def __init__(self, message: str, acted: bool = False) -> None:
        super().__init__(message)
        self.acted = acted


class Unavailable(ApiError):
    exit_code = 69  # EX_UNAVAILABLE


class UnexpectedAnswer(ApiError):
    exit_code = 76  # EX_PROTOCOL


class Refused(ApiError):
    exit_code = 77  # EX_NOPERM


class RetryWouldPassDeadline(Unavailable):
    """A retry's wait (Retry-After or backoff) would end after max_run_seconds: give up now (exit 69).

    Raised from inside urllib3 (`BoundedRetry.sleep`), so only before a retry: for notify that means
    the server certainly did not act (a failed connect, 429 or 503), so nothing was sent.
    """


class BoundedRetry(Retry):
    """urllib3 `Retry` whose waits (backoff or Retry-After) never pass the run's deadline.

    When a wait would end after the deadline, the run stops now (RetryWouldPassDeadline, exit 69)
    instead of sleeping into the hard stop. An unparseable Retry-After falls back to the backoff.
    """

    def __init__(self, *args: Any, deadline: Deadline | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = deadline

    def new(self, **kw: Any) -> BoundedRetry:
        return super().new(deadline=self.deadline, **kw)

    def sleep(self, response: Any = None) -> None:
        asked = None
        if self.respect_retry_after_header and response is not None:
            try:
                asked = self.get_retry_after(response)
            except InvalidHeader:  # "Retry-After: soon": back off as if it were absent
                asked = None
        wait = asked or self.get_backoff_time()
        if self.deadline is not None and wait >= self.deadline.remaining():
            at_least = " or more" if asked and wait >= self.retry_after_max else ""
            why = (f"HTTP {response.status} with Retry-After {wait:.0f}s{at_least}" if asked
                   else f"a retry due in {wait:.0f}s")
            raise RetryWouldPassDeadline(f"{why} would pass max_run_seconds "
                                         f"({max(self.deadline.remaining(), 0):.0f}s left): gave up")
        if wait > 0:
            time.sleep(wait)


def retry_policy(kind: str, deadline: Deadline) -> BoundedRetry:
    # retry_after_max (urllib3 >= 2.7) caps a server's Retry-After at the whole run's length; any
    # wait that long is past the deadline, so BoundedRetry.sleep gives up instead of sleeping.
    common: dict[str, Any] = dict(
        total=RETRIES, redirect=0, backoff_factor=BACKOFF_FACTOR, raise_on_status=False,
        respect_retry_after_header=True, retry_after_max=max(1, int(deadline.seconds)), deadline=deadline,
    )
    if kind == "notify":
        return BoundedRetry(connect=RETRIES, read=False, other=0, status=RETRIES,
                            status_forcelist=frozenset({429, 503}), allowed_methods=frozenset({"POST"}), **common)
    return BoundedRetry(connect=RETRIES, read=RETRIES, other=0, status=RETRIES,
                        status_forcelist=frozenset({429, 502, 503, 504}),
                        allowed_methods=frozenset({"GET", "POST"}), **common)


class BearerAuth(requests.auth.AuthBase):
    """Passing auth explicitly also stops requests from replacing it with ~/.netrc credentials."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


class Client:
    def __init__(self, base_url: str, connect_timeout: float, read_timeout: float, deadline: Deadline) -> None:
        self.base_url = base_url
        self.timeout = (connect_timeout, read_timeout)
        self.deadline = deadline
        self.server_date: str | None = None  # the last answer's Date header
        self.adapter = HTTPAdapter(max_retries=retry_policy("idempotent", deadline))
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "era-beacon-notify"
        self.session.mount("http://", self.adapter)
        self.session.mount("https://", self.adapter)

    def close(self) -> None:
        self.session.close()

    def warmup(self, url: str) -> None:
        """GET an idempotent URL first, so a sleeping host wakes on it and not on a POST."""
        started = time.monotonic()
        try:
            resp = self._request("GET", url, "idempotent", "warm-up GET")
            resp.close()
        except requests.RequestException as exc:
            log.warning("warm-up GET %s failed (%s); going on", url, _reason(exc))
            return
        except ApiError as exc:  # a huge answer, or a Retry-After past the deadline: still only a warm-up
            log.warning("%s; going on", exc)
            return
        level = logging.INFO if resp.ok else logging.WARNING
        log.log(level, "warm-up GET %s: HTTP %s after %.1fs", url, resp.status_code, time.monotonic() - started)

    def login(self, username: str, password: str) -> Any:
        what = "login"
        try:
            resp = self._request("POST", f"{self.base_url}/auth/login", "idempotent", what,
                                 json={"username": username, "password": password})
        except requests.RequestException as exc:
            raise Unavailable(f"{what}: cannot reach the API: {_reason(exc)}") from None
        return self._answer(resp, what)

    def notify(self, token: str, threshold: int) -> Any:
        """The notify answer. It may take ~30 s per employee when the push service hangs (see the
        contract), so it may read until the run's deadline rather than read_timeout_seconds."""
        what = "notify"
        try:
            resp = self._request("POST", f"{self.base_url}/notifications/notify-absence", "notify", what,
                                 json={"threshold": threshold}, auth=BearerAuth(token),
                                 timeout=(self.timeout[0], max(self.deadline.remaining(), 1.0)))
            return self._answer(resp, what)
        except requests.RequestException as exc:
            if never_sent(exc):
                raise Unavailable(f"{what}: cannot connect to the API ({_reason(exc)}); nothing was sent") from None
            raise Unavailable(f"{what}: {_reason(exc)} after the request was sent: outcome unknown, "
                              "not resent (a duplicate would reach employees)", acted=True) from None
        except ApiError as exc:
            if not exc.acted:
                raise
            raise type(exc)(f"{exc}: the server may have acted on it, so notifications may have gone out; "
                            "do not resend", acted=True) from None

    def _request(self, method: str, url: str, policy: str, what: str, **kwargs: Any) -> requests.Response:
        # One session (so login and notify share a kept-alive connection), with the retry policy of
        # the call at hand: requests has no per-request retries, so the adapter gets it each time.
        self.adapter.max_retries = retry_policy(policy, self.deadline)
        kwargs.setdefault("timeout", self.timeout)
        try:
            resp = self.session.request(method, url, allow_redirects=False, stream=True, **kwargs)
            resp._content = read_limited(resp)  # pre-load the streamed body, capped
        except ApiError as exc:  # raised inside urllib3 or by read_limited: say which call
            # A POST is retried only when the server certainly did not act on it (see retry_policy).
            unsent = "; nothing was sent" if isinstance(exc, RetryWouldPassDeadline) and method == "POST" else ""
            raise type(exc)(f"{what}: {exc}{unsent}", exc.acted) from None
        resp._content_consumed = True
        self.server_date = resp.headers.get("Date")  # the server's clock, for the token's lifetime
        return resp

    def _answer(self, resp: requests.Response, what: str) -> Any:
        """The JSON body of a 2xx answer, or the ApiError that fits the status."""
        code = resp.status_code
        acted = may_have_acted(code)
        if 300 <= code < 400:
            raise UnexpectedAnswer(f"{what}: HTTP {code} redirect to {resp.headers.get('Location', '(no Location)')!r}"
                                   " not followed: check api_base_url")
        if code in (401, 403):
            raise Refused(f"{what}: HTTP {code} {detail(resp)}")
        if code == 429 or code >= 500:
            raise Unavailable(f"{what}: server failed with HTTP {code} {detail(resp)}", acted)
        if not 200 <= code < 300:
            hint = ": check api_base_url (it ends in /v1)" if code == 404 else ""
            raise UnexpectedAnswer(f"{what}: unexpected HTTP {code} {detail(resp)}{hint}")
        try:
            return json.loads(resp.content)
        except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
            raise UnexpectedAnswer(f"{what}: HTTP {code} answer is not JSON ({describe(resp)})", acted) from None


def may_have_acted(code: int) -> bool:
    """A 2xx did act; a 5xx other than 503 (unavailable, turned away) may have acted partway."""
    return 200 <= code < 300 or (code >= 500 and code != 503)


def read_limited(resp: requests.Response) -> bytes:
    chunks, size = [], 0
    for chunk in resp.iter_content(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            resp.close()
            raise UnexpectedAnswer(f"HTTP {resp.status_code} answer is larger than {MAX_BODY_BYTES} bytes",
                                   may_have_acted(resp.status_code))
        chunks.append(chunk)
    return b"".join(chunks)


def never_sent(exc: requests.RequestException) -> bool:
    """True only when the request certainly never reached the server: the TCP connect failed."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, ConnectTimeoutError)  # NewConnectionError is a subclass


def detail(resp: requests.Response) -> str:
    """The API's `detail` as one short line, or a description of a non-JSON body."""
    try:
        body = json.loads(resp.content)
    except (ValueError, RecursionError):
        return f"({describe(resp)})"
    value = body.get("detail") if isinstance(body, dict) else None
    if isinstance(value, list):  # FastAPI validation errors
        value = "; ".join(map(_validation_error, value))
    if value is None:
        return f"({describe(resp)})"
    return one_line(str(value))


def _validation_error(item: Any) -> str:
    """One FastAPI validation error as "body.threshold: Field required"; never its `input` (may hold the password)."""
    if not isinstance(item, dict):
        return str(item)
    loc, msg = item.get("loc"), item.get("msg", "")
    where = ".".join(map(str, loc)) if isinstance(loc, (list, tuple)) else str(loc or "")
    return f"{where}: {msg}" if where else str(msg)


def describe(resp: requests.Response) -> str:
    kind = resp.headers.get("Content-Type", "no content type").split(";")[0]
    return f"{kind}, {len(resp.content)} bytes"


def _reason(exc: BaseException) -> str:
    """A short, secret-free reason: the innermost urllib3/socket cause, e.g. "ConnectionResetError: [Errno
    104] Connection reset by peer" rather than "ProtocolError: ('Connection aborted.', ConnectionResetError(...))"."""
    seen = exc
    for _ in range(10):
        inner = seen.reason if isinstance(seen, MaxRetryError) else next(
            (arg for arg in seen.args if isinstance(arg, BaseException)), None)
        if inner is None:
            break
        seen = inner
    name = type(seen).__name__
    texts = [arg for arg in seen.args if isinstance(arg, str)]
    # urllib3 puts the connection object first: ConnectTimeoutError(<HTTPConnection ...>, "Connection to ... timed out")
    text = texts[-1] if texts and len(texts) < len(seen.args) and not isinstance(seen, OSError) else str(seen)
    text = re.sub(r"<[^>]*>: ?", "", text)  # urllib3 prefixes messages with the connection object
    return one_line(f"{name}: {text}" if text else name, 200)
