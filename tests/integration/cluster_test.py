#!/usr/bin/env python3
"""Venture split into services over one PostgreSQL, NATS JetStream and Redis (issue #5).

    python3 tests/integration/cluster_test.py BINARY SOURCE_DIR [NAME...]

Five `venture serve` processes share a throw-away PostgreSQL 15, nats-server -js and redis-server
(helpers/services.py): one API process (--services api), two engine processes (--services
engine) and two worker processes (--services workers). Then:

  multi_process_failover: 1,000 mixed runs (chains, fan-out/fan-in with foreach, durable sleeps,
      retries, human approvals decided through the API, runs cancelled through the API) are
      submitted through the API; once a third of them are in, one engine process is killed with
      SIGKILL. Every run must end exactly as its workflow says; every run has one terminal event;
      no node succeeds twice; the event log shows that no run was ever driven by two engines at
      once (each append is fenced with its owner's lease epoch, kept with the event: per run the
      epochs never go back); `venture audit verify` passes on every partition.
  outages: with one all-in-one cluster process and a workload of sleeping runs, PostgreSQL,
      NATS and Redis are each stopped and restarted: /health says `degraded` while one is away,
      and every run still completes once it is back.

The services are stopped by PID at the end (also on failure). VENTURE_CLUSTER_RUNS overrides
the 1,000.
"""
import concurrent.futures
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers import chain  # noqa: E402
from helpers.harness import check, note, require, run_all, test  # noqa: E402
from helpers.server import Client, Server  # noqa: E402
from helpers.services import Services  # noqa: E402

BIN = os.path.abspath(sys.argv[1])
SRC = os.path.abspath(sys.argv[2])
RUNS = int(os.environ.get("VENTURE_CLUSTER_RUNS", "1000"))
TERMINAL = ("succeeded", "failed", "cancelled")

WORKFLOWS = {
    "c-chain": {
        "name": "c-chain",
        "inputs": {"type": "object", "properties": {"n": {"type": "integer"}}},
        "nodes": [
            {"id": "a", "type": "transform", "config": {"expr": ".inputs.n + 1"}},
            {"id": "b", "type": "transform", "needs": ["a"], "config": {"expr": ".nodes.a.output * 2"}},
            {"id": "c", "type": "noop", "needs": ["b"], "config": {"output": "${{ .nodes.b.output }}"}},
            {"id": "d", "type": "transform", "needs": ["c"], "config": {"expr": ".nodes.c.output + 3"}},
            {"id": "e", "type": "transform", "needs": ["d"], "config": {"expr": ".nodes.d.output * 10"}},
        ],
        "output": "${{ .nodes.e.output }}",
    },
    "c-fan": {
        "name": "c-fan",
        "inputs": {"type": "object", "properties": {"items": {"type": "array"}}},
        "nodes": [
            {"id": "start", "type": "noop"},
            {"id": "triple", "type": "transform", "needs": ["start"], "foreach": ".inputs.items",
             "max_parallel": 4, "config": {"expr": ".item * 3"}},
            {"id": "left", "type": "noop", "needs": ["start"], "config": {"output": 1}},
            {"id": "right", "type": "noop", "needs": ["start"], "config": {"output": 2}},
            {"id": "join", "type": "transform", "needs": ["triple", "left", "right"],
             "config": {"expr": "(.nodes.triple.output | add) + .nodes.left.output + .nodes.right.output"}},
        ],
        "output": "${{ .nodes.join.output }}",
    },
    "c-sleep": {
        "name": "c-sleep",
        "inputs": {"type": "object", "properties": {"n": {"type": "integer"}}},
        "nodes": [
            {"id": "nap", "type": "sleep", "config": {"duration": "300ms"}},
            {"id": "after", "type": "transform", "needs": ["nap"], "config": {"expr": ".inputs.n - 1"}},
        ],
        "output": "${{ .nodes.after.output }}",
    },
    "c-retry": {
        "name": "c-retry",
        "nodes": [
            {"id": "flaky", "type": "fail", "config": {"code": "upstream", "message": "503"},
             "retry": {"max_attempts": 3, "initial_interval": "50ms", "backoff_coefficient": 2},
             "on_failure": "continue"},
            {"id": "report", "type": "transform", "needs": ["flaky"], "join": "any",
             "config": {"expr": "{flaky: .nodes.flaky.status}"}},
            {"id": "probe", "type": "noop", "config": {"output": "alive"}},
        ],
        "output": "${{ .nodes.probe.output }}",
    },
    "c-gate": {
        "name": "c-gate",
        "inputs": {"type": "object", "properties": {"n": {"type": "integer"}}},
        "nodes": [
            {"id": "ask", "type": "approval",
             "config": {"title": "Go?", "approvers": {"roles": ["admin"]}, "quorum": 1,
                        "allow_self_approval": True}},
            {"id": "go", "type": "transform", "needs": ["ask"],
             "config": {"expr": "{outcome: .nodes.ask.outcome, n: .inputs.n}"}},
        ],
        "output": "${{ .nodes.go.output }}",
    },
    "c-cancel": {
        "name": "c-cancel",
        "nodes": [{"id": "long", "type": "sleep", "config": {"duration": "10m"}},
                  {"id": "never", "type": "noop", "needs": ["long"]}],
    },
}

