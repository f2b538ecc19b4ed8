#!/usr/bin/env python3
"""Goal: `kill -9` at any moment loses nothing and duplicates nothing. Runs in flight when the
server dies finish after the restart with exactly the result they have without crashes; a
submission whose answer was lost and is retried with the same Idempotency-Key gives the same
run; the global event log stays one gapless, hash-chained sequence; no run ends twice and no
node settles twice.

Method:
1. Reference: a fresh server runs every (workflow, inputs) variant of the mix once, without
   crashes; its status, output, error code and node results are the expected results.
2. Crashes: on another fresh server, submit at least 200 runs concurrently (sleeps 0.2–2 s,
   retries that end failed-and-continued or failing the run, foreach of 10–50 items, transforms,
   branches and joins), each with its own Idempotency-Key; submitters retry until they get an
   answer (the server may be down). Meanwhile SIGKILL the server at random moments (0.2–1.5 s
   apart) VENTURE_CRASH_KILLS times (default 20), restarting it on the same data dir and port
   after each kill and submitting more runs in between.
3. Wait for every run to finish and compare: every run with its reference; every key again → 200
   and the same run; no run without a key (no orphan from a lost answer); the global event list
   (paged with ?after=) is seq 1..N without gaps, unique ids, each prev = the previous hash and
   each hash recomputed; per run one run.submitted, one terminal event (its last), no node or
   foreach item settled twice; `venture audit verify` exits 0.

The seed is printed; set VENTURE_CRASH_SEED to replay a failing mix and kill schedule.
Usage: crash_test.py BINARY SOURCE_DIR
"""
import collections
import http.client
import json
import os
import queue
import random
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers import chain, cluster  # noqa: E402
from helpers.harness import check, note, require, run_all, test  # noqa: E402
from helpers.server import Client, Server, binary_serves_http  # noqa: E402
from helpers.sse import SseStream  # noqa: E402

BIN, ROOT = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
SEED = int(os.environ.get("VENTURE_CRASH_SEED") or random.SystemRandom().randrange(1 << 31))
KILLS = int(os.environ.get("VENTURE_CRASH_KILLS", "20"))
INITIAL_RUNS = int(os.environ.get("VENTURE_CRASH_RUNS", "200"))
RUNS_BETWEEN_KILLS = 5
SUBMITTERS = 16
TERMINAL = ("succeeded", "failed", "cancelled")
TERMINAL_EVENTS = ("run.succeeded", "run.failed", "run.cancelled")
NODE_SETTLE = ("node.succeeded", "node.failed", "node.skipped", "node.cancelled")
ITEM_SETTLE = ("node.item_succeeded", "node.item_failed")

