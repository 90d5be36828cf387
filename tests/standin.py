"""A local stand-in for the Era Beacon attendance API (standard library only).

It answers the way docs/API_CONTRACT.md (a copy of ../shared/API_CONTRACT.md) says the real FastAPI server answers:
POST /v1/auth/login, POST /v1/notifications/notify-absence and GET /health, with the
same status codes, bodies, content types and headers. It binds to loopback only and
never sends traffic anywhere but back down the client's socket.

Tests drive it in-process:

    with StandIn() as api:
        api.inject("notify", status(503, {"detail": "down"}), normal())
        ...  # point the client at api.base_url
        assert api.count("notify") == 2

Faults (see the constructors below) are queued per route, first in first out; each
request on that route uses up one; with the queue empty the stand-in behaves normally.
Every request is recorded in `api.requests` (headers as a dict with lower-case keys)
before any fault or delay applies.

Standalone (for `make demo` and benchmarks):
    python tests/standin.py [--host H] [--port P] [--port-file PATH] [--token-lifetime S]
adds GET /_stats (request counts as JSON) and POST /_reset, and logs one line per
request to stderr (method, path without query, outcome; never tokens or bodies).
"""
from __future__ import annotations

import argparse, base64, hashlib, hmac, json, math, os, re, secrets, signal, socket
import struct, sys, threading, time, uuid
from collections import deque
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

LOGIN, NOTIFY, HEALTH = "/v1/auth/login", "/v1/notifications/notify-absence", "/health"
ROUTES = {LOGIN: ("login", "POST"), NOTIFY: ("notify", "POST"), HEALTH: ("health", "GET")}
FAULT_ROUTES = ("login", "notify", "health", "other")
PUSH_URL = "https://push.era-beacon.invalid/api/send-notification"
PUSH_FAILED = {"error": "Failed to send notification", "details": "Requested entity was not found."}
DB_ERROR = ("Error processing absence notifications: (psycopg2.OperationalError) connection to "
            'server at "127.0.0.1", port 5432 failed: Connection refused')
_MISSING = object()


# ---------------------------------------------------------------- faults
@dataclass
class Fault:
    kind: str
    params: dict = field(default_factory=dict)


def status(code, body=b"", headers=None, content_type=None):
    """Answer with this status/body instead (dict/list -> JSON, str -> text/plain)."""
    return Fault("status", dict(code=code, body=body, headers=headers or {}, content_type=content_type))
def raw(data: bytes):  return Fault("raw", dict(data=data))           # these bytes, then close
def close():           return Fault("close")                          # read request, close, no answer
def reset():           return Fault("reset")                          # read request, TCP RST
def hang(seconds=None): return Fault("hang", dict(seconds=seconds))   # silence until seconds/stop()
def trickle(interval=1.0, total=None):
    """200 + headers, then one body byte per interval. `total` = Content-Length (default 10**9);
    the body is spaces followed by {"status":"healthy"}, so a patient client gets valid JSON."""
    return Fault("trickle", dict(interval=interval, total=total))
def delay(seconds):    return Fault("delay", dict(seconds=seconds))   # cold start, then normal
def hold(event: threading.Event, timeout=60):
    return Fault("hold", dict(event=event, timeout=timeout))          # wait for event, then normal
def big(nbytes):       return Fault("big", dict(nbytes=nbytes))       # 200 JSON body of nbytes
def fail_db():         return Fault("fail_db")                        # the contract's database down
def normal():          return Fault("normal")


# ---------------------------------------------------------------- helpers
@dataclass
class Recorded:
    method: str
    path: str            # raw request target, query included
    route: str           # login | notify | health | other | stats
    headers: dict        # lower-case keys; repeated headers joined with ", "
    body: bytes
    json: object
    client_port: int
    time: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _json(code, obj, headers=()):
    return code, _dumps(obj), "application/json", list(headers)


def _text(code, text):
    return code, text.encode(), "text/plain; charset=utf-8", []