MIX = [("c-chain", 40), ("c-fan", 20), ("c-sleep", 15), ("c-retry", 10), ("c-gate", 10),
       ("c-cancel", 5)]


def plan(i, rnd):
    """(workflow, inputs, expected status, expected output) of run i."""
    total = sum(w for _, w in MIX)
    pick = i % total
    for name, weight in MIX:
        if pick < weight:
            break
        pick -= weight
    if name == "c-chain":
        n = rnd.randint(0, 1000)
        return name, {"n": n}, "succeeded", ((n + 1) * 2 + 3) * 10
    if name == "c-fan":
        items = [rnd.randint(0, 50) for _ in range(rnd.randint(1, 6))]
        return name, {"items": items}, "succeeded", sum(x * 3 for x in items) + 3
    if name == "c-sleep":
        n = rnd.randint(0, 1000)
        return name, {"n": n}, "succeeded", n - 1
    if name == "c-retry":
        return name, {}, "succeeded", "alive"
    if name == "c-gate":
        n = rnd.randint(0, 1000)
        return name, {"n": n}, "succeeded", {"outcome": "approved", "n": n}
    return name, {}, "cancelled", None


def cluster_env(services):
    e = services.env()
    return {"VENTURE_STORE": e["VENTURE_TEST_POSTGRES_URL"], "VENTURE_BUS": e["NATS_URL"],
            "VENTURE_REDIS": e["REDIS_URL"]}


def psql(services, sql):
    port = services.ports["postgres"]
    r = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "venture", "-d",
                        "venture", "-At", "-F", "\t", "-c", sql],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise AssertionError(f"psql: {r.stderr}")
    return [line.split("\t") for line in r.stdout.splitlines() if line]


class Ctx:
    pass


def setup():
    c = Ctx()
    c.tmp = tempfile.mkdtemp(prefix="venture-cluster-test-")
    os.chmod(c.tmp, 0o755)  # PostgreSQL runs as `postgres` when we are root: it must get in
    c.services = Services(os.path.join(c.tmp, "services")).start()
    c.servers = []
    return c


def teardown(c):
    if c is None:
        return
    for s in c.servers:
        s.cleanup()
    c.services.stop()


def start(c, name, services_flag, workers=None):
    args = ["--services", services_flag]
    if workers:
        args += ["--workers", str(workers)]
    s = Server(BIN, data_dir=os.path.join(c.tmp, name), env=cluster_env(c.services),
               extra_args=args, log_dir=c.tmp)
    c.servers.append(s)
    return s.start()


def owned(server):
    """The engine's owned partitions, from its /health."""
    h = Client(server.port).get("/health").json or {}
    return (h.get("dependencies") or {}).get("engine", {}).get("owned_partitions")