WORKFLOWS = [
    {"name": "crash-chain",
     "nodes": [
         {"id": "a", "type": "noop", "config": {"output": "${{ .inputs.x }}"}},
         {"id": "nap", "type": "sleep", "needs": ["a"], "config": {"duration": "${{ .inputs.d }}"}},
         {"id": "b", "type": "transform", "needs": ["nap"],
          "config": {"expr": ".nodes.a.output * 2"}},
         {"id": "c", "type": "transform", "needs": ["b"],
          "config": {"expr": "{x: .inputs.x, doubled: .nodes.b.output}"}}],
     "output": "${{ .nodes.c.output }}"},
    {"name": "crash-retry-ok",
     "nodes": [
         {"id": "flaky", "type": "fail", "on_failure": "continue",
          "config": {"code": "flaky", "message": "always", "retryable": True},
          "retry": {"max_attempts": 3, "initial_interval": "100ms", "backoff_coefficient": 2,
                    "max_interval": "400ms"}},
         {"id": "nap", "type": "sleep", "config": {"duration": "${{ .inputs.d }}"}},
         {"id": "ok", "type": "noop", "config": {"output": "${{ .inputs.x }}"}},
         {"id": "report", "type": "transform", "needs": ["flaky", "nap", "ok"], "join": "any",
          "config": {"expr": "{flaky: .nodes.flaky.status, code: .nodes.flaky.error.code, "
                             "x: .nodes.ok.output}"}},
         {"id": "after_flaky", "type": "noop", "needs": ["flaky"]}],
     "output": "${{ .nodes.report.output }}"},
    {"name": "crash-retry-fail",
     "nodes": [
         {"id": "charge", "type": "fail",
          "config": {"code": "declined", "message": "no", "retryable": True},
          "retry": {"max_attempts": 2, "initial_interval": "150ms"}},
         {"id": "after", "type": "noop", "needs": ["charge"]}]},
    {"name": "crash-foreach",
     "nodes": [
         {"id": "gen", "type": "transform", "config": {"expr": "[range(.inputs.n)]"}},
         {"id": "sq", "type": "transform", "needs": ["gen"], "foreach": ".nodes.gen.output",
          "max_parallel": 4, "config": {"expr": ".item * .item"}},
         {"id": "labels", "type": "noop", "needs": ["gen"], "foreach": ".nodes.gen.output",
          "max_parallel": 10, "config": {"output": "item-${{ .index }}"}},
         {"id": "total", "type": "transform", "needs": ["sq", "labels"],
          "config": {"expr": "{sum: (.nodes.sq.output | add), count: (.nodes.labels.output | "
                             "length), last: .nodes.labels.output[-1]}"}}],
     "output": "${{ .nodes.total.output }}"},
    {"name": "crash-transform",
     "nodes": [
         {"id": "words", "type": "transform",
          "config": {"expr": ".inputs.text | ascii_downcase | split(\" \") | "
                             "map(select(length > 0))"}},
         {"id": "counts", "type": "transform", "needs": ["words"],
          "config": {"expr": ".nodes.words.output | group_by(.) | map({word: .[0], count: "
                             "length}) | sort_by(-.count, .word)"}},
         {"id": "summary", "type": "noop", "needs": ["counts"],
          "config": {"output": "${{ .nodes.counts.output[0].word }}x${{ .nodes.counts.output[0]"
                               ".count }}"}}],
     "output": "${{ {top: .nodes.counts.output[0], summary: .nodes.summary.output} }}"},
    {"name": "crash-mixed",
     "nodes": [
         {"id": "check", "type": "transform", "config": {"expr": ".inputs.score >= 50"}},
         {"id": "hi", "type": "noop", "needs": ["check"], "if": "${{ .nodes.check.output }}",
          "config": {"output": "high"}},
         {"id": "lo", "type": "noop", "needs": ["check"],
          "if": "${{ .nodes.check.output | not }}", "config": {"output": "low"}},
         {"id": "nap", "type": "sleep", "needs": ["check"], "config": {"duration": "200ms"}},
         {"id": "broken", "type": "fail", "needs": ["check"], "on_failure": "continue",
          "config": {"code": "broken", "message": "no", "retryable": False}},
         {"id": "each", "type": "transform", "needs": ["nap"], "foreach": "[range(10)]",
          "max_parallel": 3, "config": {"expr": ".item + 1"}},
         {"id": "done", "type": "transform", "needs": ["hi", "lo", "each", "broken"],
          "join": "any",
          "config": {"expr": "{branch: (.nodes.hi.output // .nodes.lo.output), sum: "
                             "(.nodes.each.output | add), broken: .nodes.broken.status}"}}],
     "output": "${{ .nodes.done.output }}"},
]

VARIANTS = [
    ("crash-chain", {"x": 1, "d": "200ms"}),
    ("crash-chain", {"x": 2, "d": "700ms"}),
    ("crash-chain", {"x": 3, "d": "1500ms"}),
    ("crash-chain", {"x": 4, "d": "2s"}),
    ("crash-retry-ok", {"x": 1, "d": "300ms"}),
    ("crash-retry-ok", {"x": 2, "d": "1s"}),
    ("crash-retry-fail", {}),
    ("crash-foreach", {"n": 10}),
    ("crash-foreach", {"n": 25}),
    ("crash-foreach", {"n": 50}),
    ("crash-transform", {"text": "the quick brown fox jumps over the lazy dog"}),
    ("crash-transform", {"text": "b a b c b a"}),
    ("crash-mixed", {"score": 70}),
    ("crash-mixed", {"score": 10}),
]


def variant_key(workflow, inputs):
    return workflow + " " + json.dumps(inputs, sort_keys=True)


