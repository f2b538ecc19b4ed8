#!/usr/bin/env python3
"""Live-stream delivery latency: N concurrent SSE or WebSocket subscribers on one server.

Starts `venture serve` on a free loopback port (fresh data dir, rate limits off), opens N
subscribers to the global event stream filtered to `run.succeeded`, submits R runs of a 3-step
workflow, and measures for every delivery the time from the event's own timestamp (set by the
engine when it decided the event, before the commit) to its arrival at the subscriber. Prints one
JSON line. A benchmark: it asserts nothing beyond every subscriber getting every event.

    python3 bench/stream_latency.py build/venture --subscribers 1000 --kind sse --runs 200
"""
import argparse
import asyncio
import base64
import datetime
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_time(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


async def subscriber(port, token, kind, expected, latencies, ready):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    if kind == "sse":
        writer.write((f"GET /v1/events?type=run.succeeded HTTP/1.1\r\nHost: x\r\n"
                      f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n").encode())
    else:
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET /v1/events/ws?type=run.succeeded HTTP/1.1\r\nHost: x\r\n"
                      f"Authorization: Bearer {token}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert b" 200 " in head or b" 101 " in head, head
    ready()
    got = 0
    while got < expected:
        if kind == "sse":
            line = await reader.readline()
            if not line.startswith(b"data: "):
                continue
            payload = line[6:]
        else:
            b0, b1 = await reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(await reader.readexactly(2), "big")
            elif n == 127:
                n = int.from_bytes(await reader.readexactly(8), "big")
            payload = await reader.readexactly(n)
            if b0 & 0x0F != 1:
                continue
        now = time.time()
        # Only the event's "time" member is needed; a full json.loads per delivery would make the
        # client, not the server, the bottleneck.
        at = payload.find(b'"time":"') + 8
        latencies.append((now - parse_time(payload[at:payload.find(b'"', at)].decode())) * 1000.0)
        got += 1
    writer.close()


def request(port, token, method, path, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"null")


async def main_async(args, port, token):
    latencies = []
    ready_count = 0

    def ready():
        nonlocal ready_count
        ready_count += 1

    tasks = [asyncio.create_task(subscriber(port, token, args.kind, args.runs, latencies, ready))
             for _ in range(args.subscribers)]
    while ready_count < args.subscribers:
        await asyncio.sleep(0.05)
    loop = asyncio.get_running_loop()
    t0 = time.time()

    def submit():
        for _ in range(args.runs):
            request(port, token, "POST", "/v1/runs", {"workflow": "stream-bench"})

    await loop.run_in_executor(None, submit)
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=600)
    return latencies, time.time() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--kind", choices=["sse", "ws"], default="sse")
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    data = tempfile.mkdtemp(prefix="venture-stream-bench-")
    port = free_port()
    env = dict(os.environ, VENTURE_RATE_LIMITS_ENABLED="false", VENTURE_LOG_LEVEL="warn")
    server = subprocess.Popen([args.binary, "serve", "--data-dir", data, "--listen",
                               f"127.0.0.1:{port}"], env=env, stdout=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz")
                break
            except Exception:
                time.sleep(0.05)
        token = open(os.path.join(data, "admin.token")).read().strip()
        request(port, token, "POST", "/v1/workflows", {
            "name": "stream-bench",
            "nodes": [{"id": "a", "type": "noop"}, {"id": "b", "type": "noop", "needs": ["a"]},
                      {"id": "c", "type": "noop", "needs": ["b"]}]})
        latencies, wall = asyncio.run(main_async(args, port, token))
        latencies.sort()

        def pct(p):
            return latencies[min(len(latencies) - 1, int(round(p * (len(latencies) - 1))))]

        with open(f"/proc/{server.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        server_cpu = (int(fields[11]) + int(fields[12])) / tick
        usage = resource.getrusage(resource.RUSAGE_SELF)
        print(json.dumps({"kind": args.kind,
                          "server_cpu_s": round(server_cpu, 2),
                          "client_cpu_s": round(usage.ru_utime + usage.ru_stime, 2), "subscribers": args.subscribers, "runs": args.runs,
                          "deliveries": len(latencies), "wall_s": round(wall, 3),
                          "p50_ms": round(pct(0.5), 2), "p99_ms": round(pct(0.99), 2),
                          "max_ms": round(latencies[-1], 2)}))
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
