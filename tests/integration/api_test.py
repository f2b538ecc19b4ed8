#!/usr/bin/env python3
"""Goal: the real `venture serve` answers every endpoint of SPEC §3 (approvals in detail in
approvals_test.py) as the
contract says — statuses, bodies, problem+json errors with JSON-pointer paths, streams that
resume without gaps, roles, rate limits — and never answers bad input with a 5xx.

Method: start the binary on a temporary data dir and a free port, talk to it over real sockets
(http.client, and raw sockets for what http.client will not send: SSE, WebSocket, malformed and
pipelined requests). The route table below mirrors `routes_` in src/api/app.cc; it is checked
against /openapi.json, so a route added to one and not the other fails here.

Usage: api_test.py BINARY SOURCE_DIR [TEST_NAME_SUBSTRING...]
"""
import json
import os
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers import chain, rawhttp, schema  # noqa: E402
from helpers.harness import check, require, run_all, test  # noqa: E402
from helpers.server import Client, Server, binary_serves_http  # noqa: E402
from helpers.sse import SseStream  # noqa: E402
from helpers.ws import WebSocket  # noqa: E402

BIN, ROOT = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])

# ---- the route table (mirror of App::App in src/api/app.cc) ------------------------------------
ROLES = ["admin", "operator", "approver", "viewer", "agent"]
READERS = {"admin", "operator", "approver", "viewer"}
OPS = {"admin", "operator"}
REVIEW = {"admin", "approver"}
START = OPS | {"agent"}
RUN_READERS = READERS | {"agent"}
ADMIN = {"admin"}
DECIDE = {"admin", "operator", "approver"}
NOAUTH = None
LINK = "link"  # no token: the signed link in the path is the credential

ROUTES = [
    ("GET", "/livez", NOAUTH, 200),
    ("GET", "/readyz", NOAUTH, 200),
    ("GET", "/health", NOAUTH, 200),
    ("GET", "/metrics", READERS, 200),
    ("GET", "/openapi.json", READERS, 200),
    ("POST", "/v1/workflows", OPS, 201),
    ("GET", "/v1/workflows", RUN_READERS, 200),
    ("GET", "/v1/workflows/{name}", RUN_READERS, 200),
    ("GET", "/v1/workflows/{name}/versions", RUN_READERS, 200),
    ("PUT", "/v1/workflows/{name}/tags/{tag}", OPS, 200),
    ("POST", "/v1/runs", START, 201),
    ("GET", "/v1/runs", RUN_READERS, 200),
    ("GET", "/v1/runs/{id}", RUN_READERS, 200),
    ("GET", "/v1/runs/{id}/events", RUN_READERS, 200),
    ("GET", "/v1/runs/{id}/ws", RUN_READERS, 101),
    ("GET", "/v1/events", READERS, 200),
    ("GET", "/v1/events/ws", READERS, 101),
    ("POST", "/v1/runs/{id}/cancel", OPS, 200),
    ("POST", "/v1/runs/{id}/pause", OPS, 200),
    ("POST", "/v1/runs/{id}/resume", OPS, 200),
    ("POST", "/v1/runs/{id}/replay", OPS, 201),
    ("POST", "/v1/runs/{id}/patches", START, 201),
    ("GET", "/v1/runs/{id}/patches", RUN_READERS, 200),
    ("GET", "/v1/patches/{id}", RUN_READERS, 200),
    ("POST", "/v1/patches/{id}/approve", REVIEW, 200),
    ("POST", "/v1/patches/{id}/reject", REVIEW, 200),
    ("GET", "/v1/approvals", READERS, 200),
    ("GET", "/v1/approvals/{id}", READERS, 200),
    ("POST", "/v1/approvals/{id}/decide", DECIDE, 200),
    ("GET", "/approve/{token}", LINK, 200),
    ("POST", "/approve/{token}", LINK, 200),
    ("GET", "/v1/control", READERS, 200),
    ("POST", "/v1/control/freeze", ADMIN, 200),
    ("POST", "/v1/control/unfreeze", ADMIN, 200),
    ("POST", "/v1/tokens", ADMIN, 201),
    ("GET", "/v1/tokens", ADMIN, 200),
    ("DELETE", "/v1/tokens/{id}", ADMIN, 204),
    ("GET", "/v1/audit/verify", READERS, 200),
    ("GET", "/v1/audit/runs/{id}", READERS, 200),
]

TERMINAL = ("succeeded", "failed", "cancelled")
TERMINAL_EVENTS = ("run.succeeded", "run.failed", "run.cancelled")


def load_example(name):
    with open(os.path.join(ROOT, "examples", name)) as f:
        return json.load(f)


HELLO = load_example("hello.json")


def sleeper(name, duration="30s"):
    """A long durable timer, then a node that patches can still change."""
    return {"name": name,
            "nodes": [{"id": "wait", "type": "sleep", "config": {"duration": duration}},
                      {"id": "after", "type": "noop", "needs": ["wait"],
                       "config": {"output": "old"}}],
            "output": "${{ .nodes.after.output }}"}


# About a second and a dozen events: a timer, a foreach of 6 items one at a time, a sum.
SHORT = {"name": "short",
         "nodes": [{"id": "nap", "type": "sleep", "config": {"duration": "1s"}},
                   {"id": "each", "type": "transform", "needs": ["nap"], "foreach": "[range(6)]",
                    "max_parallel": 1, "config": {"expr": ".item * 10"}},
                   {"id": "sum", "type": "transform", "needs": ["each"],
                    "config": {"expr": ".nodes.each.output | add"}}],
         "output": "${{ .nodes.sum.output }}"}

FAILING = {"name": "failing",
           "nodes": [{"id": "boom", "type": "fail",
                      "config": {"code": "boom", "message": "always", "retryable": False}}]}


class Ctx:
    pass


def setup():
    if not binary_serves_http(BIN):
        raise RuntimeError(f"{BIN} serve has no --listen: this build does not serve HTTP yet")
    c = Ctx()
    c.server = Server(BIN).start()
    c.port = c.server.port
    c.admin = c.server.client()
    c.tokens = {"admin": c.server.admin_token}
    for role in ROLES:
        r = c.admin.post("/v1/tokens", {"name": f"matrix-{role}", "role": role})
        if r.status != 201:
            raise RuntimeError(f"create {role} token: {r}")
        c.tokens[role] = r.json["token"]
    c.clients = {role: Client(c.port, tok) for role, tok in c.tokens.items()}
    c.openapi = c.admin.get("/openapi.json").json
    for wf in (HELLO, SHORT, FAILING):
        c.admin.register(wf)
    c.hello_run = c.admin.start("hello", inputs={"who": "setup"})["id"]
    c.admin.wait(c.hello_run)
    return c


def teardown(c):
    if c is not None:
        c.server.cleanup()


def conforms(c, method, pattern, resp, status=None):
    """The success body matches the schema /openapi.json documents for the route."""
    op = c.openapi["paths"][pattern][method.lower()]
    status = str(status or [s for (m, p, _, s) in ROUTES if m == method and p == pattern][0])
    content = op["responses"].get(status, {}).get("content", {})
    sch = content.get("application/json", {}).get("schema")
    if sch is None:
        return True
    problems = schema.validate(resp.json, sch, c.openapi)
    return check(not problems, f"{method} {pattern} answer does not match its OpenAPI schema: "
                               f"{problems[:5]} in {resp.text[:400]}")


def problem(resp, status, path=None, what=""):
    """resp is a problem+json with this status (and an errors[] entry at `path`)."""
    ok = check(resp.status == status, f"{what}: expected {status}, got {resp}")
    ok = check(resp.is_problem(), f"{what}: not an RFC 9457 problem+json: "
                                  f"{resp.headers.get('content-type')} {resp}") and ok
    if path is not None:
        ok = check(path in resp.error_paths(),
                   f"{what}: errors[] has no path {path}: {resp}") and ok
    return ok


def wait_node(client, run_id, node, statuses, timeout=60):
    return client.wait(run_id, statuses=("queued", "running", "waiting", "paused"),
                       timeout=timeout,
                       pred=lambda r: r["nodes"].get(node, {}).get("status") in statuses)


# ---- meta --------------------------------------------------------------------------------------

@test
def meta_endpoints_without_auth(c):
    anon = Client(c.port)
    for path in ("/livez", "/readyz"):
        r = anon.get(path)
        check(r.status == 200 and r.json == {"status": "ok"}, f"GET {path}: {r}")
    r = anon.get("/health")
    check(r.status == 200, f"GET /health: {r}")
    h = r.json or {}
    check(h.get("status") == "ok", f"health status ok: {h}")
    for k in ("timestamp", "version", "uptime_s", "dependencies"):
        check(k in h, f"health has {k}: {h}")
    check(isinstance(h.get("uptime_s"), int) and h["uptime_s"] >= 0, f"uptime_s: {h}")
    deps = h.get("dependencies", {})
    check("store" in deps and "bus" in deps, f"health dependencies name store and bus: {deps}")
    conforms(c, "GET", "/health", r)


@test
def metrics_exposition(c):
    # Traffic on templated routes first, so a run id would show if it leaked into a label.
    c.admin.get(f"/v1/runs/{c.hello_run}")
    c.admin.get(f"/v1/runs/{c.hello_run}/events")
    c.admin.get("/v1/runs/run_doesnotexist")
    r = c.admin.get("/metrics")
    require(r.status == 200, f"GET /metrics: {r}")
    check(r.headers.get("content-type", "").startswith("text/plain"), f"metrics type: {r.headers}")
    text = r.text
    check("venture_http_requests_total" in text, "metrics has venture_http_requests_total")
    check("process_resident_memory_bytes" in text, "metrics has process_resident_memory_bytes")
    leaks = []
    for line in text.splitlines():
        if line.startswith("#") or "{" not in line:
            continue
        labels = line[line.index("{"):line.rindex("}") + 1]
        if "run_0" in labels or "run_doesnotexist" in labels or c.hello_run in labels:
            leaks.append(line)
    check(not leaks, f"run ids in metric labels (unbounded cardinality): {leaks[:5]}")
    check('route="/v1/runs/{id}"' in text, "request metrics are labelled by route template")
    names = {ln.split("{")[0].split(" ")[0] for ln in text.splitlines()
             if ln and not ln.startswith("#")}
    bad = [n for n in names if not (n.startswith("venture_") or n.startswith("process_"))]
    check(not bad, f"metric names are venture_* (or process_*): {bad[:10]}")
    check(Client(c.port).get("/metrics").status == 401, "metrics needs a token")


