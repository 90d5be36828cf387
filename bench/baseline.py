"""The floor of the chosen stack: the same lock and the same POST(s) as notify_once.py, nothing else.

    baseline.py warm BASE_URL LOCK_PATH TOKEN_FILE   lock, then notify with the cached token (1 POST)
    baseline.py cold BASE_URL LOCK_PATH              lock, then login and notify (2 POSTs)
    baseline.py bare BASE_URL TOKEN_FILE             no lock and no filelock import: requests only

Credentials for `cold` come from ERA_BEACON_USERNAME / ERA_BEACON_PASSWORD. Only `requests` and
`filelock` are imported (json, os and sys are already loaded by the interpreter or by requests); the
command line is read from sys.argv, not argparse, so that nothing else is paid for. Exit 0 when the
notify answer is a JSON object with success=true, 75 when the lock is busy, 1 otherwise. Prints
nothing on success and never prints a token.
"""

import json
import os
import sys

import requests

TIMEOUT = (2, 10)  # the bench config's connect/read timeouts


def cached_token(path: str) -> str:
    with open(path, "rb") as fh:
        return json.loads(fh.read())["token"]


def login(http: requests.Session, base: str) -> str:
    creds = {"username": os.environ["ERA_BEACON_USERNAME"], "password": os.environ["ERA_BEACON_PASSWORD"]}
    resp = http.post(f"{base}/auth/login", json=creds, timeout=TIMEOUT, allow_redirects=False)
    if resp.status_code != 200:
        sys.exit(f"baseline: login answered HTTP {resp.status_code}")
    return resp.json()["token"]


def notify(http: requests.Session, base: str, token: str) -> int:
    resp = http.post(f"{base}/notifications/notify-absence", json={"threshold": 30},
                         headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT, allow_redirects=False)
    ok = resp.status_code == 200 and resp.json().get("success") is True
    if not ok:
        print(f"baseline: notify answered HTTP {resp.status_code}", file=sys.stderr)
    return 0 if ok else 1


def main(argv: list[str]) -> int:
    mode, base = argv[1], argv[2]
    http = requests.Session()  # one connection for login + notify, as notify_once.py does
    if mode == "bare":
        return notify(http, base, cached_token(argv[3]))
    import filelock  # noqa: PLC0415 - not imported by the bare mode

    lock = filelock.FileLock(argv[3], blocking=False, mode=0o600)
    try:
        lock.acquire()
    except filelock.Timeout:
        return 75
    try:
        token = cached_token(argv[4]) if mode == "warm" else login(http, base)
        return notify(http, base, token)
    finally:
        lock.release()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
