"""Tests for the API stand-in itself (tests/standin.py), checked against docs/API_CONTRACT.md."""
import base64, json, os, signal, subprocess, sys, threading, time

import pytest
import requests

sys.path.insert(0, os.path.dirname(__file__))
import standin  # noqa: E402
from standin import StandIn  # noqa: E402

pytestmark = pytest.mark.timeout(10)
CREDS = {"username": "era_user", "password": "Era2025!"}


@pytest.fixture
def api():
    with StandIn() as s:
        yield s


def login(api, **kw):
    return requests.post(api.base_url + "/auth/login", json=CREDS, timeout=5, **kw)


def notify(api, body=None, token=None, headers=None, **kw):
    headers = headers or ({"Authorization": f"Bearer {token}"} if token else {})
    return requests.post(api.base_url + "/notifications/notify-absence", json=body or {"threshold": 30},
                         headers=headers, timeout=5, allow_redirects=False, **kw)


def claims(token):
    mid = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(mid + "=" * (-len(mid) % 4)))


def test_login_shape_and_token_expiry(api):
    r = login(api)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    assert list(r.json()) == ["token"] and api.issued_tokens == [r.json()["token"]]
    c = claims(r.json()["token"])
    assert list(c) == ["sub", "exp"] and abs(c["exp"] - (time.time() + 1800)) < 3
    api.login_shape, api.token_lifetime = "access_token", 60
    body = login(api).json()
    assert body["expires_in"] == 60 and abs(claims(body["access_token"])["exp"] - time.time() - 60) < 3