def concrete(c, method, pattern, mutating_ids=True):
    """A request path for a route template: real ids for reads, unknown ids for writes (so the
    auth matrix has no side effects)."""
    fake = mutating_ids and method != "GET"
    path = pattern
    path = path.replace("/v1/workflows/{name}", "/v1/workflows/hello")
    path = path.replace("{tag}", "matrix")
    if pattern.startswith("/v1/runs/{id}"):
        path = path.replace("{id}", "run_doesnotexist" if fake else c.hello_run)
    if pattern.startswith("/v1/patches/{id}"):
        path = path.replace("{id}", "pat_doesnotexist")
    if pattern.startswith("/v1/approvals/{id}"):
        path = path.replace("{id}", "apr_doesnotexist")
    path = path.replace("{token}", "not.a-link")
    if pattern.startswith("/v1/tokens/{id}"):
        path = path.replace("{id}", "tok_doesnotexist")
    if pattern.startswith("/v1/audit/runs/{id}"):
        path = path.replace("{id}", c.hello_run)
    if pattern == "/v1/events":
        path += "?limit=1"
    return path


@test
def openapi_documents_exactly_the_routes(c):
    r = c.admin.get("/openapi.json")
    require(r.status == 200, f"GET /openapi.json: {r}")
    doc = r.json
    check(str(doc.get("openapi", "")).startswith("3.1"), f"OpenAPI 3.1: {doc.get('openapi')}")
    documented = set()
    for path, ops in doc.get("paths", {}).items():
        for method, op in ops.items():
            if method in ("get", "post", "put", "delete", "patch", "head", "options"):
                documented.add((method.upper(), path))
    table = {(m, p) for (m, p, _, _) in ROUTES}
    check(documented == table, f"/openapi.json paths != the route table of this test (mirror of "
                               f"app.cc): only documented {sorted(documented - table)}, only in "
                               f"table {sorted(table - documented)}")
    # Every documented operation is answered by a handler, not by the router's miss.
    for method, path in sorted(documented):
        r = c.admin.request(method, concrete(c, method, path),
                            body={} if method in ("POST", "PUT") else None)
        check(not r.is_router_miss() and r.status < 500,
              f"{method} {path} is documented but the server answers {r}")
        op = doc["paths"][path][method.lower()]
        noauth = [a for (m, p, a, _) in ROUTES if (m, p) == (method, path)]
        if noauth and noauth[0] in (NOAUTH, LINK):
            check(op.get("security") == [], f"{method} {path}: no-auth route has security []")
        elif noauth:
            check("401" in op.get("responses", {}) and "403" in op.get("responses", {}),
                  f"{method} {path}: documents 401 and 403")
    # Undocumented paths and methods: the router's 404 / 405, as problem+json.
    for method, path in (("GET", "/v1/nope"), ("GET", "/v1/runs/x/y/z"), ("GET", "/"),
                         ("POST", "/v1/workflowz"), ("GET", "/v1//runs"), ("GET", "/v2/runs")):
        r = c.admin.request(method, path)
        check(r.status == 404 and r.is_router_miss() and r.is_problem(),
              f"{method} {path}: expected the router's 404, got {r}")
    for method, path in (("DELETE", "/v1/runs"), ("PATCH", "/v1/workflows"),
                         ("PUT", "/v1/control"), ("POST", "/health")):
        r = c.admin.request(method, path)
        check(r.status == 405 and r.is_problem(), f"{method} {path}: expected 405, got {r}")


# ---- workflows ---------------------------------------------------------------------------------

@test
def workflow_register_and_read(c):
    a = c.admin
    wf = dict(HELLO, name="greeter")
    r = a.post("/v1/workflows", wf)
    require(r.status == 201, f"register: {r}")
    conforms(c, "POST", "/v1/workflows", r)
    v1 = r.json["version"]
    check(r.json["name"] == "greeter" and "latest" in r.json["tags"], f"register body: {r.json}")
    check(v1 == chain.version_of(json.loads(json.dumps(wf))),
          f"version is b2: of the canonical JSON: {v1} != {chain.version_of(wf)}")
    r = a.post("/v1/workflows", wf)
    check(r.status == 200 and r.json["version"] == v1, f"same definition again: 200, same "
                                                        f"version: {r}")
    r = a.post("/v1/workflows?tag=prod", wf)
    check(r.status == 200 and r.json["version"] == v1 and "prod" in r.json["tags"],
          f"?tag=prod on the same version: {r}")
    # YAML is accepted too (same structure).
    with open(os.path.join(ROOT, "examples", "fan-out.yaml"), "rb") as f:
        r = a.post("/v1/workflows", raw=f.read(), headers={"Content-Type": "application/yaml"})
    check(r.status in (200, 201) and r.json["name"] == "fan-out", f"register YAML: {r}")
    # Invalid definitions: 422 with a JSON pointer per problem.
    bad = {"name": "bad", "nodes": [{"id": "a", "type": "nope"}]}
    problem(a.post("/v1/workflows", bad), 422, "/nodes/0/type", "unknown node type")
    bad = {"name": "bad", "nodes": [{"id": "a", "type": "noop", "needs": ["b"]}]}
    problem(a.post("/v1/workflows", bad), 422, "/nodes/0/needs/0", "unknown need")
    bad = {"name": "bad", "nodes": [{"id": "a", "type": "noop"}], "colour": 1}
    problem(a.post("/v1/workflows", bad), 422, "/colour", "unknown field")
    bad = {"name": "bad", "nodes": [{"id": "a", "type": "noop"}, {"id": "a", "type": "noop"}]}
    problem(a.post("/v1/workflows", bad), 422, None, "duplicate ids")
    bad = {"name": "bad", "nodes": [{"id": "a", "type": "transform", "config": {"expr": ".["}}]}
    problem(a.post("/v1/workflows", bad), 422, "/nodes/0/config/expr", "bad jq")
    problem(a.post("/v1/workflows", dict(wf, name="Bad Name")), 422, "/name", "a bad name")
    big = {"name": "big", "nodes": [{"id": f"n{i}", "type": "noop"} for i in range(1001)]}
    problem(a.post("/v1/workflows", big), 422, None, "1001 nodes (bound 1000)")
    ok1000 = {"name": "big", "nodes": [{"id": f"n{i}", "type": "noop"} for i in range(1000)]}
    r = a.post("/v1/workflows", ok1000)
    check(r.status == 201, f"1000 nodes are allowed: {r}")
    problem(a.post("/v1/workflows", raw=b'{"name": "x", "nodes": [',
                   headers={"Content-Type": "application/json"}), 400, None, "truncated JSON")
    problem(a.post("/v1/workflows", raw=b"[1, 2]", headers={"Content-Type": "application/json"}),
            400, None, "an array body")
    problem(a.post("/v1/workflows", raw=json.dumps(wf).encode(),
                   headers={"Content-Type": "text/plain"}), 415, None, "text/plain body")
    # Lists and reads.
    r = a.get("/v1/workflows")
    require(r.status == 200, f"list: {r}")
    conforms(c, "GET", "/v1/workflows", r)
    names = [i["name"] for i in r.json["items"]]
    check("greeter" in names and "hello" in names, f"list names: {names}")
    item = [i for i in r.json["items"] if i["name"] == "greeter"][0]
    check(item["version"] == v1 and item["tags"].get("prod") == v1, f"list item: {item}")
    r = a.get("/v1/workflows?limit=1")
    check(r.status == 200 and len(r.json["items"]) == 1 and r.json["next_cursor"],
          f"list limit=1 has a cursor: {r}")
    seen, cursor = [], None
    while True:
        r = a.get("/v1/workflows", query={"limit": 2, **({"cursor": cursor} if cursor else {})})
        seen += [i["name"] for i in r.json["items"]]
        cursor = r.json["next_cursor"]
        if not cursor:
            break
    check(sorted(seen) == sorted(names) and len(set(seen)) == len(seen),
          f"paging workflows: {seen} vs {names}")
    r = a.get("/v1/workflows/greeter")
    check(r.status == 200 and r.json["version"] == v1 and r.json["definition"] == wf,
          f"show latest: {r}")
    conforms(c, "GET", "/v1/workflows/{name}", r)
    r = a.get("/v1/workflows/greeter?tag=prod")
    check(r.status == 200 and r.json["version"] == v1, f"show by tag: {r}")
    r = a.get("/v1/workflows/greeter", query={"version": v1})
    check(r.status == 200 and r.json["version"] == v1 and "prod" in r.json["tags"],
          f"show by version: {r}")
    problem(a.get("/v1/workflows/greeter?tag=nope"), 404, None, "unknown tag")
    problem(a.get("/v1/workflows/greeter", query={"version": "b2:" + "0" * 64}), 404, None,
            "unknown version")
    problem(a.get("/v1/workflows/nosuchworkflow"), 404, None, "unknown workflow")


