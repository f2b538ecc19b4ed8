#!/usr/bin/env python3
"""Memory with runs in flight, and recovery after SIGKILL (issue #6). A benchmark: it measures and
prints one JSON object; it asserts nothing.

  python3 bench/inflight.py BINARY [--runs 10000] [--delay 20] [--connections 16]

1. `venture serve` on a fresh data directory (embedded: SQLite, fsync on every commit; rate limits
   off). Registers `inflight`: a `sleep` of DELAY seconds (a durable timer) then a `noop`.
2. Starts RUNS runs through `POST /v1/runs` (keep-alive connections, one thread each), waits until
   the engine reports all of them active (`venture_runs_active`), then reads the server's VmRSS and
   VmHWM: the memory of the embedded server with RUNS runs in flight.
3. SIGKILLs the server, waits until every run's timer has fallen due, and starts it again on the
   same directory. Measured from the new process's spawn: `ready_ms` until `/readyz` answers 200,
   `driving_ms` until the first of the in-flight runs has succeeded (its overdue timer fired, its
   `noop` ran and the run committed), `all_done_ms` until none is left running.
"""
import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, binary, data, port):
        self.binary, self.data, self.port = binary, data, port
        self.proc = None
        self.spawned = 0.0

    def start(self):
        env = dict(os.environ, VENTURE_RATE_LIMITS_ENABLED="false", VENTURE_LOG_LEVEL="warn")
        self.spawned = time.perf_counter()
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--data-dir", self.data, "--listen", f"127.0.0.1:{self.port}"],
            env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.data, "serve.log"), "a"))

    def wait_ready(self, timeout=60.0, poll=0.002):
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                conn.request("GET", "/readyz")
                if conn.getresponse().status == 200:
                    return time.perf_counter()
            except OSError:
                pass
            time.sleep(poll)
        raise RuntimeError("server not ready")

    def token(self):
        with open(os.path.join(self.data, "admin.token")) as f:
            return f.read().strip()

    def rss(self):
        out = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1]) / 1024.0
        return out


def call(port, token, method, path, body=None, conn=None):
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {token}"}
    data = None
    if body is not None:
        data = json.dumps(body)
        headers["Content-Type"] = "application/json"
    c.request(method, path, body=data, headers=headers)
    r = c.getresponse()
    payload = r.read()
    return r.status, payload


def metric(port, token, name):
    status, body = call(port, token, "GET", "/metrics")
    if status != 200:
        return None
    for line in body.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def submit(port, token, runs, connections):
    errors = []
    counter = iter(range(runs))
    lock = threading.Lock()

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            status, body = call(port, token, "POST", "/v1/runs", {"workflow": "inflight"}, conn)
            if status not in (200, 201, 202):
                errors.append((status, body[:200]))
                return

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"POST /v1/runs failed: {errors[0]}")


def any_run(port, token, status):
    code, body = call(port, token, "GET", f"/v1/runs?status={status}&limit=1")
    if code != 200:
        return False
    return len(json.loads(body).get("items", [])) > 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--runs", type=int, default=10000)
    ap.add_argument("--delay", type=int, default=20, help="seconds each run sleeps (durable timer)")
    ap.add_argument("--connections", type=int, default=16)
    args = ap.parse_args()

    data = tempfile.mkdtemp(prefix="venture-inflight-")
    port = free_port()
    server = Server(os.path.abspath(args.binary), data, port)
    server.start()
    out = {"runs": args.runs, "delay_s": args.delay}
    try:
        server.wait_ready()
        token = server.token()
        status, body = call(port, token, "POST", "/v1/workflows", {
            "name": "inflight",
            "nodes": [{"id": "wait", "type": "sleep", "config": {"duration": f"{args.delay}s"}},
                      {"id": "done", "type": "noop", "needs": ["wait"]}]})
        if status not in (200, 201):
            raise RuntimeError(f"register failed: {status} {body[:300]}")
        rss_idle = server.rss()
        t0 = time.time()
        submit(port, token, args.runs, args.connections)
        out["submit_s"] = round(time.time() - t0, 3)
        while metric(port, token, "venture_runs_active") != args.runs:
            if time.time() - t0 > args.delay * 0.8:
                raise RuntimeError("runs did not all become active before their timers fall due")
            time.sleep(0.05)
        rss = server.rss()
        out["rss_idle_mb"] = round(rss_idle["VmRSS"], 1)
        out["rss_inflight_mb"] = round(rss["VmRSS"], 1)
        out["hwm_inflight_mb"] = round(rss["VmHWM"], 1)
        if any_run(port, token, "succeeded"):
            raise RuntimeError("a run finished before the kill: raise --delay")
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()
        # Every timer falls due before the restart, so all runs are overdue when it comes back.
        time.sleep(max(0.0, t0 + args.delay + 1.0 - time.time()))
        server.start()
        ready = server.wait_ready(poll=0.001)
        out["ready_ms"] = round((ready - server.spawned) * 1000, 1)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        deadline = time.perf_counter() + 120
        while not any_run(port, token, "succeeded") and time.perf_counter() < deadline:
            time.sleep(0.001)
        out["driving_ms"] = round((time.perf_counter() - server.spawned) * 1000, 1)
        while any_run(port, token, "running") and time.perf_counter() < deadline:
            time.sleep(0.01)
        out["all_done_ms"] = round((time.perf_counter() - server.spawned) * 1000, 1)
        conn.close()
        out["rss_after_recovery_mb"] = round(server.rss()["VmRSS"], 1)
    finally:
        if server.proc and server.proc.poll() is None:
            server.proc.send_signal(signal.SIGTERM)
            try:
                server.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.proc.kill()
        subprocess.run(["rm", "-rf", data], check=False)
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
