"""The remote side of http-node tests: a local HTTP/1.1 server (threaded, keep-alive) and trap
listeners.

Fixture(host, origins=2): one handler state behind `origins` listening ports on `host` (each port
is its own origin, for cross-origin redirects). Every request is recorded (method, path, query,
lower-case headers, body, connection id). Endpoints:

  /echo                 200 JSON {method, path, query:{k:v|[v..]}, headers:{lower:v}, body, conn}
  /anything/...         httpbin's shape: {args, data, json, method, headers, url}
  /text, /bytes         text/plain "hello text"; application/octet-stream b"\\xff\\xfe\\x00\\x01"
  /status/<code>        that status, JSON {"status": code}
  /hold/<key>           holds the request until release(key) (or stop); then 200
  /huge?bytes=N[&chunked=1]   N bytes of "x" (Content-Length, or chunked)
  /redirect?to=URL[&status=302]   a redirect to URL (relative or absolute, any scheme)
  /flaky/<key>?fail=N   503 for the first N requests of key, then 200 JSON {attempts, keys}
  /ratelimit/<key>?after=S[&date=1]   429 + Retry-After (seconds, or an HTTP-date S seconds after
                        the Date header) for the first request of key, then 200
  /barrier/<key>?n=N    holds requests until N of key are in at once, then until release(key)
                        (or at once with &auto=1); then 200 {"arrived": N}
  /conn                 200 {"conn": id}: which TCP connection carried the request

Trap(port=0, hosts=("0.0.0.0", "::")): listeners that count every connection (and keep the first
bytes), on every host at one port: 0.0.0.0 catches every local IPv4 address (all of 127/8 too),
[::] (IPv6 only) every local IPv6 address.
"""
import email.utils
import json
import select
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOLD_MAX_S = 120  # a held request is let go after this, so a broken test cannot hang forever


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (ConnectionError, socket.timeout)):
            return  # a client that gave up (a timeout, a refused response): expected here
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive

    def setup(self):
        super().setup()
        self.conn_id = self.server.fixture._new_connection()

    def log_message(self, *args):  # quiet
        pass

    def _read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status, body=b"", ctype="application/json", extra=()):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self):
        f = self.server.fixture
        body = self._read_body()
        parts = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        q = {k: (v[0] if len(v) == 1 else v) for k, v in query.items()}
        rec = {"method": self.command, "path": parts.path, "query": q,
               "raw_query": parts.query,
               "headers": {k.lower(): v for k, v in self.headers.items()},
               "body": body.decode("utf-8", "replace"), "conn": self.conn_id,
               "port": self.server.server_address[1]}
        f._record(rec)
        seg = parts.path.strip("/").split("/")
        route = getattr(self, "_r_" + seg[0], None) if seg and seg[0] else None
        if route is None:
            return self._send(404, {"error": "no route", "path": parts.path})
        return route(f, rec, seg[1] if len(seg) > 1 else "", q)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    # ---- routes --------------------------------------------------------------------------

    def _r_echo(self, f, rec, _, q):
        self._send(200, {k: rec[k] for k in ("method", "path", "query", "headers", "body",
                                             "conn")})

    def _r_anything(self, f, rec, _, q):
        """httpbin's /anything shape, for examples/http.json."""
        try:
            parsed = json.loads(rec["body"]) if rec["body"] else None
        except ValueError:
            parsed = None
        self._send(200, {"args": q, "data": rec["body"], "json": parsed,
                         "method": rec["method"], "headers": rec["headers"],
                         "url": f"http://{self.headers.get('Host', '')}{self.path}"})

    def _r_text(self, f, rec, _, q):
        self._send(200, "hello text", "text/plain; charset=utf-8")

    def _r_bytes(self, f, rec, _, q):
        self._send(200, b"\xff\xfe\x00\x01", "application/octet-stream")

    def _r_status(self, f, rec, code, q):
        self._send(int(code), {"status": int(code)})

    def _r_conn(self, f, rec, _, q):
        self._send(200, {"conn": self.conn_id})

    def _r_hold(self, f, rec, key, q):
        f._event(key).wait(HOLD_MAX_S)
        try:
            self._send(200, {"released": key})
        except OSError:
            pass  # the client gave up long ago

    def _r_huge(self, f, rec, _, q):
        n = int(q.get("bytes", "0"))
        chunk = b"x" * 65536
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        try:
            if q.get("chunked"):
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                left = n
                while left > 0:
                    part = chunk[:min(left, len(chunk))]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                    left -= len(part)
                self.wfile.write(b"0\r\n\r\n")
            else:
                self.send_header("Content-Length", str(n))
                self.end_headers()
                left = n
                while left > 0:
                    part = chunk[:min(left, len(chunk))]
                    self.wfile.write(part)
                    left -= len(part)
        except OSError:
            self.close_connection = True  # the client stopped reading: expected here

    def _r_redirect(self, f, rec, _, q):
        self._send(int(q.get("status", "302")), {"to": q.get("to", "")},
                   extra=[("Location", q.get("to", "/"))])

    def _r_flaky(self, f, rec, key, q):
        with f.lock:
            f.flaky[key] = f.flaky.get(key, 0) + 1
            n = f.flaky[key]
            f.idem.setdefault(key, []).append(rec["headers"].get("idempotency-key"))
            keys = list(f.idem[key])
        if n <= int(q.get("fail", "2")):
            return self._send(503, {"attempt": n, "error": "flaky"})
        self._send(200, {"attempts": n, "keys": keys})

    def _r_ratelimit(self, f, rec, key, q):
        with f.lock:
            f.flaky[key] = f.flaky.get(key, 0) + 1
            n = f.flaky[key]
        if n > 1:
            return self._send(200, {"attempts": n})
        after = int(q.get("after", "1"))
        now = time.time()
        if q.get("date"):
            extra = [("Date", email.utils.formatdate(now, usegmt=True)),
                     ("Retry-After", email.utils.formatdate(int(now) + after, usegmt=True))]
        else:
            extra = [("Retry-After", str(after))]
        self._send(429, {"error": "slow down"}, extra=extra)

    def _r_barrier(self, f, rec, key, q):
        n = int(q.get("n", "2"))
        with f.cond:
            f.arrived[key] = f.arrived.get(key, 0) + 1
            f.cond.notify_all()
            full = f.cond.wait_for(lambda: f.arrived[key] >= n, HOLD_MAX_S)
        if full and q.get("auto"):
            f._event(key).set()
        f._event(key).wait(HOLD_MAX_S)
        self._send(200 if full else 504, {"arrived": f.arrived[key]})