def outcome(run):
    """What must not depend on crashes: the run's result and every node's."""
    return {"status": run["status"],
            "output": run["output"],
            "error": (run.get("error") or {}).get("code") if run.get("error") else None,
            "error_node": (run.get("error") or {}).get("node") if run.get("error") else None,
            "nodes": {n: {"status": v["status"], "output": v["output"], "attempts": v["attempts"],
                          "error": (v.get("error") or {}).get("code") if v.get("error") else None}
                      for n, v in sorted(run["nodes"].items())}}


class Ctx:
    pass


def setup():
    if not binary_serves_http(BIN):
        raise RuntimeError(f"{BIN} serve has no --listen: this build does not serve HTTP yet")
    print(f"crash test: VENTURE_CRASH_SEED={SEED} VENTURE_CRASH_KILLS={KILLS} "
          f"VENTURE_CRASH_RUNS={INITIAL_RUNS}", flush=True)
    c = Ctx()
    c.rng = random.Random(SEED)
    c.reference = {}
    c.jobs = {}       # key -> (workflow, inputs)
    c.ids = {}        # key -> run id (first answer)
    c.problems = []   # submission problems (wrong answers, not transport errors)
    c.stats = collections.Counter()
    c.lock = threading.Lock()
    c.server = None
    return c


def teardown(c):
    if c is not None and c.server is not None:
        c.server.cleanup()


@test
def reference_results(c):
    srv = Server(BIN).start()
    try:
        a = srv.client()
        for wf in WORKFLOWS:
            a.register(wf)
        ids = {variant_key(w, i): a.start(w, inputs=i)["id"] for w, i in VARIANTS}
        for k, rid in ids.items():
            run = a.wait(rid, timeout=120)
            c.reference[k] = outcome(run)
        check(srv.stop() == 0, "reference server: SIGTERM exit 0")
    finally:
        srv.cleanup()
    # Sanity of the references themselves (the mix must exercise what it claims to).
    ref = c.reference
    check(ref[variant_key("crash-chain", {"x": 3, "d": "1500ms"})]["output"] ==
          {"x": 3, "doubled": 6}, f"chain reference: {ref}")
    r = ref[variant_key("crash-retry-ok", {"x": 1, "d": "300ms"})]
    check(r["status"] == "succeeded" and r["nodes"]["flaky"]["attempts"] == 3 and
          r["nodes"]["after_flaky"]["status"] == "skipped", f"retry-ok reference: {r}")
    r = ref[variant_key("crash-retry-fail", {})]
    check(r["status"] == "failed" and r["error"] == "declined", f"retry-fail reference: {r}")
    r = ref[variant_key("crash-foreach", {"n": 50})]
    check(r["output"] == {"sum": sum(i * i for i in range(50)), "count": 50, "last": "item-49"},
          f"foreach reference: {r['output']}")
    r = ref[variant_key("crash-mixed", {"score": 10})]
    check(r["output"] == {"branch": "low", "sum": 55, "broken": "failed"}, f"mixed: {r}")


def submitter(c, jobs):
    while True:
        key = jobs.get()
        if key is None:
            return
        workflow, inputs = c.jobs[key]
        body = {"workflow": workflow, "inputs": inputs}
        attempts = 0
        while True:
            attempts += 1
            try:
                r = Client(c.server.port, c.token, timeout=30).post(
                    "/v1/runs", body, headers={"Idempotency-Key": key})
            except (OSError, http.client.HTTPException):
                with c.lock:
                    c.stats["submit retries (no answer)"] += 1
                time.sleep(0.05 + 0.1 * random.random())
                continue
            if r.status in (200, 201):
                with c.lock:
                    if r.status == 200:
                        c.stats["answers 200 (existing run)"] += 1
                    prev = c.ids.get(key)
                    if prev is not None and prev != r.json["id"]:
                        c.problems.append(f"key {key}: two runs {prev} and {r.json['id']}")
                    c.ids.setdefault(key, r.json["id"])
                break
            if r.status == 503 or r.status >= 500:
                with c.lock:
                    c.stats[f"submit answers {r.status}"] += 1
                    if r.status != 503:
                        c.problems.append(f"key {key}: POST /v1/runs answered {r}")
                time.sleep(0.1)
                continue
            with c.lock:
                c.problems.append(f"key {key}: POST /v1/runs answered {r}")
            break
        jobs.task_done()


