"""The secret scan over the whole suite: runs last (file order), reads what every run printed or logged.

The password, every bearer token any stand-in issued, and every employee device token (which the
API embeds in `request_curl`) must appear nowhere. `find_leaks` is tested too, so the scan can fail.
"""

from __future__ import annotations

import pytest

from conftest import SEEN_OUTPUT, SEEN_SECRETS


def find_leaks(outputs: list[str], secrets: set[str]) -> set[str]:
    blob = "\n".join(outputs)
    return {secret for secret in secrets if secret and secret in blob}


def test_the_scanner_finds_a_planted_leak() -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjF9.c2ln"
    assert find_leaks(["ok", f"Authorization: Bearer {token}"], {token, "Era2025!"}) == {token}
    assert find_leaks(["nothing here"], {token}) == set()


def test_no_secret_in_any_output_of_the_suite() -> None:
    if not SEEN_OUTPUT:
        pytest.skip("no run was recorded before the scan (this file was run on its own)")
    leaks = find_leaks(SEEN_OUTPUT, SEEN_SECRETS)
    assert not leaks, f"{len(leaks)} secret(s) leaked into output or logs"
