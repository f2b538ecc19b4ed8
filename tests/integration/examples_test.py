#!/usr/bin/env python3
"""Goal: every workflow in examples/ does, on the real server, what its comment or description
says — final status and output — so the examples a new user copies are known to work.

Method: one `venture serve` on a temporary data dir; each file is registered as it is (JSON, or
YAML sent as YAML), started (with the inputs of the table below) and awaited; the run's status,
output and a few node facts are compared with the table. A file in examples/ without an entry
here fails the test, so a new example cannot go unchecked. http.json talks to a local fixture
(helpers/fixture.py) on 127.0.0.5, which the server allow-lists (`--egress-allow 127.0.0.5/32`);
its inputs name the fixture's URL (FIXTURE_BASE below, filled in at setup).

Usage: examples_test.py BINARY SOURCE_DIR [TEST_NAME_SUBSTRING...]
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers.fixture import Fixture  # noqa: E402
from helpers.harness import check, require, run_all, test  # noqa: E402
from helpers.server import Server, binary_serves_http  # noqa: E402

BIN, ROOT = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
EXAMPLES = os.path.join(ROOT, "examples")


def nodes_are(**want):
    def f(run):
        got = {k: run["nodes"].get(k, {}).get("status") for k in want}
        return got == want, f"node statuses {got} != {want}"
    return f


def attempts_are(**want):
    def f(run):
        got = {k: run["nodes"].get(k, {}).get("attempts") for k in want}
        return got == want, f"node attempts {got} != {want}"
    return f


def error_is(code, node):
    def f(run):
        e = run.get("error") or {}
        return e.get("code") == code and e.get("node") == node, f"run error {e}"
    return f


def items_settled(node, n):
    """The foreach node ran once per item: node.expanded, then n node.item_succeeded events."""
    def f(run, events):
        mine = [e["type"] for e in events if e["node"] == node]
        got = mine.count("node.item_succeeded")
        return ("node.expanded" in mine and got == n,
                f"{node}: expected node.expanded and {n} node.item_succeeded, got {mine}")
    f.needs_events = True
    return f


def approve_as_a_reviewer(c, rid):
    """Acts before the run is awaited: an approver (not the admin, who started the run and may
    not approve it) approves the run's approval."""
    if not hasattr(c, "reviewer"):
        r = c.admin.post("/v1/tokens", {"name": "reviewer", "role": "approver"})
        require(r.status == 201, f"reviewer token: {r}")
        c.reviewer = c.admin.with_token(r.json["token"])
    deadline = time.monotonic() + 30
    while True:
        items = c.admin.get(f"/v1/approvals?run={rid}&status=pending").json["items"]
        if items or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    require(len(items) == 1, f"one pending approval in {rid}: {items}")
    r = c.reviewer.post(f"/v1/approvals/{items[0]['id']}/decide", {"decision": "approve"})
    require(r.status == 200, f"approve: {r}")
    return True, ""


approve_as_a_reviewer.before_wait = True


FIXTURE_BASE = "<the fixture's base URL>"  # replaced in inputs at run time


def with_fixture(inputs, base):
    return {k: (base if v == FIXTURE_BASE else v) for k, v in inputs.items()}


# file -> [(inputs, status, output, [extra checks])]: what each example documents.
EXPECTED = {
    "hello.json": [
        ({}, "succeeded", "HELLO, WORLD", []),
        ({"who": "ada"}, "succeeded", "HELLO, ADA", []),
    ],
    "branches.json": [
        ({"score": 70}, "succeeded", "accepted",
         [nodes_are(accept="succeeded", reject="skipped", done="succeeded")]),
        ({"score": 10}, "succeeded", "rejected",
         [nodes_are(accept="skipped", reject="succeeded", done="succeeded")]),
    ],
    "fan-out.yaml": [
        ({"items": [1, 2, 3]}, "succeeded", {"doubled": [2, 4, 6], "sides": ["left", "right"]},
         []),
        ({"items": []}, "succeeded", {"doubled": [], "sides": ["left", "right"]}, []),
    ],
    "retries.json": [
        ({}, "succeeded", {"flaky": "failed", "fatal": "failed"},
         [attempts_are(flaky=3, fatal=1),
          nodes_are(probe="succeeded", report="succeeded", fallback="skipped")]),
    ],
    "timers.yaml": [
        ({}, "succeeded", 3, [nodes_are(wait="succeeded", poll="succeeded")]),
    ],
    "join.json": [
        ({}, "succeeded", {"both": "LR", "any": "succeeded", "any_output": "LR",
                           "all": "skipped", "after_all": "skipped"},
         [nodes_are(broken="failed", any_ok="succeeded", all_ok="skipped",
                    after_all="skipped")]),
    ],
    "foreach.yaml": [
        ({}, "succeeded", {"lines": [{"line": 1, "sku": "apple", "amount": 6},
                                     {"line": 2, "sku": "pear", "amount": 5},
                                     {"line": 3, "sku": "plum", "amount": 4},
                                     {"line": 4, "sku": "fig", "amount": 6}],
                           "total": 21},
         [items_settled("price", 4), nodes_are(pace="succeeded")]),
        ({"orders": [{"sku": "kiwi", "qty": 10, "price": 1}]}, "succeeded",
         {"lines": [{"line": 1, "sku": "kiwi", "amount": 10}], "total": 10},
         [items_settled("price", 1), nodes_are(pace="succeeded")]),
    ],
    "transform.json": [
        ({}, "succeeded", {"words": 9, "distinct": 8, "top": {"word": "the", "count": 2},
                           "summary": "9 words; most common: the (2)"}, []),
        ({"text": "b a b c b a"}, "succeeded",
         {"words": 6, "distinct": 3, "top": {"word": "b", "count": 3},
          "summary": "6 words; most common: b (3)"}, []),
    ],
    "approval.json": [
        ({}, "succeeded", {"outcome": "approved", "published": ["alpha", "beta", "gamma"]},
         [approve_as_a_reviewer, nodes_are(publish="succeeded", discard="skipped")]),
        ({"timeout": "1s"}, "succeeded", {"outcome": "rejected", "published": []},
         [nodes_are(publish="skipped", discard="succeeded")]),
    ],
    "http.json": [
        ({"base": FIXTURE_BASE}, "succeeded",
         {"looked_up": "venture", "method": "POST", "published": {"q": "venture", "status": 200}},
         [nodes_are(lookup="succeeded", publish="succeeded")]),
        ({"base": FIXTURE_BASE, "q": "ada lovelace"}, "succeeded",
         {"looked_up": "ada lovelace", "method": "POST",
          "published": {"q": "ada lovelace", "status": 200}}, []),
    ],
    "failure.json": [
        ({}, "failed", None,
         [error_is("payment_declined", "charge"), attempts_are(charge=2),
          nodes_are(charge="failed", cooldown="cancelled")]),
    ],
}


