"""The `venture serve` process of a test, and a small HTTP client for its API.

Server: picks a free port, starts `venture serve --data-dir D --listen 127.0.0.1:P` (clustered on
PostgreSQL + NATS + Redis when VENTURE_TEST_CLUSTER=1: helpers/cluster.py), waits for
GET /readyz → 200, and stops it with SIGTERM (graceful, exit 0) or SIGKILL (the crash test). The
same data dir and port are reused by `restart()`. The process's output goes to a log file whose
tail is printed when something goes wrong.

Client: one request per connection (http.client), JSON in and out, a bearer token, and the
answer as a Resp with status, lower-case headers, raw body and parsed JSON (None when not JSON).
"""
import http.client
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse

from helpers import chain, cluster

READY_TIMEOUT_S = 90


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # {lower-case name: value}
        self.body = body  # bytes
        self._json = None
        self._parsed = False

    @property
    def json(self):
        if not self._parsed:
            self._parsed = True
            try:
                self._json = json.loads(self.body.decode("utf-8")) if self.body else None
            except (ValueError, UnicodeDecodeError):
                self._json = None
        return self._json

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def is_problem(self):
        ct = self.headers.get("content-type", "")
        j = self.json
        return ("application/problem+json" in ct and isinstance(j, dict) and
                isinstance(j.get("type"), str) and j.get("status") == self.status and
                isinstance(j.get("title"), str) and isinstance(j.get("detail"), str))

    def error_paths(self):
        j = self.json if isinstance(self.json, dict) else {}
        return [e.get("path") for e in j.get("errors") or [] if isinstance(e, dict)]

    def is_router_miss(self):
        """The router's own answer: no route for the path (404) or the method (405)."""
        if self.status == 405:
            return True
        j = self.json if isinstance(self.json, dict) else {}
        return (self.status == 404 and str(j.get("type", "")).endswith("/not-found") and
                str(j.get("detail", "")).startswith("no route for"))

    def __repr__(self):
        body = self.text
        return f"<{self.status} {body[:600]}>"