def follower(c):
    """Follows the global SSE stream across the crashes, resuming with Last-Event-ID after every
    disconnect; what it saw must be exactly the final event log (nothing streamed that was not
    durable, nothing skipped on resume)."""
    last = 0
    while not (c.follow_stop.is_set() and last >= c.follow_until):
        try:
            s = SseStream(c.server.port, "/v1/events", c.token, last_event_id=str(last),
                          timeout=5)
        except (OSError, EOFError, ValueError):
            time.sleep(0.05)
            continue
        try:
            if s.status != 200:
                time.sleep(0.1)
                continue
            c.follow_connects += 1
            for ev in s.events():
                j = ev["json"]
                c.followed.append((j["seq"], j["id"], j["hash"]))
                last = j["seq"]
                if c.follow_stop.is_set() and last >= c.follow_until:
                    break
        except (OSError, EOFError, ValueError):
            pass
        finally:
            s.close()


def fire_and_forget(c, key):
    """POST /v1/runs sent in full on a raw socket whose answer is never read."""
    workflow, inputs = c.jobs[key]
    body = json.dumps({"workflow": workflow, "inputs": inputs}).encode()
    s = socket.create_connection(("127.0.0.1", c.server.port), timeout=5)
    s.sendall(b"POST /v1/runs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Authorization: Bearer " + c.token.encode() + b"\r\nIdempotency-Key: " +
              key.encode() + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" +
              body)
    return s


def new_jobs(c, n):
    keys = []
    for _ in range(n):
        workflow, inputs = c.rng.choice(VARIANTS)
        key = f"crash-{SEED}-{len(c.jobs)}"
        c.jobs[key] = (workflow, inputs)
        keys.append(key)
    return keys


@test
def crash_and_restart(c):
    require(c.reference, "no reference results")
    c.server = Server(BIN).start()
    c.token = c.server.admin_token
    a = c.server.client()
    for wf in WORKFLOWS:
        a.register(wf)
    c.followed, c.follow_connects = [], 0
    c.follow_stop, c.follow_until = threading.Event(), float("inf")
    c.follow_thread = threading.Thread(target=follower, args=(c,), daemon=True)
    c.follow_thread.start()
    jobs = queue.Queue()
    threads = [threading.Thread(target=submitter, args=(c, jobs), daemon=True)
               for _ in range(SUBMITTERS)]
    for t in threads:
        t.start()
    for k in new_jobs(c, INITIAL_RUNS):
        jobs.put(k)
    kill_rng = random.Random(SEED ^ 0x5EED)
    start = time.monotonic()
    for i in range(KILLS):
        delay = kill_rng.uniform(0.2, 1.5)
        time.sleep(delay)
        with c.lock:
            submitted = len(c.ids)
        # Answers that will be lost: requests sent whole but never read, just before the kill.
        # The submitters retry them after the restart with the same keys.
        lost = new_jobs(c, 3)
        socks = [fire_and_forget(c, k) for k in lost]
        time.sleep(kill_rng.uniform(0.0, 0.05))
        c.server.kill()
        for s in socks:
            s.close()
        t0 = time.monotonic()
        try:
            c.server.start()
        except AssertionError as e:
            require(False, f"restart #{i + 1} failed: {e}")
        note(f"kill {i + 1}/{KILLS} after {delay:.2f}s ({submitted}/{len(c.jobs)} submitted); "
             f"ready again in {time.monotonic() - t0:.2f}s")
        for k in lost + new_jobs(c, RUNS_BETWEEN_KILLS):
            jobs.put(k)
    note(f"{KILLS} kills in {time.monotonic() - start:.1f}s; waiting for submissions")
    jobs.join()
    for _ in threads:
        jobs.put(None)
    for t in threads:
        t.join(30)
    check(not c.problems, f"wrong answers to submissions: {c.problems[:10]}")
    check(len(c.ids) == len(c.jobs), f"every job has a run: {len(c.ids)}/{len(c.jobs)}")
    note(f"submissions: {dict(c.stats)}")
    if not c.stats["answers 200 (existing run)"]:
        note("no lost answer was committed before its kill this time: the retry-onto-the-"
             "existing-run path was not exercised (try another VENTURE_CRASH_SEED)")
    # Every run finishes (bounded: generous, the mix takes seconds without crashes).
    deadline = time.monotonic() + 300
    pending = set(c.ids.values())
    while pending and time.monotonic() < deadline:
        statuses = {}
        cursor = None
        while True:
            q = {"limit": 500}
            if cursor:
                q["cursor"] = cursor
            r = a.get("/v1/runs", query=q)
            require(r.status == 200, f"list runs: {r}")
            statuses.update({i["id"]: i["status"] for i in r.json["items"]})
            cursor = r.json["next_cursor"]
            if not cursor:
                break
        pending = {rid for rid in pending if statuses.get(rid) not in TERMINAL}
        if pending:
            time.sleep(0.5)
    check(not pending, f"{len(pending)} runs did not finish within 300 s after the last kill: "
                       f"{sorted(pending)[:10]}\n{c.server.log_tail(20)}")
    c.all_runs = statuses