@test
def workflow_versions_and_tags(c):
    a = c.admin
    v1 = a.register(dict(HELLO, name="tagged"))["version"]
    v2 = a.register(dict(HELLO, name="tagged", description="second version"))["version"]
    check(v1 != v2, "a changed definition is a new version")
    r = a.get("/v1/workflows/tagged/versions")
    require(r.status == 200, f"versions: {r}")
    conforms(c, "GET", "/v1/workflows/{name}/versions", r)
    check([i["version"] for i in r.json["items"]] == [v2, v1], f"newest first: {r.json}")
    check("latest" in r.json["items"][0]["tags"], f"latest moved to v2: {r.json}")
    r = a.get("/v1/workflows/tagged/versions?limit=1")
    check(len(r.json["items"]) == 1 and r.json["next_cursor"], f"versions limit=1: {r}")
    r2 = a.get("/v1/workflows/tagged/versions", query={"limit": 1, "cursor": r.json["next_cursor"]})
    check([i["version"] for i in r2.json["items"]] == [v1], f"versions page 2: {r2}")
    problem(a.get("/v1/workflows/nosuch/versions"), 404, None, "versions of unknown workflow")
    # Move a tag (git-like): create it, move it back, read it.
    r = a.put("/v1/workflows/tagged/tags/prod", {"version": v2})
    check(r.status == 200 and r.json == {"name": "tagged", "tag": "prod", "version": v2},
          f"PUT tag: {r}")
    conforms(c, "PUT", "/v1/workflows/{name}/tags/{tag}", r)
    r = a.put("/v1/workflows/tagged/tags/prod", {"version": v1})
    check(r.status == 200 and r.json["version"] == v1, f"move tag back: {r}")
    check(a.get("/v1/workflows/tagged?tag=prod").json["version"] == v1, "tag points at v1")
    check(a.get("/v1/workflows/tagged").json["version"] == v2, "latest still v2")
    r = a.start("tagged@prod")
    check(r["version"] == v1, f"name@tag starts the tagged version: {r}")
    problem(a.put("/v1/workflows/tagged/tags/prod", {"version": "b2:" + "1" * 64}), 404, None,
            "tag to unknown version")
    problem(a.put("/v1/workflows/nosuch/tags/prod", {"version": v1}), 404, None,
            "tag of unknown workflow")
    problem(a.put("/v1/workflows/tagged/tags/UPPER", {"version": v1}), 422, None, "bad tag name")
    problem(a.put("/v1/workflows/tagged/tags/prod", {}), 422, "/version", "tag without version")
    problem(a.put("/v1/workflows/tagged/tags/prod", {"version": 5}), 422, "/version",
            "version not a string")
    events = a.events(type="workflow.")
    check(any(e["type"] == "workflow.registered" and e["data"].get("name") == "tagged"
              for e in events), "workflow.registered events")


# ---- runs --------------------------------------------------------------------------------------

@test
def run_start_variants(c):
    a = c.admin
    reg = a.register(HELLO, tag="stable")
    r = a.post("/v1/runs", {"workflow": "hello"})
    require(r.status == 201, f"start by name: {r}")
    conforms(c, "POST", "/v1/runs", r)
    s = r.json
    check(s["id"].startswith("run_") and s["workflow"] == "hello" and
          s["version"] == reg["version"] and s["status"] in ("queued", "running", "succeeded"),
          f"start answer: {s}")
    done = a.wait(s["id"])
    check(done["status"] == "succeeded" and done["output"] == "HELLO, WORLD", f"hello run: {done}")
    for ref in ("hello@stable", "hello@latest", "hello@" + reg["version"]):
        s = a.start(ref, inputs={"who": "ada"})
        check(s["version"] == reg["version"], f"start {ref}: {s}")
        done = a.wait(s["id"])
        check(done["output"] == "HELLO, ADA", f"{ref} output: {done['output']}")
    done = a.wait(a.start("hello", inputs={"who": "zoë 🚀 \"q\" \\ a\nb\u0001"})["id"])
    check(done["output"] == "HELLO, ZOë 🚀 \"Q\" \\ A\nB\u0001",
          f"non-ASCII and control characters round-trip: {done['output']!r}")
    inline = dict(HELLO, name="inline-hello")
    r = a.post("/v1/runs", {"definition": inline, "inputs": {"who": "bob"}})
    require(r.status == 201, f"start inline: {r}")
    check(r.json["workflow"] == "inline-hello" and
          r.json["version"] == chain.version_of(json.loads(json.dumps(inline))),
          f"inline run version is its content hash: {r.json}")
    done = a.wait(r.json["id"])
    check(done["output"] == "HELLO, BOB" and done["inputs"] == {"who": "bob"}, f"inline: {done}")
    problem(a.post("/v1/runs", {"workflow": "nosuchworkflow"}), 404, None, "unknown workflow")
    problem(a.post("/v1/runs", {"workflow": "hello@nosuchtag"}), 404, None, "unknown tag")
    problem(a.post("/v1/runs", {"workflow": "hello@b2:" + "2" * 64}), 404, None,
            "unknown version")
    problem(a.post("/v1/runs", {}), 422, None, "neither workflow nor definition")
    problem(a.post("/v1/runs", {"workflow": "hello", "definition": HELLO}), 422, None, "both")
    problem(a.post("/v1/runs", {"definition": {"name": "x", "nodes": [{"id": "a",
                                                                       "type": "nope"}]}}),
            422, None, "invalid inline definition")
    # Inputs are checked against the schema.
    a.register(load_example("branches.json"))
    problem(a.post("/v1/runs", {"workflow": "branches", "inputs": {"score": "high"}}), 422, None,
            "an input of the wrong type")
    r = a.post("/v1/runs", {"workflow": "branches", "inputs": {}})
    problem(r, 422, None, "a missing required input")
    check(any(p and p.startswith("/inputs") for p in r.error_paths()),
          f"input problems are under /inputs: {r}")
    problem(a.post("/v1/runs", {"workflow": "branches", "inputs": [1]}), 422, "/inputs",
            "inputs not an object")
    for score, want in ((70, "accepted"), (10, "rejected")):
        done = a.wait(a.start("branches", inputs={"score": score})["id"])
        check(done["output"] == want, f"branches score {score}: {done['output']}")