def _error(kind, loc, msg, value, **extra):
    return {"type": kind, "loc": ["body", *loc], "msg": msg, "input": value, **extra}


def _parse_body(body: bytes, content_type):
    """FastAPI's body step: returns (value, None) or (None, error response)."""
    if not body:
        return _MISSING, None
    msg = Message()
    msg["content-type"] = content_type or "application/json"
    sub = msg.get_content_subtype()
    if msg.get_content_maintype() != "application" or not (sub == "json" or sub.endswith("+json")):
        return body.decode("utf-8", "replace"), None    # not JSON: validated (and refused) as a str
    try:
        return json.loads(body), None
    except json.JSONDecodeError as e:
        return None, _json(422, {"detail": [{"type": "json_invalid", "loc": ["body", e.pos],
                                             "msg": "JSON decode error", "input": {},
                                             "ctx": {"error": e.msg}}]})
    except UnicodeDecodeError:
        return None, _json(400, {"detail": "There was an error parsing the body"})


def _model_errors(value):
    if value is _MISSING:
        return [{"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}]
    if not isinstance(value, dict):
        return [_error("model_attributes_type", [], "Input should be a valid dictionary or "
                       "object to extract fields from", value)]
    return []


def _as_int(body, name):
    """Pydantic v2 lax int: 30, "30", 30.0, True accepted; 30.5, null, missing refused."""
    v = body.get(name, _MISSING)
    if v is _MISSING:
        return None, _error("missing", [name], "Field required", body)
    if isinstance(v, bool) or isinstance(v, int):
        return int(v), None
    if isinstance(v, float):
        if not math.isfinite(v):
            return None, _error("finite_number", [name], "Input should be a finite number", v)
        if v != int(v):
            return None, _error("int_from_float", [name], "Input should be a valid integer, got "
                                "a number with a fractional part", v)
        return int(v), None
    if isinstance(v, str) and re.fullmatch(r"\s*[+-]?\d+(\.0*)?\s*", v):
        return int(v.strip().split(".")[0]), None
    if isinstance(v, str):
        return None, _error("int_parsing", [name], "Input should be a valid integer, unable to "
                            "parse string as an integer", v)
    return None, _error("int_type", [name], "Input should be a valid integer", v)


# ---------------------------------------------------------------- the stand-in
class StandIn:
    def __init__(self, host="127.0.0.1", port=0, users=None, token_lifetime=1800,
                 login_shape="token", *, standalone=False):
        self.host, self._port_wanted = host, port
        self.users = dict(users if users is not None else {"era_user": "Era2025!"})
        self.token_lifetime, self.login_shape = token_lifetime, login_shape
        self.login_delay = 0.0          # the real bcrypt check takes ~0.3 s; 0 keeps tests fast
        self.standalone = standalone
        self.secret = secrets.token_bytes(32)
        self.requests: list[Recorded] = []
        self.issued_tokens: list[str] = []
        self.notify_processed = 0
        self.employees = [
            {"employee_id": "EMP-0001", "device_token": f"devtok-{secrets.token_hex(16)}", "push_ok": True},
            {"employee_id": "EMP-0002", "device_token": f"devtok-{secrets.token_hex(16)}", "push_ok": False}]
        self._user_ids: dict[str, str] = {}
        self._faults = {r: deque() for r in FAULT_ROUTES}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._conns: set = set()
        self._server = self._thread = None

    # --- lifecycle
    def start(self) -> "StandIn":
        self._server = _Server((self.host, self._port_wanted), _Handler)
        self._server.standin = self
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None or self._stopping.is_set():
            return
        self._stopping.set()                       # releases hang/hold/delay/trickle
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:                         # wakes handlers blocked on the socket
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(2)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    @property
    def device_tokens(self) -> list[str]:
        return [e["device_token"] for e in self.employees]

    # --- recording and faults
    def count(self, route: str) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.route == route)

    def inject(self, route: str, *faults: Fault) -> None:
        if route not in self._faults or not all(isinstance(f, Fault) for f in faults):
            raise ValueError(f"route must be one of {FAULT_ROUTES} and faults Fault objects")
        with self._lock:
            self._faults[route].extend(faults)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            for queue in self._faults.values():
                queue.clear()

    def _record(self, rec: Recorded):
        with self._lock:
            self.requests.append(rec)
            queue = self._faults.get(rec.route)
            return queue.popleft() if queue else None

    def _wait(self, seconds=None, event=None) -> bool:
        """Wait for seconds / event; False if stop() came first."""
        end = None if seconds is None else time.monotonic() + seconds
        while not self._stopping.is_set():
            if event is not None and event.is_set():
                return True
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                return True
            self._stopping.wait(0.05 if left is None else min(0.05, left))
        return False

    # --- tokens
    def make_token(self, exp=None, sub=None, key=None) -> str:
        """Sign a JWT like the server does (not recorded in issued_tokens)."""
        sub = sub or self._user_ids.setdefault(next(iter(self.users), ""), str(uuid.uuid4()))
        exp = int(time.time()) + int(self.token_lifetime) if exp is None else exp
        head = _b64(_dumps({"alg": "HS256", "typ": "JWT"}))
        body = _b64(_dumps({"sub": sub, "exp": exp}))
        sig = hmac.new(key or self.secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
        return f"{head}.{body}.{_b64(sig)}"

    def _token_ok(self, token: str) -> bool:
        try:
            head, body, sig = token.split(".")
            want = hmac.new(self.secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
            if json.loads(_unb64(head)).get("alg") != "HS256" or not hmac.compare_digest(_unb64(sig), want):
                return False
            claims = json.loads(_unb64(body))
            return (isinstance(claims.get("exp"), (int, float)) and claims["exp"] > time.time()
                    and claims.get("sub") in self._user_ids.values())
        except (ValueError, TypeError, AttributeError):
            return False

    # --- the endpoints: each returns (code, body, content_type, headers)
    def _auth_error(self, headers):
        authz = headers.get("authorization", "")
        scheme, _, cred = authz.partition(" ")
        if not (authz and scheme and cred):
            return _json(403, {"detail": "Not authenticated"})
        if scheme.lower() != "bearer":
            return _json(403, {"detail": "Invalid authentication credentials"})
        if not self._token_ok(cred):
            return _json(401, {"detail": "Could not validate credentials"}, [("WWW-Authenticate", "Bearer")])
        return None

    def _login(self, rec: Recorded):
        if self.login_delay and not self._wait(self.login_delay):
            return None
        value, err = _parse_body(rec.body, rec.headers.get("content-type"))
        if err:
            return err
        errors = _model_errors(value) or [
            _error("missing", [k], "Field required", value) if k not in value else
            _error("string_type", [k], "Input should be a valid string", value[k])
            for k in ("username", "password") if not isinstance(value.get(k), str)]
        if errors:
            return _json(422, {"detail": errors})
        user, password = value["username"], value["password"]
        if user not in self.users or not hmac.compare_digest(self.users[user].encode(), password.encode()):
            return _json(401, {"detail": "Invalid username or password"})
        self._user_ids.setdefault(user, str(uuid.uuid4()))
        token = self.make_token(sub=self._user_ids[user])
        with self._lock:
            self.issued_tokens.append(token)
        if self.login_shape == "access_token":
            return _json(200, {"access_token": token, "expires_in": self.token_lifetime})
        return _json(200, {"token": token})

    def _notify(self, rec: Recorded):
        value, err = _parse_body(rec.body, rec.headers.get("content-type"))
        err = err or self._auth_error(rec.headers)
        if err:
            return err
        errors = _model_errors(value)
        threshold, terr = (None, None) if errors else _as_int(value, "threshold")
        if errors or terr:
            return _json(422, {"detail": errors or [terr]})
        with self._lock:
            self.notify_processed += 1
        return _json(200, self._notify_body(threshold))

    def _notify_body(self, threshold: int) -> dict:
        if not self.employees:
            return {"success": True, "threshold_minutes": threshold, "total_employees": 0,
                    "message": f"No employees found exceeding threshold of {threshold} minutes",
                    "notifications_sent": 0, "notifications_failed": 0, "notifications_detail": []}
        detail = []
        for emp in self.employees:
            payload = json.dumps({"token": emp["device_token"], "title": "Absence alert",
                                  "body": f"You have been away for more than {threshold} minutes"})
            if emp["push_ok"] is None:     # push service unreachable
                code, msg = 0, "Request failed: HTTPSConnectionPool: Max retries exceeded"
            elif emp["push_ok"]:
                code, msg = 200, json.dumps({"success": True, "message_id": secrets.token_hex(8)})
            else:
                code, msg = 500, json.dumps(PUSH_FAILED)
            detail.append({"employee_id": emp["employee_id"],
                           "request_curl": f"curl -X POST '{PUSH_URL}' -H 'Content-Type: "
                                           f"application/json' -d '{payload}'",
                           "response_code": code, "response_message": msg})
        sent = sum(1 for d in detail if d["response_code"] == 200)
        return {"success": True, "threshold_minutes": threshold,
                "message": f"Processed {len(detail)} employees", "total_employees": len(detail),
                "notifications_sent": sent, "notifications_failed": len(detail) - sent,
                "notifications_detail": detail}

    def _respond(self, rec: Recorded, path: str, host: str):
        if rec.route == "stats":
            if path == "/_reset":
                self.reset()
                return _json(200, {"reset": True})
            return _json(200, {r: self.count(r) for r in FAULT_ROUTES})
        if rec.route == "other":
            return _text(200, "OK") if path.startswith("/ping") else _json(404, {"detail": "Not Found"})
        if path.endswith("/"):                     # Starlette's redirect_slashes
            query = urlsplit(rec.path).query
            location = f"http://{host}{path[:-1]}" + (f"?{query}" if query else "")
            return 307, b"", None, [("Location", location)]
        if rec.method != ROUTES[path][1]:
            return _json(405, {"detail": "Method Not Allowed"}, [("Allow", ROUTES[path][1])])
        if rec.route == "health":
            return _json(200, {"status": "healthy"})
        return self._login(rec) if rec.route == "login" else self._notify(rec)

    def _fault_response(self, fault: Fault, route: str):
        p = fault.params
        if fault.kind == "status":
            body, ctype = p["body"], p["content_type"]
            if isinstance(body, (dict, list)):
                body, ctype = _dumps(body), ctype or "application/json"
            elif isinstance(body, str):
                body, ctype = body.encode(), ctype or "text/plain; charset=utf-8"
            return p["code"], body, ctype, list(p["headers"].items())
        if fault.kind == "fail_db":
            return _json(500, {"detail": DB_ERROR}) if route == "notify" else _text(500, "Internal Server Error")
        raise AssertionError(fault.kind)


def _route_of(path: str, standalone: bool) -> str:
    key = path[:-1] if path.endswith("/") and path[:-1] in ROUTES else path
    if key in ROUTES:
        return ROUTES[key][0]
    return "stats" if standalone and path in ("/_stats", "/_reset") else "other"


# ---------------------------------------------------------------- HTTP plumbing
class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    standin: StandIn

    def handle_error(self, request, client_address):
        pass                                       # dropped connections are routine here


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True                 # TCP_NODELAY, as uvicorn sets: no delayed-ACK stalls
    outcome = "-"

    def version_string(self):
        return "uvicorn"

    def log_message(self, *args):
        pass

    def log_request(self, code="-", size="-"):
        self.outcome = int(code)

    def setup(self):
        super().setup()
        self.api: StandIn = self.server.standin
        with self.api._lock:
            self.api._conns.add(self.connection)

    def finish(self):
        with self.api._lock:
            self.api._conns.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def handle_one_request(self):                  # any method, not just do_GET/do_POST
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if not self.raw_requestline or self.api._stopping.is_set():
                self.close_connection = True
                return
            if self.parse_request():
                self._serve()
                self.wfile.flush()
        except (OSError, ValueError):
            self.close_connection = True

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _serve(self):
        body, path = self._read_body(), urlsplit(self.path).path
        headers = {}
        for k, v in self.headers.items():
            headers[k.lower()] = f"{headers[k.lower()]}, {v}" if k.lower() in headers else v
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        rec = Recorded(self.command, self.path, _route_of(path, self.api.standalone), headers,
                       body, parsed, self.client_address[1], time.time())
        fault = self.api._record(rec)
        try:
            self._apply(fault, rec, path)
        finally:
            if self.api.standalone:
                print(f"standin: {rec.method} {path} -> {self.outcome}", file=sys.stderr, flush=True)

    def _apply(self, fault, rec, path):
        kind, p = (fault.kind, fault.params) if fault else ("normal", {})
        if kind in ("close", "reset", "hang", "raw", "trickle", "big"):
            self.close_connection, self.outcome = True, kind
        if kind == "close":
            return
        if kind == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()                     # drop makefile refs so close() is real: RST
            self.connection.close()
            return
        if kind == "hang":
            self.api._wait(p["seconds"])
            return
        if kind == "raw":
            self.wfile.write(p["data"])
            return
        if kind == "trickle":
            return self._trickle(p["interval"], p["total"] or 10**9)
        if kind == "big":
            return self._big(p["nbytes"])
        if kind == "delay" and not self.api._wait(p["seconds"]):
            self.close_connection = True
            return
        if kind == "hold" and not self.api._wait(p["timeout"], p["event"]):
            self.close_connection = True
            return
        if kind in ("status", "fail_db"):
            resp = self.api._fault_response(fault, rec.route)
        else:
            resp = self.api._respond(rec, path, self.headers.get("Host") or f"{self.api.host}:{self.api.port}")
        if resp is None:                           # stop() during the login delay
            self.close_connection = True
            return
        self._send(*resp)

    def _send(self, code, body=b"", ctype=None, headers=()):
        self.send_response(code)
        if ctype:
            self.send_header("Content-Type", ctype)
        for k, v in headers:
            self.send_header(k, str(v))
        if not any(k.lower() == "content-length" for k, _ in headers):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _trickle(self, interval, total):
        tail = b'{"status":"healthy"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(total))
        self.end_headers()
        self.wfile.flush()
        for i in range(total):
            if not self.api._wait(interval):
                return
            j = i - (total - len(tail))
            self.wfile.write(tail[j:j + 1] if j >= 0 else b" ")

    def _big(self, nbytes):
        head, tail = b'{"x":"', b'"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(max(nbytes, 8)))
        self.end_headers()
        self.wfile.write(head)
        left, chunk = max(nbytes, 8) - 8, memoryview(b"a" * (1 << 20))
        while left > 0 and not self.api._stopping.is_set():
            n = min(left, len(chunk))
            self.wfile.write(chunk[:n])
            left -= n
        self.wfile.write(tail)


# ---------------------------------------------------------------- standalone mode
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Era Beacon API stand-in (loopback only)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--token-lifetime", type=int, default=1800)
    args = ap.parse_args(argv)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    api = StandIn(args.host, args.port, token_lifetime=args.token_lifetime, standalone=True).start()
    if args.port_file:
        tmp = f"{args.port_file}.tmp{os.getpid()}"
        with open(tmp, "w") as fh:
            fh.write(f"{api.port}\n")
        os.replace(tmp, args.port_file)
    print(f"standin listening on {api.url}", flush=True)
    while not done.wait(0.2):
        pass
    api.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