@test
def every_run_matches_reference(c):
    a = c.server.client()
    mismatches = []
    for key, rid in sorted(c.ids.items()):
        workflow, inputs = c.jobs[key]
        got = outcome(a.run(rid))
        want = c.reference[variant_key(workflow, inputs)]
        if got != want:
            diff = {k: (got[k], want[k]) for k in got if got[k] != want[k] and k != "nodes"}
            nodes = {n: (got["nodes"].get(n), want["nodes"].get(n))
                     for n in set(got["nodes"]) | set(want["nodes"])
                     if got["nodes"].get(n) != want["nodes"].get(n)}
            mismatches.append(f"{rid} ({workflow} {inputs}): {diff} nodes (got, want): {nodes}")
    check(not mismatches, f"{len(mismatches)}/{len(c.ids)} runs differ from the run without "
                          f"crashes:\n  " + "\n  ".join(mismatches[:15]))
    note(f"{len(c.ids) - len(mismatches)}/{len(c.ids)} runs equal their reference")


@test
def idempotency_keys_after_crashes(c):
    a = c.server.client()
    wrong = []
    for key, rid in sorted(c.ids.items()):
        workflow, inputs = c.jobs[key]
        r = a.post("/v1/runs", {"workflow": workflow, "inputs": inputs},
                   headers={"Idempotency-Key": key})
        if r.status != 200 or r.json.get("id") != rid:
            wrong.append(f"{key}: expected 200 {rid}, got {r}")
    check(not wrong, f"the same key must give the same run: {wrong[:10]}")
    crash_runs = {rid for rid, st in c.all_runs.items()}
    names = {wf["name"] for wf in WORKFLOWS}
    listed = set()
    cursor = None
    while True:
        q = {"limit": 500}
        if cursor:
            q["cursor"] = cursor
        r = a.get("/v1/runs", query=q)
        listed |= {i["id"] for i in r.json["items"] if i["workflow"] in names}
        cursor = r.json["next_cursor"]
        if not cursor:
            break
    orphans = listed - set(c.ids.values())
    check(not orphans, f"{len(orphans)} runs no key answered with (a lost answer created a "
                       f"second run?): {sorted(orphans)[:10]}")
    check(len(listed) == len(c.ids) == len(set(c.ids.values())),
          f"one run per key: {len(listed)} listed, {len(c.ids)} keys, "
          f"{len(set(c.ids.values()))} distinct ids; {len(crash_runs)} runs in the list")


