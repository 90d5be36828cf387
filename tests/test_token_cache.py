"""Token freshness and expiry (pure), and the cache file (era_beacon_notify.token_cache)."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from era_beacon_notify import token_cache
from era_beacon_notify.token_cache import (DEFAULT_LIFETIME_SECONDS, MAX_LIFETIME_SECONDS, BadLoginAnswer,
                                           CacheUnreadable, Token, is_fresh, jwt_exp, token_from_login)

NOW = 1_800_000_000
URL = "http://127.0.0.1:1/v1"


def jwt(payload: object) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    head = b64(b'{"alg":"HS256"}')
    return f"{head}.{b64(json.dumps(payload).encode())}.{b64(b'sig')}"


@pytest.mark.parametrize("token, exp", [
    (jwt({"sub": "u", "exp": NOW + 1800}), NOW + 1800),
    (jwt({"sub": "u", "exp": NOW + 0.9}), NOW),        # float exp: truncated
    (jwt({"sub": "u"}), None),                          # no exp
    (jwt({"sub": "u", "exp": "soon"}), None),           # exp not a number
    (jwt({"sub": "u", "exp": True}), None),             # a bool is not a time
    (jwt(["not", "an", "object"]), None),
    ("aaa.%%%%.ccc", None),                             # garbage payload
    ("aaa.bbb", None),                                  # two segments
    ("opaque-token", None),
])
def test_jwt_exp(token: str, exp: int | None) -> None:
    assert jwt_exp(token) == exp


@pytest.mark.parametrize("body, expires_at", [
    ({"token": jwt({"exp": NOW + 1800})}, NOW + 1800),                            # today's server
    ({"access_token": "opaque", "expires_in": 3600}, NOW + 3600),                 # older documents
    ({"access_token": "opaque", "expires_in": "600"}, NOW + 600),                 # a numeric string
    ({"token": jwt({"exp": NOW + 1800}), "expires_in": 60}, NOW + 60),            # both: the earlier
    ({"token": jwt({"exp": NOW + 60}), "expires_in": 3600}, NOW + 60),
    ({"token": "opaque"}, NOW + DEFAULT_LIFETIME_SECONDS),                        # neither: assume 15 min
    ({"token": "opaque", "expires_in": "later"}, NOW + DEFAULT_LIFETIME_SECONDS), # unusable expires_in
    ({"token": "opaque", "expires_in": 10**12}, NOW + MAX_LIFETIME_SECONDS),      # absurd: capped
    ({"token": "opaque", "expires_in": 0}, NOW),
    ({"token": "opaque", "expires_in": -5}, NOW - 5),
])
def test_expiry_from_login_answer(body: dict, expires_at: int) -> None:
    token = token_from_login(body, NOW, URL, "era_user")
    assert token.expires_at == expires_at
    assert token_cache.worth_caching(token) is (expires_at > NOW)


@pytest.mark.parametrize("body", [[], "token", {}, {"token": ""}, {"token": 123}, {"access_token": None},
                                  {"token": ["a"]}])
def test_login_answer_without_usable_token(body: object) -> None:
    with pytest.raises(BadLoginAnswer):
        token_from_login(body, NOW, URL, "era_user")


def make(expires_at: int = NOW + 1800, url: str = URL, user: str = "era_user") -> Token:
    return Token("t", expires_at, url, user, NOW - 10)


@pytest.mark.parametrize("token, fresh", [
    (make(NOW + 1800), True),
    (make(NOW + 61), True),           # margin 60: one second to spare
    (make(NOW + 60), False),          # exactly the margin: renew first
    (make(NOW - 1), False),           # expired
    (make(url="http://other/v1"), False),
    (make(user="someone_else"), False),
])
def test_is_fresh(token: Token, fresh: bool) -> None:
    assert is_fresh(token, NOW, 60, URL, "era_user") is fresh


def test_cache_round_trip_is_private(tmp_path: Path) -> None:
    path = tmp_path / "token.json"
    old = os.umask(0o022)  # even a permissive umask gives a private file
    try:
        token_cache.save(path, make())
    finally:
        os.umask(old)
    assert token_cache.load(path) == make()
    assert path.stat().st_mode & 0o777 == 0o600
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


@pytest.mark.parametrize("content", [b"", b"{", b"\x00\xff\xfe", b"[]", b'{"token": 1}',
                                     json.dumps({**make().__dict__, "expires_at": "soon"}).encode(),
                                     json.dumps({**make().__dict__, "token": ""}).encode()])
def test_unusable_cache_is_reported_not_raised_as_a_crash(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "token.json"
    path.write_bytes(content)
    with pytest.raises(CacheUnreadable):
        token_cache.load(path)


def test_symlinked_cache_is_refused_and_replaced_not_written_through(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep me")
    link = tmp_path / "token.json"
    link.symlink_to(target)
    with pytest.raises(CacheUnreadable, match="symlink"):
        token_cache.load(link)
    token_cache.save(link, make())
    assert target.read_text() == "keep me"
    assert not link.is_symlink() and token_cache.load(link) == make()


def test_missing_cache_is_none(tmp_path: Path) -> None:
    assert token_cache.load(tmp_path / "token.json") is None


def test_repr_never_shows_the_token() -> None:
    assert "secret-token" not in repr(Token("secret-token", NOW, URL, "u", NOW))
