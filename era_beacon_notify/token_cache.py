"""The bearer token: where its expiry comes from, when it is fresh, and its cache file.

Pure decisions first (`token_from_login`, `jwt_exp`, `is_fresh`), then the file I/O. Expiry is
absolute epoch seconds. The login answer carries no expiry (see docs/API_CONTRACT.md), so it is read from
the JWT's `exp` claim; older servers send `expires_in`; with both the earlier wins; with neither a
short default is assumed. A lifetime of zero or less is used once but never cached.
"""

from __future__ import annotations

import base64
import binascii
import errno
import json
import logging
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .files import atomic_write_json, read_nofollow

log = logging.getLogger("era_beacon_notify")

DEFAULT_LIFETIME_SECONDS = 15 * 60  # when the answer says nothing about expiry
MAX_LIFETIME_SECONDS = 24 * 3600  # a cap on absurd `expires_in`; the server still has the last word


# RFC 6750's b64token: the only characters a bearer credential may have. Anything else (a space, a
# newline, non-ASCII) would make the Authorization header invalid, or crash the HTTP library.
_BEARER = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def is_bearer_token(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= 16 * 1024 and _BEARER.fullmatch(value) is not None


class BadLoginAnswer(ValueError):
    """The login answer has no usable token (exit 76)."""


@dataclass(frozen=True)
class Token:
    token: str
    expires_at: int  # epoch seconds
    api_base_url: str
    username: str
    obtained_at: int

    def __repr__(self) -> str:  # never show the token itself
        return f"Token(expires_at={self.expires_at}, username={self.username!r}, api_base_url={self.api_base_url!r})"


def jwt_exp(token: str) -> int | None:
    """The `exp` claim of a JWT, decoded without verifying the signature (neither possible nor needed)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, (int, float)) or not math.isfinite(exp):
        return None
    return int(exp)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def token_from_login(body: Any, now: float, api_base_url: str, username: str,
                     server_now: float | None = None) -> Token:
    """Build a `Token` from a login answer: `{"token"}` (today) or `{"access_token", "expires_in"}`.

    `server_now` is the answer's `Date` header: the JWT's `exp` is on the server's clock, so its
    lifetime is measured against that clock and then counted from `now` on ours. A host clock set
    an hour wrong then still caches a token for its real lifetime. Without a Date, `exp` is used as is.
    """
    if not isinstance(body, dict):
        raise BadLoginAnswer(f"login answer is a JSON {type(body).__name__}, not an object")
    raw = body.get("token", body.get("access_token"))
    if not isinstance(raw, str) or not raw.strip():
        raise BadLoginAnswer("login answer has no token (expected 'token' or 'access_token' as a string)")
    if not is_bearer_token(raw.strip()):
        raise BadLoginAnswer("login answer's token is not a valid bearer token (characters outside RFC 6750)")
    candidates = []
    exp = jwt_exp(raw)
    if exp is not None:
        candidates.append(exp if server_now is None else int(now + (exp - server_now)))
    expires_in = _number(body.get("expires_in"))
    if expires_in is not None:
        candidates.append(int(now + min(expires_in, MAX_LIFETIME_SECONDS)))
    expires_at = min(candidates) if candidates else int(now + DEFAULT_LIFETIME_SECONDS)
    return Token(raw.strip(), expires_at, api_base_url, username, int(now))


def http_date(value: Any) -> float | None:
    """Epoch seconds of an HTTP `Date` header value, or None when absent or unparseable."""
    from email.utils import parsedate_to_datetime

    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:  # "-0000": UTC by RFC 5322
        from datetime import timezone

        moment = moment.replace(tzinfo=timezone.utc)
    try:
        return moment.timestamp()
    except (OverflowError, OSError, ValueError):
        return None


def is_fresh(token: Token, now: float, margin: int, api_base_url: str, username: str) -> bool:
    """Usable: issued for this API and user, with more than `margin` seconds left."""
    return (token.api_base_url == api_base_url and token.username == username
            and token.expires_at - now > margin)


def worth_caching(token: Token) -> bool:
    return token.expires_at > token.obtained_at


# --- file I/O -------------------------------------------------------------------------------------

class CacheUnreadable(Exception):
    """The cache exists but cannot be used; the text says why (never the token)."""


def load(path: Path) -> Token | None:
    """The cached token, None when there is no cache, CacheUnreadable when it is unusable."""
    try:
        data = read_nofollow(path, limit=64 * 1024)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CacheUnreadable("is a symlink" if exc.errno == errno.ELOOP else exc.strerror or str(exc)) from None
    except ValueError as exc:
        raise CacheUnreadable(str(exc)) from None
    try:
        doc = json.loads(data.decode("utf-8"))
        token = Token(**{k: doc[k] for k in ("token", "expires_at", "api_base_url", "username", "obtained_at")})
    except (UnicodeDecodeError, ValueError, KeyError, TypeError):
        raise CacheUnreadable("is not a valid token cache") from None
    if not (is_bearer_token(token.token) and isinstance(token.api_base_url, str)
            and isinstance(token.username, str)
            and all(isinstance(v, int) and not isinstance(v, bool) for v in (token.expires_at, token.obtained_at))):
        raise CacheUnreadable("has fields of the wrong type")
    return token


def save(path: Path, token: Token) -> None:
    atomic_write_json(path, asdict(token))


def drop(path: Path) -> None:
    """Forget a token the server refused. Failing to is only worth a warning: the re-login that
    follows replaces the file, and a refused token is never used twice in one run."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("cannot remove token cache %s (%s)", path, exc.strerror)