class Ctx:
    pass


def setup():
    if not binary_serves_http(BIN):
        raise RuntimeError(f"{BIN} serve has no --listen: this build does not serve HTTP yet")
    c = Ctx()
    c.fixture = Fixture("127.0.0.5", origins=1).start()
    c.server = Server(BIN, extra_args=["--egress-allow", "127.0.0.5/32"]).start()
    c.admin = c.server.client()
    return c


def teardown(c):
    if c is not None:
        check(c.server.stop() == 0, "SIGTERM: exit 0")
        c.server.cleanup()
        c.fixture.stop()


@test
def every_example_has_an_expectation(c):
    files = sorted(f for f in os.listdir(EXAMPLES) if f.endswith((".json", ".yaml", ".yml")))
    check(sorted(EXPECTED) == files, f"examples/ and the table differ: only in examples/ "
                                     f"{sorted(set(files) - set(EXPECTED))}, only in the table "
                                     f"{sorted(set(EXPECTED) - set(files))}")


def register(c, name):
    path = os.path.join(EXAMPLES, name)
    with open(path, "rb") as f:
        text = f.read()
    ctype = "application/yaml" if name.endswith((".yaml", ".yml")) else "application/json"
    r = c.admin.post("/v1/workflows", raw=text, headers={"Content-Type": ctype})
    require(r.status in (200, 201), f"register {name}: {r}")
    return r.json["name"]


def run_example(c, name):
    wf = register(c, name)
    started = []
    base = c.fixture.url("").rstrip("/")
    for inputs, _, _, _ in EXPECTED[name]:
        r = c.admin.post("/v1/runs", {"workflow": wf, "inputs": with_fixture(inputs, base)})
        require(r.status == 201, f"{name}: start with {inputs}: {r}")
        started.append(r.json["id"])
    for rid, (inputs, status, output, extra) in zip(started, EXPECTED[name]):
        for f in extra:
            if getattr(f, "before_wait", False):
                f(c, rid)
        extra = [f for f in extra if not getattr(f, "before_wait", False)]
        run = c.admin.wait(rid, timeout=120)
        check(run["status"] == status, f"{name} {inputs}: status {run['status']} != {status}: "
                                       f"error {run.get('error')}")
        check(run["output"] == output, f"{name} {inputs}: output {json.dumps(run['output'])} != "
                                       f"{json.dumps(output)}")
        events = c.admin.events(rid)
        for f in extra:
            ok, what = f(run, events) if getattr(f, "needs_events", False) else f(run)
            check(ok, f"{name} {inputs}: {what}")
        settled = [n for n, v in run["nodes"].items()
                   if v["status"] not in ("succeeded", "failed", "skipped", "cancelled")]
        check(not settled, f"{name}: unsettled nodes in a finished run: {settled}")
        check(sum(1 for e in events if e["type"] in ("run.succeeded", "run.failed",
                                                     "run.cancelled")) == 1,
              f"{name}: one terminal event")


def make(name):
    def t(c):
        run_example(c, name)
    t.__name__ = "example_" + name.replace(".", "_").replace("-", "_")
    return t


for _name in EXPECTED:
    test(make(_name))


@test
def examples_validate_offline(c):
    import subprocess
    files = sorted(os.path.join(EXAMPLES, f) for f in os.listdir(EXAMPLES))
    r = subprocess.run([BIN, "workflow", "validate", *files], capture_output=True, text=True,
                       timeout=120)
    check(r.returncode == 0 and r.stdout.count(": ok") == len(files),
          f"workflow validate examples/*: {r.stdout} {r.stderr}")


@test
def audit_after_examples(c):
    r = c.admin.get("/v1/audit/verify")
    check(r.status == 200 and r.json["ok"] is True, f"audit verify: {r}")


if __name__ == "__main__":
    run_all(setup, teardown)