class Client:
    def __init__(self, port, token=None, host="127.0.0.1", timeout=60):
        self.port = port
        self.host = host
        self.token = token
        self.timeout = timeout

    def with_token(self, token):
        return Client(self.port, token, self.host, self.timeout)

    def request(self, method, path, body=None, headers=None, token="default", raw=None,
                query=None):
        """body: JSON-serialised (Content-Type: application/json) unless raw bytes are given."""
        if query:
            path += ("&" if "?" in path else "?") + urllib.parse.urlencode(query)
        h = {}
        tok = self.token if token == "default" else token
        if tok:
            h["Authorization"] = "Bearer " + tok
        data = None
        if raw is not None:
            data = raw if isinstance(raw, bytes) else raw.encode("utf-8")
        elif body is not None:
            data = json.dumps(body).encode("utf-8")
            h["Content-Type"] = "application/json"
        if headers:
            h.update(headers)
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            payload = r.read()
            hdrs = {k.lower(): v for k, v in r.getheaders()}
            return Resp(r.status, hdrs, payload)
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def put(self, path, body=None, **kw):
        return self.request("PUT", path, body=body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    # ---- conveniences used by several tests -------------------------------------------------

    def register(self, definition, tag=None):
        path = "/v1/workflows" + (f"?tag={urllib.parse.quote(tag)}" if tag else "")
        r = self.post(path, definition)
        if r.status not in (200, 201):
            raise AssertionError(f"register {definition.get('name')}: {r}")
        return r.json

    def start(self, workflow=None, definition=None, inputs=None, key=None):
        body = {}
        if workflow is not None:
            body["workflow"] = workflow
        if definition is not None:
            body["definition"] = definition
        if inputs is not None:
            body["inputs"] = inputs
        headers = {"Idempotency-Key": key} if key else None
        r = self.post("/v1/runs", body, headers=headers)
        if r.status not in (200, 201):
            raise AssertionError(f"start {workflow or definition.get('name')}: {r}")
        return r.json

    def run(self, run_id):
        r = self.get("/v1/runs/" + run_id)
        if r.status != 200:
            raise AssertionError(f"GET run {run_id}: {r}")
        return r.json

    def wait(self, run_id, statuses=("succeeded", "failed", "cancelled"), timeout=90,
             pred=None):
        """Polls the run until its status is in `statuses` (and pred(run) holds); returns it."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.run(run_id)
            if last["status"] in statuses and (pred is None or pred(last)):
                return last
            time.sleep(0.05)
        raise AssertionError(f"run {run_id} not in {statuses} after {timeout}s: "
                             f"{json.dumps(last)[:1500]}")

    def events(self, run_id=None, after=0, page=500, raw_numbers=False, **filters):
        """Every event (of a run, or global with filters), paging with ?after= / next_cursor.
        raw_numbers: floats keep the server's text (chain.loads), for hash checks."""
        out = []
        base = f"/v1/runs/{run_id}/events" if run_id else "/v1/events"
        cursor = str(after)
        while True:
            q = {"after": cursor, "limit": str(page)}
            q.update(filters)
            r = self.get(base, query=q)
            if r.status != 200:
                raise AssertionError(f"GET {base}: {r}")
            doc = chain.loads(r.body.decode("utf-8")) if raw_numbers else r.json
            out.extend(doc["items"])
            cursor = doc.get("next_cursor")
            if not cursor or not doc["items"]:
                return out


class Server:
    def __init__(self, binary, data_dir=None, env=None, port=None, extra_args=(), log_dir=None):
        self.binary = binary
        self.own_tmp = None
        if data_dir is None:
            self.own_tmp = tempfile.TemporaryDirectory(prefix="venture-it-")
            data_dir = os.path.join(self.own_tmp.name, "data")
        self.data_dir = data_dir
        self.log_path = os.path.join(log_dir or os.path.dirname(os.path.abspath(data_dir)),
                                     f"serve-{os.getpid()}-{id(self)}.log")
        self.port = port or free_port()
        self.env = dict(os.environ)
        self.env.setdefault("VENTURE_RATE_LIMITS_ENABLED", "false")
        self.env.pop("VENTURE_TOKEN", None)
        self.env.pop("VENTURE_ADDRESS", None)
        for name in cluster.SELECTORS:
            self.env.pop(name, None)
        # VENTURE_TEST_CLUSTER=1: the same suite on PostgreSQL + NATS + Redis (helpers/cluster.py).
        self.cluster = cluster.Slot() if cluster.ENABLED else None
        if self.cluster is not None:
            self.env.update(self.cluster.env())
        if env:
            self.env.update(env)
        self.extra_args = list(extra_args)
        self.proc = None
        self.starts = 0

    @property
    def address(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_token(self):
        with open(os.path.join(self.data_dir, "admin.token")) as f:
            return f.read().strip()

    def client(self, token="admin"):
        return Client(self.port, self.admin_token if token == "admin" else token)

    def start(self, wait=True):
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(f"\n==== start #{self.starts} ====\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--data-dir", self.data_dir, "--listen",
             f"127.0.0.1:{self.port}", *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, env=self.env, stdin=subprocess.DEVNULL)
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=READY_TIMEOUT_S):
        deadline = time.monotonic() + timeout
        c = Client(self.port, timeout=5)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"venture serve exited with {self.proc.returncode} before "
                                     f"it was ready:\n{self.log_tail()}")
            try:
                if c.get("/readyz").status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"venture serve not ready after {timeout}s:\n{self.log_tail()}")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=60):
        """SIGTERM; returns the exit code (0 expected)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = "timeout"
        self.proc = None
        return rc

    def kill(self):
        """SIGKILL, no grace: the crash test."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def restart(self):
        self.kill()
        return self.start()

    def log_tail(self, n=60):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return "(no log)"

    def cleanup(self):
        self.kill()
        if self.cluster is not None:
            self.cluster.stop()
        if self.own_tmp is not None:
            try:
                self.own_tmp.cleanup()
            except OSError:
                pass


def binary_serves_http(binary):
    """True when this build's `serve` takes --listen (the lead may still be finishing it)."""
    r = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True, timeout=60)
    return "--listen" in r.stdout + r.stderr