class Fixture:
    def __init__(self, host="127.0.0.5", origins=2):
        self.host = host
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.requests = []
        self.connections = 0
        self.flaky = {}
        self.idem = {}
        self.arrived = {}
        self._events = {}
        self._servers = []
        self._threads = []
        for _ in range(origins):
            s = _Server((host, 0), _Handler)
            s.fixture = self
            self._servers.append(s)

    @property
    def ports(self):
        return [s.server_address[1] for s in self._servers]

    def url(self, path="/", origin=0):
        return f"http://{self.host}:{self.ports[origin]}{path}"

    def start(self):
        for s in self._servers:
            t = threading.Thread(target=s.serve_forever, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self):
        with self.lock:
            for e in self._events.values():
                e.set()
        for s in self._servers:
            s.shutdown()
            s.server_close()

    def release(self, key):
        self._event(key).set()

    def wait_arrived(self, key, n, timeout=120):
        """Blocks until n requests of barrier `key` are held at once; True if they are."""
        with self.cond:
            return self.cond.wait_for(lambda: self.arrived.get(key, 0) >= n, timeout)

    def seen(self, pred=lambda r: True):
        with self.lock:
            return [r for r in self.requests if pred(r)]

    def seen_tag(self, tag):
        """Requests whose raw query or path mentions `tag`."""
        return self.seen(lambda r: tag in r["raw_query"] or tag in r["path"])

    # ---- internals -----------------------------------------------------------------------

    def _event(self, key):
        with self.lock:
            e = self._events.get(key)
            if e is None:
                e = self._events[key] = threading.Event()
            return e

    def _new_connection(self):
        with self.lock:
            self.connections += 1
            return self.connections

    def _record(self, rec):
        with self.lock:
            self.requests.append(rec)


class Trap:
    """Counts every connection on `port` at each of `hosts` (it answers nothing)."""

    def __init__(self, port=0, hosts=("0.0.0.0", "::")):
        self.hits = []  # (host bound, peer, first bytes)
        self.lock = threading.Lock()
        self._socks = []
        self._stop = False
        for h in hosts:
            fam = socket.AF_INET6 if ":" in h else socket.AF_INET
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if fam == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((h, port))
            port = s.getsockname()[1]
            s.listen(512)
            s.settimeout(0.2)  # the accept loop checks for stop between waits
            self._socks.append((h, s))
        self.port = port
        self._threads = [threading.Thread(target=self._loop, args=(h, s), daemon=True)
                         for h, s in self._socks]
        for t in self._threads:
            t.start()

    def _take(self, host, sock):
        """Accepts one connection if one is there (within the socket's timeout)."""
        try:
            c, peer = sock.accept()
        except (socket.timeout, BlockingIOError):
            return False
        with self.lock:
            self.hits.append([host, peer, b""])
            hit = self.hits[-1]
        c.settimeout(0.5)
        try:
            hit[2] = c.recv(256)
        except OSError:
            pass
        c.close()
        return True

    def _loop(self, host, sock):
        while not self._stop:
            try:
                self._take(host, sock)
            except OSError:
                return

    def count(self):
        """Connections so far, including any still waiting in a listen queue."""
        for host, sock in self._socks:
            while select.select([sock], [], [], 0)[0] and self._take(host, sock):
                pass
        with self.lock:
            return len(self.hits)

    def stop(self):
        self._stop = True
        for t in self._threads:
            t.join()
        for _, s in self._socks:
            s.close()


if __name__ == "__main__":
    # By hand: `python3 tests/integration/helpers/fixture.py [HOST]` serves until Ctrl-C.
    fx = Fixture(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.5", origins=1).start()
    print(fx.url(""), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        fx.stop()