@test
def global_event_log(c):
    a = c.server.client()
    events = a.events(raw_numbers=True)
    c.events = events
    require(events, "no events")
    seqs = [int(e["seq"]) for e in events]
    if cluster.ENABLED:
        # PostgreSQL hands seqs out from a sequence: one global order, but a transaction that
        # did not commit (a crash, a conflict) leaves its numbers unused.
        check(all(a < b for a, b in zip(seqs, seqs[1:])), "seq strictly increasing")
    else:
        check(seqs == list(range(1, len(seqs) + 1)),
              f"seq is 1..N without gaps or duplicates: first problem at "
              f"{next((i for i, s in enumerate(seqs) if s != i + 1), None)}")
    ids = collections.Counter(e["id"] for e in events)
    dups = [i for i, n in ids.items() if n > 1]
    check(not dups, f"duplicate event ids: {dups[:10]}")
    problems = chain.check_chain(events)
    check(not problems, f"hash chain: {problems[:10]}")
    note(f"{len(events)} events, chain verified")
    # The SSE follower saw the same log, across every crash.
    c.follow_until = int(events[-1]["seq"])
    c.follow_stop.set()
    c.follow_thread.join(120)
    check(not c.follow_thread.is_alive(), "the SSE follower caught up with the final log")
    seen = [f for f in c.followed if f[0] <= c.follow_until]
    want = [(int(e["seq"]), e["id"], e["hash"]) for e in events]
    first_diff = next((i for i, (a, b) in enumerate(zip(seen, want)) if a != b), None)
    check(seen == want, f"the global SSE stream, resumed with Last-Event-ID over "
                        f"{c.follow_connects} connections, differs from the event log: "
                        f"{len(seen)} vs {len(want)} events, first difference at index "
                        f"{first_diff}: {seen[first_diff] if first_diff is not None else None} "
                        f"vs {want[first_diff] if first_diff is not None else None}")
    note(f"SSE follower: {len(seen)} events over {c.follow_connects} connections")


@test
def per_run_events(c):
    by_run = collections.defaultdict(list)
    for e in c.events:
        if e.get("run"):
            by_run[e["run"]].append(e)
    bad = []
    for rid in sorted(set(c.ids.values())):
        evs = by_run.get(rid, [])
        types = [e["type"] for e in evs]
        if types.count("run.submitted") != 1:
            bad.append(f"{rid}: {types.count('run.submitted')} run.submitted")
        terminal = [e for e in evs if e["type"] in TERMINAL_EVENTS]
        if len(terminal) != 1:
            bad.append(f"{rid}: {len(terminal)} terminal events: {[e['type'] for e in terminal]}")
        elif terminal[0] is not evs[-1]:
            bad.append(f"{rid}: events after the terminal one: "
                       f"{[e['type'] for e in evs[evs.index(terminal[0]) + 1:]]}")
        settles = collections.Counter()
        for e in evs:
            if e["type"] in NODE_SETTLE:
                settles[(e["node"], "node", e["data"].get("iteration"))] += 1
            elif e["type"] in ITEM_SETTLE:
                settles[(e["node"], "item", e["data"].get("index"))] += 1
        twice = [k for k, n in settles.items() if n > 1]
        if twice:
            bad.append(f"{rid}: settled more than once: {twice[:5]}")
        starts = collections.Counter((e["node"], e["data"].get("index"), e["data"].get("attempt"))
                                     for e in evs if e["type"] == "node.started")
        again = [k for k, n in starts.items() if n > 1]
        if again:
            c.stats["attempts started twice (re-dispatch after a crash)"] += len(again)
    check(not bad, f"{len(bad)} run histories are wrong:\n  " + "\n  ".join(bad[:15]))
    if c.stats.get("attempts started twice (re-dispatch after a crash)"):
        note(f"node.started repeated for the same attempt: "
             f"{c.stats['attempts started twice (re-dispatch after a crash)']}")


@test
def audit_verify(c):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VENTURE_")}
    env.update({"VENTURE_ADDRESS": c.server.address, "VENTURE_TOKEN": c.server.admin_token})
    r = subprocess.run([BIN, "audit", "verify"], capture_output=True, text=True, timeout=300,
                       env=env)
    check(r.returncode == 0, f"venture audit verify: exit {r.returncode} {r.stdout} {r.stderr}")
    r = c.server.client().get("/v1/audit/verify")
    check(r.status == 200 and r.json["ok"] is True, f"/v1/audit/verify: {r}")
    rc = c.server.stop()
    check(rc == 0, f"a final SIGTERM exits 0: {rc}\n{c.server.log_tail(20)}")


if __name__ == "__main__":
    run_all(setup, teardown)