@test
def multi_process_failover(c):
    api = start(c, "api", "api")
    engines = [start(c, "engine1", "engine"), start(c, "engine2", "engine")]
    start(c, "worker1", "workers", workers=4)
    start(c, "worker2", "workers", workers=4)
    a = api.client()
    for wf in WORKFLOWS.values():
        a.register(wf)
    # Both engines take a share of the partitions (the first took them all, then gave half back).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        shares = [owned(e) for e in engines]
        if all(isinstance(s, int) and s > 0 for s in shares) and sum(shares) == 16:
            break
        time.sleep(0.2)
    note(f"owned partitions per engine: {[owned(e) for e in engines]}")
    check(all(isinstance(owned(e), int) and owned(e) > 0 for e in engines),
          "both engines own partitions before the load")

    rnd = random.Random(5)
    plans = [plan(i, rnd) for i in range(RUNS)]
    runs = [None] * RUNS
    killed = threading.Event()
    lock = threading.Lock()
    submitted = [0]

    def submit(i):
        wf, inputs, _, _ = plans[i]
        client = api.client()
        for _ in range(200):
            r = client.post("/v1/runs", {"workflow": wf, "inputs": inputs},
                            headers={"Idempotency-Key": f"cluster-{i}"})
            if r.status in (200, 201):
                runs[i] = r.json["id"]
                break
            # 503 while a partition's owner has just died (the request is retried with the same
            # Idempotency-Key, so it starts at most one run).
            if r.status != 503:
                raise AssertionError(f"start {wf}: {r}")
            time.sleep(0.2)
        with lock:
            submitted[0] += 1
            if submitted[0] == RUNS // 3 and not killed.is_set():
                engines[0].kill()  # SIGKILL, mid-load
                killed.set()

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(submit, range(RUNS)))
    require(all(runs), "every run was accepted")
    require(killed.is_set(), "engine1 was killed mid-load")
    note(f"{RUNS} runs submitted in {time.monotonic() - t0:.1f}s; engine1 SIGKILLed after "
         f"{RUNS // 3}")

    # People and operators act through the API; the owning engine does it.
    cancels = [runs[i] for i in range(RUNS) if plans[i][0] == "c-cancel"]
    for rid in cancels:
        for _ in range(300):
            r = a.post(f"/v1/runs/{rid}/cancel", {"reason": "test"})
            if r.status in (200, 202, 409):
                break
            time.sleep(0.2)
        check(r.status in (200, 202), f"cancel {rid}: {r}")
    deadline = time.monotonic() + 600
    pending = set(range(RUNS))
    decided = 0
    while pending and time.monotonic() < deadline:
        r = a.get("/v1/approvals", query={"status": "pending", "limit": "500"})
        for ap in (r.json or {}).get("items", []):
            d = a.post(f"/v1/approvals/{ap['id']}/decide", {"decision": "approve"})
            if d.status in (200, 201):
                decided += 1
        for i in list(pending):
            run = a.run(runs[i])
            if run["status"] in TERMINAL:
                pending.discard(i)
        time.sleep(0.5)
    require(not pending, f"{len(pending)} runs did not finish: "
                         f"{[runs[i] for i in list(pending)[:5]]}")
    note(f"all {RUNS} runs terminal after {time.monotonic() - t0:.1f}s; {decided} approvals "
         f"decided; engine2 owns {owned(engines[1])} partitions")

    wrong = []
    for i in range(RUNS):
        run = a.run(runs[i])
        _, _, status, output = plans[i]
        if run["status"] != status or (status == "succeeded" and run.get("output") != output):
            wrong.append((runs[i], plans[i][0], run["status"], run.get("output"), output))
    check(not wrong, f"{len(wrong)} runs ended differently than planned: {wrong[:5]}")

    # The event log: one terminal event per run, no node succeeding twice, chains intact.
    events = a.events(raw_numbers=True)
    problems = chain.check_partitioned_chains(events)
    check(not problems, f"hash chains: {problems[:5]}")
    terminal = {}
    succeeded = {}
    for e in events:
        if e["type"] in ("run.succeeded", "run.failed", "run.cancelled"):
            terminal[e["run"]] = terminal.get(e["run"], 0) + 1
        if e["type"] == "node.succeeded" and e["data"].get("index") is None:
            k = (e["run"], e["node"])
            succeeded[k] = succeeded.get(k, 0) + 1
    check(all(terminal.get(r) == 1 for r in runs),
          f"one terminal event per run: {[r for r in runs if terminal.get(r) != 1][:5]}")
    twice = [k for k, n in succeeded.items() if n > 1]
    check(not twice, f"nodes that succeeded twice: {twice[:5]}")

    # No run driven by two engines at once: every append is fenced with the owner's epoch
    # (its lease revision), stored with each event; per run the epochs never go back, so no
    # older owner wrote after a newer one took over.
    rows = psql(c.services, "SELECT run, seq, epoch FROM events WHERE run <> '' ORDER BY seq")
    last = {}
    backwards = []
    epochs_per_run = {}
    for run, seq, epoch in rows:
        e = int(epoch)
        if e < last.get(run, 0):
            backwards.append((run, seq, e, last[run]))
        last[run] = max(e, last.get(run, 0))
        epochs_per_run.setdefault(run, set()).add(e)
    check(rows and not backwards, f"runs written by an older owner after a newer one: "
                                  f"{backwards[:5]}")
    moved = sum(1 for s in epochs_per_run.values() if len(s) > 1)
    note(f"{len(rows)} run events; {moved} runs changed owner mid-run (none interleaved)")
    check(moved > 0, "some runs moved from the killed engine to the other mid-run")

    v = subprocess.run([BIN, "audit", "verify", "-o", "json", "--address", api.address,
                        "--token", api.admin_token], capture_output=True, text=True, timeout=300)
    report = json.loads(v.stdout or "{}")
    check(v.returncode == 0 and report.get("ok") is True, f"audit verify: {v.stdout}{v.stderr}")
    parts = report.get("partitions") or []
    check(len(parts) == 16 and all(p.get("ok") for p in parts),
          f"every partition verifies: {parts}")
    note(f"audit verify: {report.get('events')} events, {report.get('checkpoints')} "
         f"checkpoints, {len(parts)} partitions ok")