@test
def run_idempotency(c):
    a = c.admin
    body = {"workflow": "hello", "inputs": {"who": "idem"}}
    r1 = a.post("/v1/runs", body, headers={"Idempotency-Key": "key-1"})
    require(r1.status == 201, f"first: {r1}")
    r2 = a.post("/v1/runs", {"inputs": {"who": "idem"}, "workflow": "hello"},
                headers={"Idempotency-Key": "key-1"})
    check(r2.status == 200 and r2.json["id"] == r1.json["id"],
          f"same key, same body (other key order): 200 and the same run: {r2}")
    r3 = a.post("/v1/runs", {"workflow": "hello", "inputs": {"who": "other"}},
                headers={"Idempotency-Key": "key-1"})
    problem(r3, 422, None, "same key, other body")
    r4 = a.post("/v1/runs", body, headers={"Idempotency-Key": "key-2"})
    check(r4.status == 201 and r4.json["id"] != r1.json["id"], f"other key: a new run: {r4}")
    r5 = a.post("/v1/runs", body)
    check(r5.status == 201 and r5.json["id"] not in (r1.json["id"], r4.json["id"]),
          f"no key: a new run: {r5}")
    a.wait(r1.json["id"])
    r6 = a.post("/v1/runs", body, headers={"Idempotency-Key": "key-1"})
    check(r6.status == 200 and r6.json["id"] == r1.json["id"] and r6.json["status"] == "succeeded",
          f"same key after the run finished: 200, same run, its status: {r6}")
    problem(a.post("/v1/runs", body, headers={"Idempotency-Key": "k" * 300}), 400, None,
            "an Idempotency-Key of 300 characters")
    # Concurrent submissions with one key: one run, one 201, the others 200 with its id.
    answers = []
    lock = threading.Lock()

    def submit():
        r = a.post("/v1/runs", {"workflow": "short"}, headers={"Idempotency-Key": "race"})
        with lock:
            answers.append((r.status, (r.json or {}).get("id")))
    threads = [threading.Thread(target=submit) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    statuses = sorted(s for s, _ in answers)
    check(statuses == [200] * 11 + [201] and len({i for _, i in answers}) == 1,
          f"12 concurrent starts with one key: one 201 and eleven 200, one id: {answers}")
    runs = a.get("/v1/runs", query={"workflow": "short", "limit": 500}).json["items"]
    race = [r for r in runs if r["id"] == answers[0][1]]
    check(len(race) == 1, "the raced key made one run")


@test
def run_list_filters_and_pagination(c):
    a = c.admin
    a.register({"name": "pager", "nodes": [{"id": "one", "type": "noop"}]})
    ids = [a.start("pager")["id"] for _ in range(13)]
    for i in ids:
        a.wait(i)
    seen, cursor, pages = [], None, 0
    while True:
        q = {"workflow": "pager", "limit": 5}
        if cursor:
            q["cursor"] = cursor
        r = a.get("/v1/runs", query=q)
        require(r.status == 200, f"list page: {r}")
        conforms(c, "GET", "/v1/runs", r)
        pages += 1
        check(len(r.json["items"]) <= 5, f"page size ≤ limit: {len(r.json['items'])}")
        seen += [i["id"] for i in r.json["items"]]
        check(all(i["workflow"] == "pager" for i in r.json["items"]), "workflow filter")
        cursor = r.json["next_cursor"]
        if not cursor or pages > 10:
            break
    check(len(seen) == len(set(seen)), f"no run twice across pages: {seen}")
    check(set(seen) == set(ids), f"every run once: missing {set(ids) - set(seen)}, "
                                 f"extra {set(seen) - set(ids)}")
    check(pages == 3, f"13 runs in pages of 5: 3 pages, got {pages}")
    r = a.get("/v1/runs", query={"workflow": "pager", "status": "succeeded", "limit": 500})
    check(sorted(i["id"] for i in r.json["items"]) == sorted(ids), f"status=succeeded: {r}")
    r = a.get("/v1/runs", query={"workflow": "pager", "status": "running"})
    check(r.status == 200 and r.json["items"] == [], f"status=running: none: {r}")
    r = a.get("/v1/runs", query={"status": "failed"})
    check(all(i["status"] == "failed" for i in r.json["items"]), f"status=failed filter: {r}")
    problem(a.get("/v1/runs?status=bogus"), 400, None, "unknown status filter")
    for bad in ("0", "501", "abc", "-1"):
        problem(a.get(f"/v1/runs?limit={bad}"), 400, None, f"limit={bad}")
    problem(a.get("/v1/runs?cursor=not-a-cursor"), 400, None, "a garbage cursor")


@test
def run_detail(c):
    a = c.admin
    r = a.get(f"/v1/runs/{c.hello_run}")
    require(r.status == 200, f"detail: {r}")
    conforms(c, "GET", "/v1/runs/{id}", r)
    d = r.json
    check(d["status"] == "succeeded" and d["output"] == "HELLO, SETUP" and d["error"] is None,
          f"detail: {d}")
    check(set(d["nodes"]) == {"greet", "shout"}, f"nodes: {d['nodes']}")
    for nid, n in d["nodes"].items():
        for k in ("status", "outcome", "attempts", "output", "error", "started_at", "finished_at"):
            check(k in n, f"node {nid} has {k}: {n}")
        check(n["status"] == "succeeded" and n["attempts"] >= 1 and n["finished_at"],
              f"node {nid}: {n}")
    check(d["nodes"]["greet"]["output"] == "hello, setup", f"greet output: {d['nodes']}")
    f = a.wait(a.start("failing")["id"])
    check(f["status"] == "failed" and f["error"] and f["error"].get("code") == "boom",
          f"failed run has its error: {f}")
    check(f["nodes"]["boom"]["status"] == "failed" and f["nodes"]["boom"]["attempts"] == 1,
          f"non-retryable failure: one attempt: {f['nodes']}")
    problem(a.get("/v1/runs/run_doesnotexist"), 404, None, "unknown run")
    problem(a.get("/v1/runs/" + urllib.parse.quote("../../etc/passwd", safe="")), 404, None,
            "a path-like run id")


@test
def run_controls(c):
    a = c.admin
    a.register(sleeper("sleeper"))
    rid = a.start("sleeper")["id"]
    wait_node(a, rid, "wait", ("running", "waiting"))
    r = a.post(f"/v1/runs/{rid}/resume", {})
    problem(r, 409, None, "resume a run that is not paused")
    r = a.post(f"/v1/runs/{rid}/pause", {"reason": "maintenance"})
    check(r.status == 200 and r.json == {"id": rid, "status": "paused"}, f"pause: {r}")
    conforms(c, "POST", "/v1/runs/{id}/pause", r)
    problem(a.post(f"/v1/runs/{rid}/pause", {}), 409, None, "pause a paused run")
    r = a.post(f"/v1/runs/{rid}/resume", {"reason": "done"})
    check(r.status == 200 and r.json["status"] in ("running", "waiting"), f"resume: {r}")
    r = a.post(f"/v1/runs/{rid}/cancel", {"reason": "test over"})
    check(r.status == 200 and r.json == {"id": rid, "status": "cancelled"}, f"cancel: {r}")
    run = a.run(rid)
    check(run["status"] == "cancelled", f"cancelled: {run}")
    check(run["nodes"]["wait"]["status"] == "cancelled" and
          run["nodes"]["after"]["status"] in ("cancelled", "skipped"),
          f"unsettled nodes are cancelled: {run['nodes']}")
    for verb in ("cancel", "pause", "resume"):
        problem(a.post(f"/v1/runs/{rid}/{verb}", {}), 409, None, f"{verb} a cancelled run")
        problem(a.post(f"/v1/runs/run_doesnotexist/{verb}", {}), 404, None, f"{verb} unknown run")
    problem(a.post(f"/v1/runs/{c.hello_run}/cancel", {}), 409, None, "cancel a succeeded run")
    types = [e["type"] for e in a.events(rid)]
    for t in ("run.paused", "run.resumed", "run.cancelled"):
        check(t in types, f"{t} recorded: {types}")
    reasons = {e["type"]: e["data"].get("reason") for e in a.events(rid)}
    check(reasons.get("run.paused") == "maintenance" and
          reasons.get("run.cancelled") == "test over",
          f"reasons recorded: {reasons}")


# ---- events ------------------------------------------------------------------------------------

ID_RE = r"^{}_[0-9a-f]{{8}}-[0-9a-f]{{4}}-7[0-9a-f]{{3}}-[89ab][0-9a-f]{{3}}-[0-9a-f]{{12}}$"


def is_id(value, prefix):
    import re
    return isinstance(value, str) and re.match(ID_RE.format(prefix), value) is not None


def check_run_events(events, rid, what):
    seqs = [e["seq"] for e in events]
    check(seqs == sorted(set(seqs)), f"{what}: seq strictly increasing: {seqs}")
    check(all(e["run"] == rid for e in events), f"{what}: every event is of the run")
    check(events and events[0]["type"] == "run.submitted", f"{what}: starts with run.submitted")
    terminal = [e for e in events if e["type"] in TERMINAL_EVENTS]
    check(len(terminal) == 1 and terminal[0] is events[-1], f"{what}: one terminal event, last")


@test
def events_json(c):
    a = c.admin
    rid = a.start("short")["id"]
    a.wait(rid)
    r = a.get(f"/v1/runs/{rid}/events")
    require(r.status == 200, f"events: {r}")
    conforms(c, "GET", "/v1/runs/{id}/events", r)
    events = r.json["items"]
    check(r.json["next_cursor"] is None, f"a short list has no cursor: {r.json['next_cursor']}")
    check_run_events(events, rid, "JSON events")
    check(is_id(rid, "run"), f"run ids are run_ + a UUIDv7: {rid}")
    for e in events:
        check(is_id(e["id"], "evt"), f"event ids are evt_ + a UUIDv7: {e['id']}")
        check(e["id"].startswith("evt_") and e["prev"].startswith("b2:") and
              e["hash"].startswith("b2:") and e["time"].endswith("Z"), f"envelope: {e}")
    r = a.get(f"/v1/runs/{rid}/events?limit=3")
    check(len(r.json["items"]) == 3 and r.json["next_cursor"] == str(events[2]["seq"]),
          f"limit=3: next_cursor is the last seq: {r.json}")
    paged = a.events(rid, page=3)
    check([e["seq"] for e in paged] == [e["seq"] for e in events], "paging with limit=3 and "
                                                                   "?after=next_cursor")
    r = a.get(f"/v1/runs/{rid}/events?after={events[1]['seq']}")
    check([e["seq"] for e in r.json["items"]] == [e["seq"] for e in events[2:]],
          f"?after=: {r.json}")
    r = a.get(f"/v1/runs/{rid}/events?after={events[-1]['seq']}")
    check(r.json["items"] == [], "after the last: empty")
    problem(a.get(f"/v1/runs/{rid}/events?after=-1"), 400, None, "after=-1")
    problem(a.get(f"/v1/runs/{rid}/events?after=x"), 400, None, "after=x")
    problem(a.get(f"/v1/runs/{rid}/events?limit=0"), 400, None, "limit=0")
    problem(a.get("/v1/runs/run_doesnotexist/events"), 404, None, "events of unknown run")
    nodes = {(e["type"], e["node"]) for e in events}
    for t in ("node.started", "node.waiting", "node.expanded", "node.item_succeeded",
              "node.succeeded"):
        check(any(tt == t for tt, _ in nodes), f"{t} among the events: {sorted(nodes)}")
    g = a.get("/v1/events?limit=5")
    check(g.status == 200 and len(g.json["items"]) == 5 and g.json["next_cursor"],
          f"global JSON list: {g}")


def sse_read(c, path, n=None, last_event_id=None, token=None):
    """Reads n events (or until the server ends the stream); -> (events, ended_by_server)."""
    s = SseStream(c.port, path, token or c.tokens["admin"], last_event_id)
    require(s.status == 200, f"SSE {path}: {s.status} {s.body[:300]}")
    check(s.headers.get("content-type", "").startswith("text/event-stream"),
          f"SSE content type: {s.headers}")
    out = []
    for ev in s.events():
        out.append(ev)
        if n is not None and len(out) >= n:
            break
    ended = s.closed_cleanly
    s.close()
    return out, ended


def sse_checked(evs, what):
    for ev in evs:
        j = ev["json"]
        check(j is not None and ev["id"] == str(j["seq"]) and ev["event"] == j["type"],
              f"{what}: SSE id = seq and event = type: {ev}")
    return [ev["json"] for ev in evs]


@test
def events_sse_and_resume(c):
    a = c.admin
    # A finished run: the whole history, then the server ends the stream.
    evs, ended = sse_read(c, f"/v1/runs/{c.hello_run}/events")
    full = a.events(c.hello_run)
    check(ended, "SSE of a finished run ends after the terminal event")
    check(sse_checked(evs, "finished") == full, "SSE of a finished run = its JSON list")
    # A live run: read a few events, drop the connection, resume with Last-Event-ID.
    rid = a.start("short")["id"]
    first, ended = sse_read(c, f"/v1/runs/{rid}/events", n=3)
    check(not ended and len(first) == 3, f"read 3 events then dropped: {len(first)}")
    rest, ended = sse_read(c, f"/v1/runs/{rid}/events", last_event_id=first[-1]["id"])
    check(ended, "the resumed stream ends after the terminal event")
    union = sse_checked(first, "before the drop") + sse_checked(rest, "resumed")
    seqs = [e["seq"] for e in union]
    check(len(seqs) == len(set(seqs)), f"no duplicate seq across the resume: {seqs}")
    listed = a.events(rid)
    check(seqs == [e["seq"] for e in listed], f"the union equals the JSON list: {seqs} vs "
                                              f"{[e['seq'] for e in listed]}")
    check(union[-1]["type"] == "run.succeeded", f"ends with run.succeeded: {union[-1]['type']}")
    # ?after= wins over Last-Event-ID; Last-Event-ID garbage is a 400.
    mid = listed[len(listed) // 2]["seq"]
    again, _ = sse_read(c, f"/v1/runs/{rid}/events?after={mid}", last_event_id="1")
    check([e["json"]["seq"] for e in again] == [e["seq"] for e in listed if e["seq"] > mid],
          "SSE from ?after=")
    s = SseStream(c.port, f"/v1/runs/{rid}/events", c.tokens["admin"], last_event_id="abc")
    check(s.status == 400, f"Last-Event-ID: abc → 400, got {s.status}")
    s.close()
    s = SseStream(c.port, "/v1/runs/run_doesnotexist/events", c.tokens["admin"])
    check(s.status == 404, f"SSE of unknown run → 404, got {s.status}")
    s.close()
    s = SseStream(c.port, f"/v1/runs/{rid}/events", None)
    check(s.status == 401, f"SSE without token → 401, got {s.status}")
    s.close()


def ws_read(c, path, n=None, token=None):
    ws = WebSocket(c.port, path, token or c.tokens["admin"])
    require(ws.status == 101, f"WebSocket {path}: {ws.status} {ws.body[:300]}")
    out = []
    for m in ws.messages():
        out.append(json.loads(m))
        if n is not None and len(out) >= n:
            break
    ended = ws.closed
    code = ws.close_code
    ws.close()
    return out, ended, code


@test
def events_websocket_and_resume(c):
    a = c.admin
    full = a.events(c.hello_run)
    evs, ended, code = ws_read(c, f"/v1/runs/{c.hello_run}/ws")
    check(ended and code == 1000, f"WS of a finished run closes normally: {ended} {code}")
    check(evs == full, "WS of a finished run = its JSON list")
    rid = a.start("short")["id"]
    first, ended, _ = ws_read(c, f"/v1/runs/{rid}/ws?after=0", n=4)
    check(len(first) == 4, f"4 messages then dropped: {len(first)}")
    rest, ended, code = ws_read(c, f"/v1/runs/{rid}/ws?after={first[-1]['seq']}")
    check(ended and code == 1000, f"resumed WS closes after the terminal event: {code}")
    seqs = [e["seq"] for e in first + rest]
    listed = a.events(rid)
    check(len(seqs) == len(set(seqs)), f"no duplicate seq: {seqs}")
    check(seqs == [e["seq"] for e in listed], f"union = JSON list: {seqs}")
    ws = WebSocket(c.port, f"/v1/runs/{rid}/ws", None)
    check(ws.status == 401, f"WS without token → 401, got {ws.status}")
    ws.close()
    ws = WebSocket(c.port, "/v1/runs/run_doesnotexist/ws", c.tokens["admin"])
    check(ws.status == 404, f"WS of unknown run → 404, got {ws.status}")
    ws.close()
    r = a.get(f"/v1/runs/{rid}/ws")
    problem(r, 400, None, "a plain GET on a WebSocket route")
    ws = WebSocket(c.port, f"/v1/runs/{rid}/ws?after=x", c.tokens["admin"])
    check(ws.status == 400, f"WS ?after=x → 400 before the upgrade, got {ws.status}")
    ws.close()


@test
def global_event_streams(c):
    a = c.admin
    run_events = a.events(c.hello_run)
    node_events = [e for e in run_events if e["type"].startswith("node.")]
    # Backlog with filters: ?type= prefix and ?run=.
    evs, _ = sse_read(c, f"/v1/events?after=0&type=node.&run={c.hello_run}", n=len(node_events))
    got = sse_checked(evs, "global SSE")
    check(got == node_events, f"global SSE ?type=node.&run=: {[e['type'] for e in got]}")
    # Live: subscribe from now, then start a run; every run.* event arrives, in order.
    tail = a.events()[-1]["seq"]
    s = SseStream(c.port, f"/v1/events?type=run.&after={tail}", c.tokens["admin"])
    require(s.status == 200, f"global SSE: {s.status}")
    rid = a.start("hello", inputs={"who": "live"})["id"]
    seen = []
    for ev in s.events():
        j = ev["json"]
        check(j["type"].startswith("run."), f"?type=run. filter: {j['type']}")
        if j["run"] == rid:
            seen.append(j["type"])
            if j["type"] in TERMINAL_EVENTS:
                break
    s.close()
    check(seen and seen[0] == "run.submitted" and seen[-1] == "run.succeeded",
          f"live global SSE saw the run: {seen}")
    # Global WebSocket, same filters.
    ws = WebSocket(c.port, f"/v1/events/ws?after=0&run={rid}", c.tokens["admin"])
    require(ws.status == 101, f"global WS: {ws.status} {ws.body}")
    got = []
    for m in ws.messages():
        got.append(json.loads(m))
        if got[-1]["type"] in TERMINAL_EVENTS:
            break
    ws.close()
    check([e["seq"] for e in got] == [e["seq"] for e in a.events(rid)],
          "global WS ?run= = the run's JSON list")
    ws = WebSocket(c.port, "/v1/events/ws?type=run.succeeded&after=0", c.tokens["admin"])
    m = json.loads(ws.recv())
    ws.close()
    check(m["type"] == "run.succeeded", f"global WS ?type=: {m['type']}")
    r = a.get("/v1/events", query={"type": "run.succeeded", "run": rid})
    check(len(r.json["items"]) == 1, f"global JSON filters: {r.json}")
    s = SseStream(c.port, "/v1/events", c.tokens["agent"])
    check(s.status == 403, f"global SSE as agent → 403 (readers only): {s.status}")
    s.close()


# ---- patches -----------------------------------------------------------------------------------

@test
def patches_apply_and_refuse_settled(c):
    a = c.admin
    a.register(sleeper("patchable"))
    rid = a.start("patchable")["id"]
    before = wait_node(a, rid, "wait", ("running", "waiting"))
    ops = [{"op": "replace", "path": "/nodes/1/config/output", "value": "new"},
           {"op": "add", "path": "/nodes/-",
            "value": {"id": "extra", "type": "noop", "config": {"output": "added"}}}]
    r = a.post(f"/v1/runs/{rid}/patches", {"ops": ops, "reason": "try it"})
    require(r.status == 201, f"propose: {r}")
    conforms(c, "POST", "/v1/runs/{id}/patches", r)
    check(r.json["status"] == "applied" and r.json["id"].startswith("pat_") and
          str(r.json.get("version", "")).startswith("b2:") and
          r.json["version"] != before["version"], f"applied with a new version: {r.json}")
    pid = r.json["id"]
    check(is_id(pid, "pat"), f"patch ids are pat_ + a UUIDv7: {pid}")
    # The new graph is live: the added node runs at once while the timer still waits.
    run = a.wait(rid, statuses=("running", "waiting"),
                 pred=lambda x: x["nodes"].get("extra", {}).get("status") == "succeeded")
    check(run["nodes"]["extra"]["output"] == "added", f"patched node ran: {run['nodes']}")
    check(run["version"] == r.json["version"], f"the run has the patched version: {run}")
    types = [e["type"] for e in a.events(rid)]
    for t in ("patch.proposed", "patch.applied", "run.patched"):
        check(t in types, f"{t} recorded: {types}")
    # Touching the started timer: 422 naming it.
    r = a.post(f"/v1/runs/{rid}/patches",
               {"ops": [{"op": "replace", "path": "/nodes/0/config/duration", "value": "1s"}]})
    problem(r, 422, "/nodes/0", "patching a started node")
    r = a.post(f"/v1/runs/{rid}/patches", {"ops": [{"op": "remove", "path": "/nodes/2"}]})
    problem(r, 422, None, "removing a settled node")
    r = a.post(f"/v1/runs/{rid}/patches",
               {"ops": [{"op": "replace", "path": "/nodes/1/type", "value": "nope"}]})
    problem(r, 422, None, "a patch that makes the definition invalid")
    problem(a.post(f"/v1/runs/{rid}/patches",
                   {"ops": [{"op": "test", "path": "/name", "value": "wrong"},
                            {"op": "remove", "path": "/output"}]}), 422, None,
            "a patch whose test op fails")
    problem(a.post(f"/v1/runs/{rid}/patches",
                   {"ops": [{"op": "replace", "path": "/name", "value": "renamed"}]}), 422,
            None, "a patch that renames the workflow")
    problem(a.post(f"/v1/runs/{rid}/patches", {"ops": "x"}), 422, "/ops", "ops not an array")
    problem(a.post(f"/v1/runs/{rid}/patches", {}), 422, "/ops", "no ops")
    problem(a.post(f"/v1/runs/{rid}/patches", {"ops": [{"op": "bogus", "path": "/x"}]}), 422,
            None, "an unknown op")
    problem(a.post("/v1/runs/run_doesnotexist/patches", {"ops": ops}), 404, None,
            "patch an unknown run")
    r = a.get(f"/v1/patches/{pid}")
    check(r.status == 200 and r.json["status"] == "applied" and r.json["run"] == rid and
          r.json["ops"] == ops and r.json["reason"] == "try it", f"GET patch: {r}")
    conforms(c, "GET", "/v1/patches/{id}", r)
    r = a.get(f"/v1/runs/{rid}/patches")
    check(r.status == 200 and [p["id"] for p in r.json["items"]] == [pid],
          f"run's patches: only the applied one (invalid proposals write nothing): {r}")
    conforms(c, "GET", "/v1/runs/{id}/patches", r)
    problem(a.get("/v1/patches/pat_doesnotexist"), 404, None, "unknown patch")
    a.post(f"/v1/runs/{rid}/cancel", {})
    problem(a.post(f"/v1/runs/{rid}/patches", {"ops": ops}), 409, None, "patch a cancelled run")


@test
def patch_review_flow(c):
    a, agent, approver = c.admin, c.clients["agent"], c.clients["approver"]
    a.register(sleeper("reviewed"))
    rid = a.start("reviewed")["id"]
    wait_node(a, rid, "wait", ("running", "waiting"))

    def add(node_id):
        return {"ops": [{"op": "add", "path": "/nodes/-",
                         "value": {"id": node_id, "type": "noop", "config": {"output": node_id}}}],
                "reason": f"add {node_id}"}
    r = agent.post(f"/v1/runs/{rid}/patches", add("one"))
    require(r.status == 201, f"agent proposes: {r}")
    check(r.json["status"] == "pending_approval" and r.json.get("version") is None,
          f"an agent's patch waits for review: {r.json}")
    p1 = r.json["id"]
    check("one" not in a.run(rid)["nodes"], "a pending patch leaves the run untouched")
    r = approver.post(f"/v1/patches/{p1}/approve", {"reason": "looks fine"})
    require(r.status == 200, f"approve: {r}")
    conforms(c, "POST", "/v1/patches/{id}/approve", r)
    check(r.json["status"] == "applied" and str(r.json["version"]).startswith("b2:") and
          r.json["decided_by"] == "matrix-approver" and r.json["proposed_by"] == "matrix-agent",
          f"approved: {r.json}")
    a.wait(rid, statuses=("running", "waiting"),
           pred=lambda x: x["nodes"].get("one", {}).get("status") == "succeeded")
    problem(approver.post(f"/v1/patches/{p1}/approve", {}), 409, None, "approve twice")
    problem(approver.post(f"/v1/patches/{p1}/reject", {}), 409, None, "reject an applied patch")
    r = agent.post(f"/v1/runs/{rid}/patches", add("two"))
    require(r.status == 201 and r.json["status"] == "pending_approval", f"second: {r}")
    p2 = r.json["id"]
    r = approver.post(f"/v1/patches/{p2}/reject", {"reason": "no"})
    check(r.status == 200 and r.json["status"] == "rejected" and
          r.json["decision_reason"] == "no", f"reject: {r}")
    problem(approver.post(f"/v1/patches/{p2}/approve", {}), 409, None, "approve a rejected patch")
    check("two" not in a.run(rid)["nodes"], "a rejected patch changes nothing")
    # An explicit review request from an operator waits too.
    r = a.post(f"/v1/runs/{rid}/patches", dict(add("three"), review=True))
    check(r.status == 201 and r.json["status"] == "pending_approval", f"review: true: {r}")
    p3 = r.json["id"]
    r = c.clients["viewer"].post(f"/v1/runs/{rid}/patches", add("four"))
    check(r.status == 403, f"a viewer may not propose: {r}")
    r = agent.post(f"/v1/patches/{p3}/approve", {})
    check(r.status == 403, f"an agent may not approve: {r}")
    r = a.get(f"/v1/runs/{rid}/patches")
    got = {p["id"]: p["status"] for p in r.json["items"]}
    check(got == {p1: "applied", p2: "rejected", p3: "pending_approval"}, f"run patches: {got}")
    a.post(f"/v1/runs/{rid}/cancel", {})
    problem(approver.post(f"/v1/patches/{p3}/approve", {}), 409, None,
            "approve a pending patch of a finished run")
    types = [e["type"] for e in a.events(rid)]
    check(types.count("patch.proposed") == 3 and types.count("patch.applied") == 1 and
          types.count("patch.rejected") == 1, f"patch events: {types}")


# ---- replay, control ---------------------------------------------------------------------------

@test
def replay(c):
    a = c.admin
    r = a.post(f"/v1/runs/{c.hello_run}/replay", {"from_node": "shout"})
    require(r.status == 201, f"replay: {r}")
    conforms(c, "POST", "/v1/runs/{id}/replay", r)
    check(r.json["replay_of"] == c.hello_run and r.json["id"] != c.hello_run, f"body: {r.json}")
    done = a.wait(r.json["id"])
    check(done["status"] == "succeeded" and done["output"] == "HELLO, SETUP" and
          done["replay_of"] == c.hello_run and done["inputs"] == {"who": "setup"},
          f"replayed run: {done}")
    greet = [e for e in a.events(r.json["id"]) if e["node"] == "greet"]
    check([e["type"] for e in greet] == ["node.succeeded"] and greet[0]["data"].get("replayed"),
          f"upstream node reused, not run: {greet}")
    shout = [e["type"] for e in a.events(r.json["id"]) if e["node"] == "shout"]
    check("node.started" in shout, f"from_node runs again: {shout}")
    problem(a.post(f"/v1/runs/{c.hello_run}/replay", {"from_node": "nope"}), 422, "/from_node",
            "unknown node")
    problem(a.post(f"/v1/runs/{c.hello_run}/replay", {}), 422, "/from_node", "no from_node")
    problem(a.post("/v1/runs/run_doesnotexist/replay", {"from_node": "shout"}), 404, None,
            "replay unknown run")


@test
def freeze_with_a_live_workload(c):
    """While frozen no task is dispatched and no run starts, with 50 runs in flight; on unfreeze
    every run continues and succeeds (proven from the global event log)."""
    a = c.admin
    a.register({"name": "freeze-live", "nodes": [
        {"id": f"s{i}", "type": "sleep" if i % 2 else "noop",
         **({"config": {"duration": "100ms"}} if i % 2 else {}),
         **({"needs": [f"s{i - 1}"]} if i else {})} for i in range(8)]})
    runs = [a.start("freeze-live")["id"] for _ in range(50)]
    try:
        r = a.post("/v1/control/freeze", {"reason": "live workload"})
        require(r.status == 200, f"freeze: {r}")
        late = [a.start("freeze-live")["id"] for _ in range(5)]  # submitted while frozen
        time.sleep(1.5)  # sleeps fall due and results arrive meanwhile: nothing may dispatch
        frozen_at = [e for e in a.events(type="control.") if e["type"] == "control.frozen"][-1]
        after = a.events(after=frozen_at["seq"])
        started = [e for e in after if e["type"] in ("node.started", "run.started")]
        check(not started, f"no dispatch and no run start while frozen: {started[:3]}")
        in_flight = [a.run(x)["status"] for x in runs]
        check(any(st not in ("succeeded", "failed", "cancelled") for st in in_flight),
              f"the workload was live when frozen: {in_flight}")
        check(all(a.run(x)["status"] == "queued" for x in late),
              "runs submitted while frozen stay queued")
    finally:
        r = a.post("/v1/control/unfreeze", {})
    check(r.status == 200, f"unfreeze: {r}")
    for x in runs + late:
        done = a.wait(x)
        check(done["status"] == "succeeded", f"{x} continues after unfreeze: {done['status']}")


@test
def freeze_and_unfreeze(c):
    a = c.admin
    problem(a.post("/v1/control/freeze", {}), 422, "/reason", "freeze without a reason")
    r = a.get("/v1/control")
    check(r.status == 200 and r.json["frozen"] is False, f"not frozen: {r}")
    try:
        r = a.post("/v1/control/freeze", {"reason": "incident 42"})
        require(r.status == 200, f"freeze: {r}")
        conforms(c, "POST", "/v1/control/freeze", r)
        r = c.clients["viewer"].get("/v1/control")
        check(r.json["frozen"] is True and r.json["reason"] == "incident 42" and r.json["since"],
              f"GET /v1/control while frozen: {r}")
        s = a.start("hello", inputs={"who": "frozen"})
        check(s["status"] == "queued", f"a run started while frozen is queued: {s}")
        time.sleep(1.0)  # give a (wrong) dispatch the chance to happen
        run = a.run(s["id"])
        types = [e["type"] for e in a.events(s["id"])]
        check(run["status"] == "queued" and "node.started" not in types and
              "run.started" not in types, f"nothing starts while frozen: {run['status']} {types}")
        q2 = a.start("hello", inputs={"who": "never"})["id"]
        r = a.post(f"/v1/runs/{q2}/cancel", {"reason": "not needed"})
        check(r.status == 200 and r.json["status"] == "cancelled",
              f"a queued run can be cancelled while frozen: {r}")
        problem(a.post("/v1/control/freeze", {"reason": 5}), 422, "/reason", "reason: 5")
    finally:
        r = a.post("/v1/control/unfreeze", {})
    check(r.status == 200 and r.json["frozen"] is False, f"unfreeze: {r}")
    done = a.wait(s["id"])
    check(done["status"] == "succeeded" and done["output"] == "HELLO, FROZEN",
          f"the queued run completes after unfreeze: {done}")
    ctl = [e["type"] for e in a.events(type="control.")]
    check(ctl[-2:] == ["control.frozen", "control.unfrozen"], f"control events: {ctl}")


# ---- tokens, audit -----------------------------------------------------------------------------

@test
def tokens_lifecycle(c):
    srv = Server(BIN).start()
    try:
        a = srv.client()
        r = a.post("/v1/tokens", {"name": "ci", "role": "operator"})
        require(r.status == 201, f"create: {r}")
        check(r.json["token"].startswith("vt_") and r.json["id"].startswith("tok_") and
              r.json["role"] == "operator" and r.json["name"] == "ci", f"created: {r.json}")
        secret, tid = r.json["token"], r.json["id"]
        check(is_id(tid, "tok"), f"token ids are tok_ + a UUIDv7: {tid}")
        r = a.get("/v1/tokens")
        require(r.status == 200, f"list: {r}")
        conforms(c, "GET", "/v1/tokens", r)
        check(secret not in r.text and srv.admin_token not in r.text and
              all("token" not in i and "hash" not in i for i in r.json["items"]),
              f"the list shows no secret: {r.text[:500]}")
        check({i["name"] for i in r.json["items"]} >= {"ci", "admin"}, f"list: {r.json}")
        ci = Client(srv.port, secret)
        check(ci.get("/v1/runs").status == 200, "the new token works")
        check(ci.get("/v1/tokens").status == 403, "an operator may not list tokens")
        r = a.delete(f"/v1/tokens/{tid}")
        check(r.status == 204 and r.body == b"", f"revoke: 204, no body: {r}")
        r = ci.get("/v1/runs")
        problem(r, 401, None, "a revoked token")
        check(r.headers.get("www-authenticate", "").startswith("Bearer"), "WWW-Authenticate")
        revoked = [i for i in a.get("/v1/tokens").json["items"] if i["id"] == tid]
        check(revoked and revoked[0]["revoked"] is True, f"listed as revoked: {revoked}")
        problem(a.delete("/v1/tokens/tok_doesnotexist"), 404, None, "revoke unknown token")
        problem(a.post("/v1/tokens", {"name": "x", "role": "root"}), 422, "/role", "bad role")
        problem(a.post("/v1/tokens", {"role": "viewer"}), 422, "/name", "no name")
        admins = [i for i in a.get("/v1/tokens").json["items"]
                  if i["role"] == "admin" and not i["revoked"]]
        check(len(admins) == 1, f"one admin token on a fresh server: {admins}")
        problem(a.delete(f"/v1/tokens/{admins[0]['id']}"), 409, None, "revoke the last admin")
        r = a.post("/v1/tokens", {"name": "admin2", "role": "admin"})
        a2 = Client(srv.port, r.json["token"])
        check(a2.delete(f"/v1/tokens/{admins[0]['id']}").status == 204,
              "with a second admin the first may go")
        check(a.get("/v1/runs").status == 401, "the revoked admin token gets 401")
        problem(a2.delete(f"/v1/tokens/{r.json['id']}"), 409, None, "revoke the last admin (self)")
        types = [e["type"] for e in a2.events()]
        check("token.created" in types and "token.revoked" in types, f"token events: {types}")
        rc = srv.stop()
        check(rc == 0, f"SIGTERM: exit 0, got {rc}")
        # Tokens survive a restart; the revoked ones stay revoked.
        srv.start()
        check(a2.get("/v1/runs").status == 200 and ci.get("/v1/runs").status == 401,
              "tokens and revocations survive a restart")
        check(not os.path.exists(os.path.join(srv.data_dir, "admin.token")) or
              open(os.path.join(srv.data_dir, "admin.token")).read().strip() ==
              a.token, "admin.token is not rewritten on restart")
        mode = os.stat(os.path.join(srv.data_dir, "admin.token")).st_mode & 0o777
        check(mode == 0o600, f"admin.token mode 0600: {oct(mode)}")
    finally:
        srv.cleanup()


@test
def audit(c):
    a = c.admin
    r = a.get("/v1/audit/verify")
    require(r.status == 200, f"verify: {r}")
    conforms(c, "GET", "/v1/audit/verify", r)
    check(r.json["ok"] is True and r.json["events"] > 0 and r.json["first_bad_seq"] is None,
          f"verify ok: {r.json}")
    r = a.get(f"/v1/audit/runs/{c.hello_run}")
    require(r.status == 200, f"trail: {r}")
    conforms(c, "GET", "/v1/audit/runs/{id}", r)
    trail = chain.loads(r.text)["items"]
    check(r.json["run"] == c.hello_run, f"trail run: {r.json['run']}")
    check([e["seq"] for e in trail] == [e["seq"] for e in a.events(c.hello_run)],
          "the trail is the run's events")
    for e in trail:
        check(e.get("prev", "").startswith("b2:") and e.get("hash", "").startswith("b2:"),
              f"trail has prev/hash: {e}")
        check(chain.event_hash(e) == e["hash"], f"hash recomputes (BLAKE2b(prev ‖ canonical)) at "
                                                f"seq {e['seq']}: {chain.event_hash(e)} != "
                                                f"{e['hash']}")
    problem(a.get("/v1/audit/runs/run_doesnotexist"), 404, None, "trail of unknown run")
    events = a.events(raw_numbers=True)
    check(events[0]["seq"] == 1, f"the global list starts at seq 1: {events[0]['seq']}")
    problems = chain.check_chain(events)
    check(not problems, f"global hash chain: {problems[:5]}")


# ---- the auth matrix ---------------------------------------------------------------------------

@test
def auth_matrix(c):
    # The table cannot drift from the server: openapi_documents_exactly_the_routes checks the
    # (method, path) set; here the security of each route too.
    doc = c.openapi
    table = {(m, p) for (m, p, _, _) in ROUTES}
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    require(table == documented, f"route table != /openapi.json: {table ^ documented}")
    bad_tokens = ["vt_" + "0" * 64, "garbage", c.tokens["admin"] + "x"]
    for method, pattern, roles, _ in ROUTES:
        path = concrete(c, method, pattern)
        body = {} if method in ("POST", "PUT") else None
        what = f"{method} {pattern}"
        anon = Client(c.port).request(method, path, body=body)
        if roles is NOAUTH:
            check(anon.status == 200, f"{what} needs no token: {anon}")
            continue
        if roles == LINK:
            check(anon.status == 404 and "not valid" in anon.text,
                  f"{what} with a link that is not one: 404 page, got {anon}")
            continue
        check(anon.status == 401 and anon.is_problem(), f"{what} without a token: 401, got {anon}")
        check(anon.headers.get("www-authenticate", "").startswith("Bearer"),
              f"{what}: 401 carries WWW-Authenticate: Bearer")
        for bad in bad_tokens:
            r = Client(c.port, bad).request(method, path, body=body)
            check(r.status == 401, f"{what} with a bad token {bad[:8]}…: 401, got {r}")
        r = Client(c.port).request(method, path, body=body,
                                   headers={"Authorization": "Basic YWRtaW46YWRtaW4="})
        check(r.status == 401, f"{what} with Basic auth: 401, got {r}")
        for role in ROLES:
            r = c.clients[role].request(method, path, body=body)
            if role in roles:
                check(r.status not in (401, 403) and r.status < 500 and not r.is_router_miss(),
                      f"{what} as {role} (allowed): got {r}")
            else:
                check(r.status == 403 and r.is_problem(),
                      f"{what} as {role} (not allowed): 403, got {r}")


# ---- rate limits -------------------------------------------------------------------------------

@test
def rate_limit(c):
    srv = Server(BIN, env={"VENTURE_RATE_LIMITS_ENABLED": "true",
                           "VENTURE_RATE_LIMITS_SIMPLE": "3"}).start()
    try:
        a = srv.client()
        a.register(HELLO)
        t1, t2 = (Client(srv.port, a.post("/v1/tokens", {"name": n, "role": "operator"})
                         .json["token"]) for n in ("one", "two"))
        codes = [t1.post("/v1/runs", {"workflow": "hello"}).status for _ in range(3)]
        check(codes == [201, 201, 201], f"3 runs within the limit: {codes}")
        r = t1.post("/v1/runs", {"workflow": "hello"})
        problem(r, 429, None, "the 4th run within the minute")
        ra = r.headers.get("retry-after", "")
        check(ra.isdigit() and int(ra) >= 1, f"Retry-After is whole seconds ≥ 1: {ra!r}")
        check(str(r.json.get("type", "")).endswith("/rate-limited"), f"problem type: {r.json}")
        check(t2.post("/v1/runs", {"workflow": "hello"}).status == 201,
              "another token: not limited")
        check(a.post("/v1/runs", {"workflow": "hello"}).status == 201, "the admin: not limited")
        check(t1.get("/v1/runs").status == 200, "reads are not rate limited")
        r = t1.post("/v1/runs", {"workflow": "hello"}, headers={"Idempotency-Key": "rl"})
        check(r.status == 429, f"still limited: {r}")
        check(srv.stop() == 0, "SIGTERM: exit 0")
    finally:
        srv.cleanup()


# ---- bad input ---------------------------------------------------------------------------------

def survived(c, what, wait=0.3):
    """The server is still running after `what`; if it died, the failure is recorded and the
    server restarted on the same data dir, so the checks after it still run."""
    try:
        c.server.proc.wait(timeout=wait)
    except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired: still running, as it should
        pass
    if c.server.alive():
        return True
    check(False, f"the server DIED after {what}:\n{c.server.log_tail(5)}")
    c.server.start()
    return False


def raw_status(c, data, what, expect=None, timeout=30):
    try:
        status, headers, body = rawhttp.exchange(c.port, data, timeout=timeout)
    except OSError as e:
        status, headers, body = None, {}, str(e).encode()
    check(status is None or status < 500, f"{what}: a 5xx for bad input: {status} {body[:300]}")
    if status is not None and status >= 400 and body:
        try:
            j = json.loads(body)
        except ValueError:
            j = None
        check(isinstance(j, dict) and headers.get("content-type", "").startswith(
            "application/problem+json") and all(k in j for k in ("type", "title", "status",
                                                                 "detail")),
              f"{what}: the answer is a problem+json: {headers} {body[:300]}")
    if expect is not None:
        check(status == expect, f"{what}: expected {expect}, got {status} {body[:300]}")
    survived(c, what)
    return status


@test
def bad_input_never_5xx(c):
    tok = c.tokens["admin"]
    auth = f"Authorization: Bearer {tok}\r\n"
    raw_status(c, b"GARBAGE\r\n\r\n", "a malformed request line", 400)
    raw_status(c, b"GET\r\n\r\n", "a request line without a target", 400)
    raw_status(c, b"GET /health HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n", "a header without a "
               "colon", 400)
    raw_status(c, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
               "a 20 KB header", 431)
    many = b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 100) for i in range(200))
    raw_status(c, b"GET /health HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n", "200 headers", 431)
    raw_status(c, b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", "a 20 KB target",
               431)
    raw_status(c, b"GET /health HTTP/1.0\r\n\r\n", "HTTP/1.0", 200)
    raw_status(c, b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n", "HTTP/9.9")
    raw_status(c, b"GET http://x/health HTTP/1.1\r\nHost: x\r\n\r\n", "absolute-form target")
    raw_status(c, ("GET /v1/runs/%00 HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n").encode(),
               "a NUL in the path", 400)
    raw_status(c, ("GET /v1/runs/%ZZ HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n").encode(),
               "a bad percent escape")
    raw_status(c, b"POST /v1/runs HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
               "a non-numeric Content-Length", 400)
    raw_status(c, b"POST /v1/runs HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
               b"Content-Length: 6\r\n\r\nhello!", "two different Content-Lengths", 400)
    raw_status(c, b"POST /v1/runs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"zz\r\n", "a bad chunk size", 400)
    # Oversized bodies: a lying Content-Length is refused from the header alone.
    raw_status(c, ("POST /v1/workflows HTTP/1.1\r\nHost: x\r\n" + auth +
                   "Content-Type: application/json\r\nContent-Length: 5000000\r\n\r\n{").encode(),
               "Content-Length 5 MB (body not sent)", 413)
    conn = rawhttp.Conn(c.port)
    conn.send(("POST /v1/workflows HTTP/1.1\r\nHost: x\r\n" + auth +
               "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode())

    def pump():
        chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
        try:
            for _ in range(80):  # 5 MiB
                conn.send(chunk)
        except OSError:
            pass
    sender = threading.Thread(target=pump, daemon=True)
    sender.start()
    try:
        status, _, body = conn.read_response()
    except (EOFError, OSError) as e:
        status, body = None, str(e).encode()
    sender.join(30)
    conn.close()
    check(status == 413, f"a 5 MB chunked body: 413, got {status} {body[:200]}")
    # JSON that is not what it should be.
    a = c.admin
    cases = [
        ("POST", "/v1/runs", b'{"workflow": "\xff\xfe"}', (400, 422), "invalid UTF-8"),
        ("POST", "/v1/runs", b"[" * 100000 + b"]" * 100000, (400, 413, 422), "100k nested arrays"),
        ("POST", "/v1/workflows", b'{"a":' * 5000 + b"1" + b"}" * 5000, (400, 422),
         "5000 nested objects"),
        ("POST", "/v1/runs", b'{"workflow": 5}', (422,), "workflow: 5"),
        ("POST", "/v1/runs", b'{"workflow": null}', (422,), "workflow: null"),
        ("POST", "/v1/runs", b'{"workflow": "hello", "inputs": [1]}', (422,), "inputs: [1]"),
        ("POST", "/v1/runs", b'{"workflow": "hello", "inputs": "x"}', (422,), "inputs: x"),
        ("POST", "/v1/runs", b'{"definition": 5}', (422,), "definition: 5"),
        ("POST", "/v1/runs", b'{"definition": []}', (422,), "definition: []"),
        ("POST", "/v1/runs", b'"just a string"', (400,), "a string body"),
        ("POST", "/v1/runs", b"null", (400,), "a null body"),
        ("POST", "/v1/runs", b'{"workflow": "hello"} trailing', (400,), "trailing bytes"),
        ("POST", "/v1/runs", b'{"workflow": "' + b"a" * 100000 + b'"}', (404, 422),
         "a 100 KB workflow name"),
        ("POST", "/v1/workflows", b'{"name": 5, "nodes": "x"}', (422,), "name: 5, nodes: x"),
        ("POST", "/v1/workflows", b'{"name": "x", "nodes": [5, null, []]}', (422,),
         "nodes of the wrong types"),
        ("POST", "/v1/workflows", b'{"name": "x", "nodes": [{"id": 1, "type": {}}]}', (422,),
         "node fields of the wrong types"),
        ("POST", "/v1/workflows", b'{"name": "x", "nodes": [{"id": "a", "type": "sleep", '
                                  b'"config": {"duration": 5}}]}', (422,), "duration: 5"),
        ("POST", "/v1/workflows", b'{"name": "x", "nodes": [{"id": "a", "type": "noop", '
                                  b'"retry": "lots"}]}', (422,), "retry: lots"),
        ("PUT", "/v1/workflows/hello/tags/t", b'{"version": []}', (422,), "tag version: []"),
        ("POST", f"/v1/runs/{c.hello_run}/cancel", b'{"reason": 5}', (400, 409, 422),
         "cancel reason: 5"),
        ("POST", f"/v1/runs/{c.hello_run}/replay", b'{"from_node": 5}', (422,), "from_node: 5"),
        ("POST", f"/v1/runs/{c.hello_run}/patches", b'{"ops": [5]}', (409, 422), "ops: [5]"),
        ("POST", f"/v1/runs/{c.hello_run}/patches", b'{"ops": {"op": "add"}}', (422,),
         "ops: an object"),
        ("POST", "/v1/tokens", b'{"name": 5, "role": []}', (422,), "token fields wrong types"),
        ("POST", "/v1/tokens", b'{"name": "' + b"n" * 1000 + b'", "role": "viewer"}', (422,),
         "a 1000-character token name"),
        ("POST", "/v1/control/freeze", b'{"reason": 5}', (422,), "freeze reason: 5"),
        ("POST", "/v1/patches/pat_x/approve", b'{"reason": []}', (404, 422), "approve reason: []"),
    ]
    for method, path, body, want, what in cases:
        r = a.request(method, path, raw=body, headers={"Content-Type": "application/json"})
        check(r.status in want and r.is_problem(), f"{what} ({method} {path}): expected "
                                                   f"{want}, got {r}")
        survived(c, what, wait=0.01)
    for q in ("after=-1", "after=1e3", "after=99999999999999999999", "limit=1.5",
              "limit=%FF", "type=%00"):
        r = a.get(f"/v1/events?{q}")
        check(r.status < 500, f"GET /v1/events?{q}: {r}")
    # A slow client holds a half-sent request; the server keeps serving everyone else.
    slow = [rawhttp.Conn(c.port) for _ in range(3)]
    slow[0].send(b"GET /hea")
    slow[1].send(b"POST /v1/runs HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"wor")
    slow[2].send(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Partial: ")
    for i in range(5):
        r = Client(c.port, timeout=10).get("/health")
        check(r.status == 200, f"served while slow clients stall ({i}): {r}")
    check(a.start("hello")["id"], "runs start while slow clients stall")
    rest = b'kflow": "hello"}'
    slow[1].send(rest + b" " * (100 - 5 - len(rest)))  # complete it: the answer still comes
    status, _, body = slow[1].read_response()
    check(status == 401, f"the slow request, once complete, is answered (no token: 401): {status}")
    for s in slow:
        s.close()
    # Pipelined requests on one connection are answered in order; keep-alive holds.
    p = rawhttp.Conn(c.port)
    p.send(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n"
           b"GET /v1/runs HTTP/1.1\r\nHost: x\r\n\r\n"
           b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n" +
           ("GET /v1/runs/run_doesnotexist HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n").encode() +
           b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
    got = [p.read_response()[0] for _ in range(5)]
    check(got == [200, 401, 404, 404, 200], f"pipelined answers in order: {got}")
    p.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    check(p.read_response()[0] == 200, "the connection is still usable after the pipeline")
    p.send(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    status, headers, _ = p.read_response()
    check(status == 200 and headers.get("connection", "").lower() == "close",
          f"Connection: close is honoured: {headers}")
    check(p.closed_by_peer(10), "the server closes after Connection: close")
    p.close()
    # Keep-alive with http.client: one socket, many requests.
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=30)
    socks = set()
    for _ in range(5):
        conn.request("GET", "/livez")
        r = conn.getresponse()
        r.read()
        socks.add(id(conn.sock))
        check(r.status == 200, "keep-alive request")
    conn.close()
    check(len(socks) == 1, "five requests on one kept-alive connection")
    # Still alive and healthy after all of it.
    check(c.server.alive(), f"the server survived:\n{c.server.log_tail()}")
    r = Client(c.port).get("/health")
    check(r.status == 200 and r.json["status"] == "ok", f"healthy after bad input: {r}")


@test
def secrets_stay_out_of_the_log(c):
    with open(c.server.log_path, "rb") as f:
        log = f.read().decode("utf-8", "replace")
    leaked = [role for role, tok in c.tokens.items() if tok in log]
    check(not leaked, f"token secrets in the server's log: {leaked}")


@test
def sigterm_exits_0(c):
    # Last: stop the shared server gracefully, with open streams and a stalled client.
    rid = c.admin.start("short")["id"]
    c.admin.register(sleeper("long"))
    long_run = c.admin.start("long")["id"]
    sse = SseStream(c.port, f"/v1/runs/{long_run}/events", c.tokens["admin"])
    ws = WebSocket(c.port, "/v1/events/ws", c.tokens["admin"])
    stalled = rawhttp.Conn(c.port)
    stalled.send(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    check(sse.status == 200 and ws.status == 101, "streams open before SIGTERM")
    readers = [threading.Thread(target=lambda: list(sse.events()), daemon=True),
               threading.Thread(target=lambda: list(ws.messages()), daemon=True)]
    for t in readers:
        t.start()
    start = time.monotonic()
    rc = c.server.stop(timeout=90)
    check(rc == 0, f"SIGTERM with open SSE, WebSocket and a stalled request: exit 0, got {rc} "
                   f"after {time.monotonic() - start:.1f}s:\n{c.server.log_tail()}")
    for t in readers:
        t.join(30)
    check(sse.closed_cleanly, "the SSE stream is ended by the shutdown")
    check(ws.closed and ws.close_code == 1001, f"the WebSocket is closed with 1001 going away: "
                                               f"{ws.close_code}")
    sse.close()
    ws.close()
    stalled.close()
    c.server.start()
    done = c.admin.wait(rid)
    check(done["status"] == "succeeded" and done["output"] == 150,
          f"a run in flight at SIGTERM completes after the restart: {done}")
    check(c.admin.get("/v1/audit/verify").json["ok"] is True, "audit ok after restart")
    check(c.server.stop() == 0, "second SIGTERM: exit 0")


if __name__ == "__main__":
    run_all(setup, teardown)