def test_login_errors(api):
    r = requests.post(api.base_url + "/auth/login", json={"username": "era_user", "password": "x"})
    assert r.status_code == 401 and r.json() == {"detail": "Invalid username or password"}
    assert "WWW-Authenticate" not in r.headers
    r = requests.post(api.base_url + "/auth/login", json={"username": "era_user"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "password"]
    for data in (b"not json", b""):
        r = requests.post(api.base_url + "/auth/login", data=data, headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and isinstance(r.json()["detail"], list)
    r = requests.get(api.base_url + "/auth/login")
    assert r.status_code == 405 and r.headers["Allow"] == "POST"
    assert r.json() == {"detail": "Method Not Allowed"}
    assert api.issued_tokens == []


def test_notify_auth_errors(api):
    r = notify(api)
    assert r.status_code == 403 and r.json() == {"detail": "Not authenticated"}
    assert "WWW-Authenticate" not in r.headers
    r = notify(api, headers={"Authorization": "Basic abc"})
    assert r.status_code == 403 and r.json() == {"detail": "Invalid authentication credentials"}
    for bad in ("garbage", api.make_token(exp=int(time.time()) - 1), api.make_token(key=b"other-key")):
        r = notify(api, token=bad)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
        assert r.json() == {"detail": "Could not validate credentials"}
    # auth before field validation, but malformed JSON before auth
    assert notify(api, body={"threshold": 30.5}).status_code == 403
    r = requests.post(api.base_url + "/notifications/notify-absence", data=b"{bad",
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"
    assert api.notify_processed == 0


@pytest.mark.parametrize("threshold,code", [(30.5, 422), (None, 422), ("30", 200), (30.0, 200)])
def test_notify_threshold_validation(api, threshold, code):
    r = notify(api, body={"threshold": threshold}, token=login(api).json()["token"])
    assert r.status_code == code
    if code == 422:
        assert isinstance(r.json()["detail"], list)
    else:
        assert r.json()["threshold_minutes"] == 30


def test_notify_success_body(api):
    token = login(api).json()["token"]
    body = notify(api, token=token).json()
    assert body["success"] is True and body["message"] == "Processed 2 employees"
    assert (body["total_employees"], body["notifications_sent"], body["notifications_failed"]) == (2, 1, 1)
    d = body["notifications_detail"]
    assert [e["response_code"] for e in d] == [200, 500]
    assert api.device_tokens[0] in d[0]["request_curl"] and api.device_tokens[1] in d[1]["request_curl"]
    assert json.loads(d[1]["response_message"])["error"] == "Failed to send notification"
    api.employees = []
    body = notify(api, body={"threshold": 45}, token=token).json()
    assert body["message"] == "No employees found exceeding threshold of 45 minutes"
    assert body["notifications_detail"] == [] and body["total_employees"] == 0
    assert api.notify_processed == 2 and api.count("notify") == 2


def test_redirect_404_and_health(api):
    r = requests.post(api.base_url + "/notifications/notify-absence/", json={"threshold": 30},
                      allow_redirects=False)
    assert r.status_code == 307
    assert r.headers["Location"] == api.base_url + "/notifications/notify-absence"
    r = requests.post(api.url + "/notifications/notify-absence", json={"threshold": 30})
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}
    assert requests.put(api.base_url + "/notifications/notify-absence").headers["Allow"] == "POST"
    assert requests.get(api.url + "/health").json() == {"status": "healthy"}
    r = requests.get(api.url + "/ping/abc-123/start")
    assert r.status_code == 200 and r.text == "OK"
    assert [api.count(x) for x in ("login", "notify", "health", "other")] == [0, 2, 1, 2]


def test_status_fault_then_normal(api):
    api.inject("login", standin.status(429, {"detail": "slow down"}, headers={"Retry-After": "2"}),
               standin.fail_db())
    r = login(api)
    assert r.status_code == 429 and r.headers["Retry-After"] == "2"
    r = login(api)
    assert r.status_code == 500 and r.text == "Internal Server Error"
    assert r.headers["Content-Type"].startswith("text/plain")
    assert login(api).status_code == 200
    assert len(api.issued_tokens) == 1 and api.count("login") == 3


def test_connection_faults(api):
    api.inject("notify", standin.reset(), standin.close(), standin.raw(b"HTTP/1.1 200 OK\r\n\r\n{}"))
    for _ in range(2):
        with pytest.raises(requests.ConnectionError):
            notify(api, token="x")
    assert notify(api, token="x").status_code == 200
    assert api.count("notify") == 3 and api.requests[0].json == {"threshold": 30}
    assert api.requests[0].headers["authorization"] == "Bearer x"


def test_hang_timeout_and_delay(api):
    api.inject("health", standin.hang(), standin.delay(0.3), standin.big(100_000))
    with pytest.raises(requests.ReadTimeout):
        requests.get(api.url + "/health", timeout=0.3)
    t0 = time.monotonic()
    assert requests.get(api.url + "/health").json() == {"status": "healthy"}
    assert time.monotonic() - t0 >= 0.3
    assert len(requests.get(api.url + "/health").content) == 100_000


def test_stop_is_prompt_with_stuck_handlers():
    api = StandIn().start()
    api.inject("notify", standin.hold(threading.Event()), standin.trickle(0.05))
    errors = []

    def call():
        try:
            notify(api, token="x")
        except requests.RequestException as e:
            errors.append(e)
    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    while api.count("notify") < 2:
        time.sleep(0.01)
    t0 = time.monotonic()
    api.stop()
    assert time.monotonic() - t0 < 1.5
    for t in threads:
        t.join(3)
    assert len(errors) == 2


def test_reset_clears_records_and_faults(api):
    api.inject("health", standin.status(503))
    requests.get(api.url + "/nope")
    api.reset()
    assert api.requests == [] and requests.get(api.url + "/health").status_code == 200


def test_standalone_mode(tmp_path):
    port_file = tmp_path / "port"
    proc = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "standin.py"),
                             "--port-file", str(port_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("standin listening on http://127.0.0.1:")
        url = line.split()[-1]
        assert url.endswith(":" + port_file.read_text().strip())
        requests.post(url + "/v1/auth/login", json=CREDS)
        requests.get(url + "/health")
        assert requests.get(url + "/_stats").json() == {"login": 1, "notify": 0, "health": 1, "other": 0}
        requests.post(url + "/_reset")
        assert requests.get(url + "/_stats").json()["login"] == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=5)
    assert proc.returncode == 0
    assert "standin: POST /v1/auth/login -> 200" in err and "Era2025" not in err