@test
def outages(c):
    # Its own services: the processes of the test above still share theirs.
    for s in c.servers:
        s.cleanup()
    c.servers = []
    c.services.stop()
    c.services = Services(os.path.join(c.tmp, "services-outages")).start()
    srv = start(c, "solo", "all")
    a = srv.client()
    wf = WORKFLOWS["c-sleep"]
    a.register(wf)
    runs = {}
    for dep in ("postgres", "nats", "redis"):
        batch = [a.start("c-sleep", inputs={"n": i})["id"] for i in range(20)]
        for i, rid in enumerate(batch):
            runs[rid] = i - 1
        c.services.stop_one(dep)
        # /health: degraded while the dependency is away (the server stays up).
        saw = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            h = Client(srv.port, timeout=10).get("/health")
            saw = (h.status, (h.json or {}).get("status"),
                   ((h.json or {}).get("dependencies") or {}))
            if h.json and h.json.get("status") == "degraded":
                break
            time.sleep(0.2)
        check(saw and saw[0] == 200 and saw[1] == "degraded",
              f"/health while {dep} is down: {saw}")
        time.sleep(2)  # the workload goes on meeting the outage
        c.services.start_one(dep)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            h = Client(srv.port, timeout=10).get("/health")
            if h.json and h.json.get("status") == "ok":
                break
            time.sleep(0.2)
        check(h.json and h.json.get("status") == "ok", f"/health after {dep} is back: {h}")
        note(f"{dep}: degraded while down, ok again after restart")
    for rid, want in runs.items():
        run = a.wait(rid, timeout=180)
        check(run["status"] == "succeeded" and run["output"] == want,
              f"run {rid} after the outages: {run['status']} {run.get('output')}")
    note(f"{len(runs)} runs started around the outages all succeeded")
    v = subprocess.run([BIN, "audit", "verify", "--address", srv.address, "--token",
                        srv.admin_token], capture_output=True, text=True, timeout=300)
    check(v.returncode == 0, f"audit verify after the outages: {v.stdout}{v.stderr}")


if __name__ == "__main__":
    run_all(setup, teardown)
