#!/usr/bin/env python3
"""Goal: every client command of SPEC §5 (approvals excepted) works against a real server as a
user and a script would use it: the exit codes (0 ok, 1 error, 2 usage, 3 a followed run failed,
4 auth), table output for people, `-o json` that parses, plain lines when stdout is not a
terminal, and the first steps of the README.

Method: one `venture serve` on a temporary data dir and a free port; the CLI runs as a
subprocess (stdout is a pipe, so never a terminal) with VENTURE_ADDRESS and VENTURE_TOKEN set,
and its output is compared with what the API says.

Usage: cli_api_test.py BINARY SOURCE_DIR [TEST_NAME_SUBSTRING...]
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers.harness import check, require, run_all, test  # noqa: E402
from helpers.server import Client, Server, binary_serves_http, free_port  # noqa: E402

BIN, ROOT = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
EX = os.path.join(ROOT, "examples")
HELLO_FILE = os.path.join(EX, "hello.json")

SLEEPER = {"name": "cli-sleeper",
           "nodes": [{"id": "wait", "type": "sleep", "config": {"duration": "30s"}},
                     {"id": "after", "type": "noop", "needs": ["wait"],
                      "config": {"output": "old"}}]}


class Ctx:
    pass


def base_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("VENTURE_")}
    env["NO_COLOR"] = "1"
    return env


def cli(c, *args, token="admin", address=None, env=None, cwd=None, timeout=120, stdin=None):
    """Runs the CLI. token: a role name of c.tokens, a literal secret, or None (no
    VENTURE_TOKEN)."""
    e = base_env()
    e["VENTURE_ADDRESS"] = address or c.server.address
    if token is not None:
        e["VENTURE_TOKEN"] = c.tokens.get(token, token)
    if env:
        e.update(env)
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout, env=e,
                          cwd=cwd or c.tmp,
                          stdin=stdin if stdin is not None else subprocess.DEVNULL)


def ok(r, what):
    return check(r.returncode == 0, f"{what}: exit {r.returncode}\nstdout: {r.stdout[-1500:]}\n"
                                    f"stderr: {r.stderr[-1500:]}")


def rc_is(r, code, what):
    return check(r.returncode == code, f"{what}: expected exit {code}, got {r.returncode}\n"
                                       f"stdout: {r.stdout[-800:]}\nstderr: {r.stderr[-800:]}")


def as_json(r, what):
    try:
        return json.loads(r.stdout)
    except ValueError:
        check(False, f"{what}: -o json output is not one JSON document: {r.stdout[:800]!r} "
                     f"(stderr {r.stderr[:300]!r})")
        return None


def json_lines(r, what):
    out = []
    for line in r.stdout.splitlines():
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            check(False, f"{what}: a line that is not JSON: {line[:300]!r}")
    return out


def no_ansi(r, what):
    check("\x1b[" not in r.stdout, f"{what}: escape sequences when stdout is not a terminal: "
                                   f"{r.stdout[:300]!r}")


def write(c, name, content):
    path = os.path.join(c.tmp, name)
    with open(path, "w") as f:
        f.write(content if isinstance(content, str) else json.dumps(content))
    return path


def setup():
    if not binary_serves_http(BIN):
        raise RuntimeError(f"{BIN} serve has no --listen: this build does not serve HTTP yet")
    c = Ctx()
    c.tmpdir = tempfile.TemporaryDirectory(prefix="venture-cli-")
    c.tmp = c.tmpdir.name
    c.server = Server(BIN, data_dir=os.path.join(c.tmp, "server-data")).start()
    c.admin = c.server.client()
    c.tokens = {"admin": c.server.admin_token}
    for role in ("operator", "approver", "viewer", "agent"):
        c.tokens[role] = c.admin.post("/v1/tokens", {"name": f"cli-{role}",
                                                     "role": role}).json["token"]
    c.sleeper_file = write(c, "sleeper.json", SLEEPER)
    return c


def teardown(c):
    if c is not None:
        check(c.server.stop() == 0, "SIGTERM: exit 0")
        c.server.cleanup()
        c.tmpdir.cleanup()


# ---- workflows ---------------------------------------------------------------------------------

@test
def health(c):
    r = cli(c, "health")
    ok(r, "health")
    check("ok" in r.stdout and "store" in r.stdout, f"health table: {r.stdout}")
    r = cli(c, "health", "-o", "json")
    ok(r, "health -o json")
    check((as_json(r, "health") or {}).get("status") == "ok", f"health json: {r.stdout}")
    r = cli(c, "health", token=None)
    ok(r, "health needs no token")


@test
def workflow_commands(c):
    r = cli(c, "workflow", "register", HELLO_FILE)
    ok(r, "register")
    version = c.admin.get("/v1/workflows/hello").json["version"]
    check(r.stdout.startswith("registered hello " + version) or
          r.stdout.startswith("unchanged hello " + version), f"register line: {r.stdout}")
    r = cli(c, "workflow", "register", HELLO_FILE, "--tag", "prod", "-o", "json")
    ok(r, "register --tag prod -o json")
    j = as_json(r, "register") or {}
    check(j.get("version") == version and "prod" in j.get("tags", []), f"register json: {j}")
    r = cli(c, "workflow", "register", HELLO_FILE)
    check(r.returncode == 0 and r.stdout.startswith("unchanged hello"), f"again: {r.stdout}")
    r = cli(c, "workflow", "register", os.path.join(EX, "fan-out.yaml"))
    ok(r, "register YAML")
    for f in ("branches.json", "retries.json", "failure.json", "timers.yaml"):
        ok(cli(c, "workflow", "register", os.path.join(EX, f)), f"register {f}")
    bad = os.path.join(ROOT, "tests", "integration", "bad", "cycle.json")
    r = cli(c, "workflow", "register", bad)
    rc_is(r, 1, "register an invalid file")
    check("/nodes/2/type" in r.stderr and "cycle" in r.stderr,
          f"the problems are printed with their paths: {r.stderr}")
    r = cli(c, "workflow", "register", os.path.join(c.tmp, "missing.json"))
    rc_is(r, 1, "register a missing file")
    r = cli(c, "workflow", "list")
    ok(r, "list")
    check(r.stdout.splitlines()[0].split()[:2] == ["NAME", "VERSION"] and "hello" in r.stdout,
          f"list table: {r.stdout}")
    no_ansi(r, "list")
    j = as_json(cli(c, "workflow", "list", "-o", "json"), "list") or {}
    check("hello" in [i["name"] for i in j.get("items", [])], f"list json: {j}")
    r = cli(c, "workflow", "list", "--limit", "1")
    ok(r, "list --limit 1")
    check("--cursor" in r.stderr, f"a cursor hint for more: {r.stderr}")
    for ref in ("hello", "hello@prod", "hello@" + version):
        r = cli(c, "workflow", "show", ref)
        ok(r, f"show {ref}")
        check(version in r.stdout and "definition:" in r.stdout, f"show {ref}: {r.stdout}")
        j = as_json(cli(c, "workflow", "show", ref, "-o", "json"), f"show {ref}") or {}
        with open(HELLO_FILE) as f:
            check(j.get("definition") == json.load(f), f"show -o json definition: {j}")
    rc_is(cli(c, "workflow", "show", "nosuchworkflow"), 1, "show unknown workflow")
    rc_is(cli(c, "workflow", "show", "hello@nosuchtag"), 1, "show unknown tag")
    # tag move
    v2 = c.admin.register(dict(json.load(open(HELLO_FILE)), description="v2"))["version"]
    r = cli(c, "tag", "move", "hello", "prod", v2)
    ok(r, "tag move")
    check(r.stdout.strip() == f"hello@prod -> {v2}", f"tag move line: {r.stdout}")
    j = as_json(cli(c, "tag", "move", "hello", "prod", version, "-o", "json"), "tag move") or {}
    check(j == {"name": "hello", "tag": "prod", "version": version}, f"tag move json: {j}")
    check(c.admin.get("/v1/workflows/hello?tag=prod").json["version"] == version, "tag moved")
    rc_is(cli(c, "tag", "move", "hello", "prod", "b2:" + "0" * 64), 1, "tag to unknown version")
    rc_is(cli(c, "tag", "move", "hello", "BAD", version), 1, "bad tag name")
    rc_is(cli(c, "tag", "move", "hello", "prod"), 2, "tag move without a version")
    c.admin.register(json.load(open(HELLO_FILE)))  # latest back to the file's version


# ---- runs --------------------------------------------------------------------------------------

def run_id_of(r):
    line = r.stdout.strip().splitlines()[0] if r.stdout.strip() else ""
    parts = line.split()
    return parts[1] if len(parts) >= 3 and parts[0] == "run" else None


@test
def run_start_forms(c):
    r = cli(c, "run", "start", HELLO_FILE)
    ok(r, "run start FILE")
    rid = run_id_of(r)
    require(rid and rid.startswith("run_"), f"run start line 'run <id> <status>': {r.stdout}")
    check(c.admin.wait(rid)["output"] == "HELLO, WORLD", "the file's run")
    r = cli(c, "run", "start", "hello@prod", "-i", "who=ada")
    ok(r, "run start NAME@TAG -i")
    check(c.admin.wait(run_id_of(r))["output"] == "HELLO, ADA", "-i who=ada")
    r = cli(c, "run", "start", "hello", "-i", "who=ada", "-o", "json")
    ok(r, "run start -o json")
    j = as_json(r, "run start") or {}
    check(str(j.get("id", "")).startswith("run_") and j.get("workflow") == "hello",
          f"run start json: {j}")
    # -i values are JSON when they parse, else strings.
    r = cli(c, "run", "start", "branches", "-i", "score=70")
    ok(r, "-i score=70 (a number)")
    check(c.admin.wait(run_id_of(r))["output"] == "accepted", "score=70 went in as a number")
    r = cli(c, "run", "start", "branches", "-i", "score=high")
    rc_is(r, 1, "an input of the wrong type")
    check("/inputs" in r.stderr, f"the problem names the input: {r.stderr}")
    inputs_json = write(c, "inputs.json", {"items": [1, 2, 3]})
    r = cli(c, "run", "start", "fan-out", "--inputs", inputs_json)
    ok(r, "--inputs FILE (JSON)")
    check(c.admin.wait(run_id_of(r))["output"]["doubled"] == [2, 4, 6], "--inputs JSON")
    inputs_yaml = write(c, "inputs.yaml", "items: [5]\n")
    r = cli(c, "run", "start", "fan-out", "--inputs", inputs_yaml, "-i", "items=[7, 8]")
    ok(r, "--inputs FILE (YAML) with -i over it")
    check(c.admin.wait(run_id_of(r))["output"]["doubled"] == [14, 16], "-i wins over --inputs")
    rc_is(cli(c, "run", "start", "nosuchworkflow"), 1, "start an unknown workflow")
    rc_is(cli(c, "run", "start", "hello", "-i", "novalue"), 2, "-i without =")
    rc_is(cli(c, "run", "start", "fan-out", "--inputs", os.path.join(c.tmp, "nope.json")), 1,
          "--inputs missing file")
    # Idempotency keys.
    r1 = cli(c, "run", "start", "hello", "--idempotency-key", "cli-key-1")
    r2 = cli(c, "run", "start", "hello", "--idempotency-key", "cli-key-1")
    ok(r1, "first with key")
    ok(r2, "second with key")
    check(run_id_of(r1) == run_id_of(r2) and "existing" in r2.stdout,
          f"same key: the same run, said so: {r1.stdout} {r2.stdout}")
    r3 = cli(c, "run", "start", "hello", "-i", "who=x", "--idempotency-key", "cli-key-1")
    rc_is(r3, 1, "same key, other inputs")


@test
def run_follow(c):
    r = cli(c, "run", "start", HELLO_FILE, "-f")
    ok(r, "run start -f (succeeds)")
    no_ansi(r, "run start -f")
    lines = r.stdout.strip().splitlines()
    require(lines, "output")
    rid = run_id_of(r)
    check(rid is not None, f"first line names the run: {lines[0]}")
    check(any("node.succeeded" in ln and "shout" in ln for ln in lines),
          f"plain event lines: {lines}")
    check(lines[-1].startswith(f"run {rid} succeeded"), f"last line: {lines[-1]}")
    r = cli(c, "run", "start", os.path.join(EX, "failure.json"), "-f")
    rc_is(r, 3, "run start -f of a failing workflow")
    last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    check(" failed" in last and "payment_declined" in last, f"failure summary line: {last}")
    r = cli(c, "run", "start", "hello", "-f", "-o", "json")
    ok(r, "run start -f -o json")
    evs = json_lines(r, "-f -o json")
    check(evs and evs[-1].get("type") == "run.succeeded", f"json lines end with the terminal "
                                                          f"event: {evs[-1:]}")
    # A followed run that is cancelled meanwhile: exit 3.
    c.admin.register(SLEEPER)
    proc = subprocess.Popen([BIN, "run", "start", "cli-sleeper", "-f"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env=dict(base_env(), VENTURE_ADDRESS=c.server.address,
                                     VENTURE_TOKEN=c.tokens["admin"]))
    first = proc.stdout.readline()
    rid = first.split()[1] if first.startswith("run ") else None
    require(rid, f"-f printed the run first: {first!r}")
    c.admin.wait(rid, statuses=("running", "waiting"))
    ok(cli(c, "run", "cancel", rid, "--reason", "stop following"), "cancel")
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    check(proc.returncode == 3, f"-f of a cancelled run exits 3: {proc.returncode} {err}")
    check(f"run {rid} cancelled" in out, f"cancelled summary: {out[-300:]}")


@test
def run_status_list_controls(c):
    rid = c.admin.start("hello", inputs={"who": "st"})["id"]
    c.admin.wait(rid)
    r = cli(c, "run", "status", rid)
    ok(r, "run status")
    check(rid in r.stdout and "succeeded" in r.stdout and "NODE" in r.stdout and
          "greet" in r.stdout and "shout" in r.stdout, f"status table: {r.stdout}")
    j = as_json(cli(c, "run", "status", rid, "-o", "json"), "status") or {}
    check(j == c.admin.run(rid), "status -o json is the API's detail")
    rc_is(cli(c, "run", "status", "run_doesnotexist"), 1, "status of an unknown run")
    r = cli(c, "run", "list")
    ok(r, "run list")
    check(r.stdout.splitlines()[0].split()[:3] == ["ID", "WORKFLOW", "STATUS"] and rid in r.stdout,
          f"list table: {r.stdout[:500]}")
    j = as_json(cli(c, "run", "list", "--status", "succeeded", "--workflow", "hello", "-o",
                    "json", "--limit", "500"), "run list") or {}
    items = j.get("items", [])
    check(items and all(i["status"] == "succeeded" and i["workflow"] == "hello" for i in items)
          and rid in [i["id"] for i in items], f"filters: {items[:3]}")
    rc_is(cli(c, "run", "list", "--status", "bogus"), 1, "list --status bogus")
    rc_is(cli(c, "run", "list", "--limit", "0"), 2, "list --limit 0")
    c.admin.register(SLEEPER)
    sid = c.admin.start("cli-sleeper")["id"]
    c.admin.wait(sid, statuses=("running", "waiting"))
    r = cli(c, "run", "pause", sid, "--reason", "lunch")
    ok(r, "pause")
    check(r.stdout.strip() == f"run {sid} paused", f"pause line: {r.stdout}")
    r = cli(c, "run", "pause", sid)
    rc_is(r, 1, "pause a paused run (409)")
    check(r.stderr.strip(), "a message on stderr")
    r = cli(c, "run", "resume", sid, "-o", "json")
    ok(r, "resume")
    check((as_json(r, "resume") or {}).get("status") in ("running", "waiting"), r.stdout)
    r = cli(c, "run", "cancel", sid, "--reason", "done")
    ok(r, "cancel")
    check(r.stdout.strip() == f"run {sid} cancelled", f"cancel line: {r.stdout}")
    rc_is(cli(c, "run", "cancel", sid), 1, "cancel a cancelled run")
    reasons = {e["type"]: e["data"].get("reason") for e in c.admin.events(sid)}
    check(reasons.get("run.paused") == "lunch" and reasons.get("run.cancelled") == "done",
          f"--reason is recorded: {reasons}")


@test
def logs_stream(c):
    c.admin.register(json.load(open(os.path.join(EX, "retries.json"))))
    rid = c.admin.start("retries")["id"]
    c.admin.wait(rid)
    events = c.admin.events(rid)
    r = cli(c, "logs", "stream", rid)
    ok(r, "logs stream")
    no_ansi(r, "logs stream")
    lines = r.stdout.strip().splitlines()
    check(len(lines) == len(events), f"one line per event: {len(lines)} vs {len(events)}")
    check(all(e["type"] in ln for e, ln in zip(events, lines)), f"lines in order: {lines[:5]}")
    got = json_lines(cli(c, "logs", "stream", rid, "-o", "json"), "logs -o json")
    check([e["seq"] for e in got] == [e["seq"] for e in events], "-o json: every event, in order")
    got = json_lines(cli(c, "logs", "stream", rid, "--node", "flaky", "-o", "json"), "--node")
    check(got and all(e["node"] == "flaky" for e in got) and
          len(got) == len([e for e in events if e["node"] == "flaky"]), f"--node flaky: {got}")
    got = json_lines(cli(c, "logs", "stream", rid, "--filter", "errors", "-o", "json"), "errors")
    types = {e["type"] for e in got}
    check(got and types <= {"node.failed", "node.retrying", "node.item_failed", "run.failed"},
          f"--filter errors: {types}")
    check(sum(1 for e in got if e["type"] == "node.retrying") == 2,
          f"flaky retried twice: {[e['type'] for e in got]}")
    mid = events[len(events) // 2]["seq"]
    got = json_lines(cli(c, "logs", "stream", rid, "--from", str(mid), "-o", "json"), "--from")
    check([e["seq"] for e in got] == [e["seq"] for e in events if e["seq"] >= mid],
          f"--from {mid}: {[e['seq'] for e in got]}")
    rc_is(cli(c, "logs", "stream", rid, "--filter", "nope"), 2, "--filter nope")
    rc_is(cli(c, "logs", "stream", "run_doesnotexist"), 1, "logs of an unknown run")
    # A live run: the stream follows it to the end.
    lid = c.admin.start("timers")["id"]
    r = cli(c, "logs", "stream", lid, "-o", "json")
    ok(r, "logs stream of a live run")
    got = json_lines(r, "live")
    check(got and got[-1]["type"] == "run.succeeded", f"followed to the end: {got[-1:]}")


@test
def patch_commands(c):
    c.admin.register(SLEEPER)
    rid = c.admin.start("cli-sleeper")["id"]
    c.admin.wait(rid, statuses=("running", "waiting"))
    ops = [{"op": "replace", "path": "/nodes/1/config/output", "value": "new"}]
    f_array = write(c, "patch-array.json", ops)
    r = cli(c, "patch", "create", rid, f_array, "--reason", "fix output")
    ok(r, "patch create (array file)")
    parts = r.stdout.split()
    check(len(parts) >= 3 and parts[0] == "patch" and parts[1].startswith("pat_") and
          parts[2] == "applied" and "version b2:" in r.stdout, f"patch line: {r.stdout}")
    p1 = parts[1] if len(parts) > 1 else ""
    f_obj = write(c, "patch-obj.yaml", "ops:\n  - {op: add, path: /nodes/-, value: {id: extra, "
                                       "type: noop}}\nreason: from the file\n")
    r = cli(c, "patch", "create", rid, f_obj, "-o", "json", token="agent")
    ok(r, "patch create (object YAML file) as agent")
    j = as_json(r, "patch create") or {}
    check(j.get("status") == "pending_approval", f"an agent's patch waits: {j}")
    p2 = j.get("id", "")
    r = cli(c, "patch", "list", rid)
    ok(r, "patch list")
    check(p1 in r.stdout and p2 in r.stdout and "pending_approval" in r.stdout, r.stdout)
    j = as_json(cli(c, "patch", "list", rid, "-o", "json"), "patch list") or {}
    check({p["id"] for p in j.get("items", [])} == {p1, p2}, f"list json: {j}")
    r = cli(c, "patch", "show", p2)
    ok(r, "patch show")
    check("ops:" in r.stdout and "from the file" in r.stdout and "cli-agent" in r.stdout,
          f"show: {r.stdout}")
    rc_is(cli(c, "patch", "approve", p2, token="agent"), 4, "an agent may not approve")
    r = cli(c, "patch", "approve", p2, "--reason", "ok", token="approver")
    ok(r, "patch approve")
    check(r.stdout.strip() == f"patch {p2} applied", f"approve line: {r.stdout}")
    rc_is(cli(c, "patch", "approve", p2, token="approver"), 1, "approve twice (409)")
    r = cli(c, "patch", "create", rid, write(c, "p3.json", [{"op": "add", "path": "/nodes/-",
                                                          "value": {"id": "x3", "type": "noop"}}]),
            "-o", "json", token="agent")
    p3 = (as_json(r, "p3") or {}).get("id", "")
    r = cli(c, "patch", "reject", p3, "--reason", "no", "-o", "json", token="approver")
    ok(r, "patch reject")
    check((as_json(r, "reject") or {}).get("status") == "rejected", r.stdout)
    r = cli(c, "patch", "create", rid, write(c, "p4.json", [{"op": "replace",
                                                          "path": "/nodes/0/config/duration",
                                                          "value": "1s"}]))
    rc_is(r, 1, "a patch of the started timer (422)")
    check("/nodes/0" in r.stderr, f"the problem's path is printed: {r.stderr}")
    rc_is(cli(c, "patch", "create", rid, write(c, "p5.json", {"nope": 1})), 1, "not ops")
    rc_is(cli(c, "patch", "show", "pat_doesnotexist"), 1, "show unknown patch")
    c.admin.post(f"/v1/runs/{rid}/cancel", {})


@test
def replay_command(c):
    rid = c.admin.start("hello", inputs={"who": "re"})["id"]
    c.admin.wait(rid)
    r = cli(c, "replay", rid, "--from", "shout", "-f")
    ok(r, "replay -f")
    lines = r.stdout.strip().splitlines()
    check(lines and f"replay of {rid} from shout" in lines[0], f"first line: {lines[:1]}")
    check(lines and " succeeded" in lines[-1], f"last line: {lines[-1:]}")
    check(any("replayed" in ln and "greet" in ln for ln in lines), f"greet replayed: {lines}")
    j = as_json(cli(c, "replay", rid, "--from", "greet", "-o", "json"), "replay") or {}
    check(j.get("replay_of") == rid and str(j.get("id", "")).startswith("run_"), f"json: {j}")
    rc_is(cli(c, "replay", rid, "--from", "nope"), 1, "replay from an unknown node")
    rc_is(cli(c, "replay", rid), 2, "replay without --from")
    fid = c.admin.start("failure")["id"]
    c.admin.wait(fid)
    rc_is(cli(c, "replay", fid, "--from", "charge", "-f"), 3, "replay -f of a run that fails")


@test
def freeze_commands(c):
    try:
        r = cli(c, "freeze", "--reason", "cli incident")
        ok(r, "freeze")
        check(r.stdout.startswith("frozen") and "cli incident" in r.stdout, f"freeze: {r.stdout}")
        r = cli(c, "status")
        ok(r, "status")
        check(r.stdout.startswith("frozen") and "cli incident" in r.stdout, f"status: {r.stdout}")
        j = as_json(cli(c, "status", "-o", "json"), "status") or {}
        check(j.get("frozen") is True and j.get("reason") == "cli incident", f"json: {j}")
        rc_is(cli(c, "freeze", "--reason", "x", token="viewer"), 4, "freeze as viewer")
        rc_is(cli(c, "unfreeze", token="operator"), 4, "unfreeze as operator")
    finally:
        r = cli(c, "unfreeze")
    ok(r, "unfreeze")
    check(r.stdout.strip() == "not frozen", f"unfreeze: {r.stdout}")
    check(cli(c, "status").stdout.strip() == "not frozen", "status after unfreeze")
    rc_is(cli(c, "freeze"), 2, "freeze without --reason")


@test
def token_commands(c):
    r = cli(c, "token", "create", "--name", "cli-made", "--role", "viewer")
    ok(r, "token create")
    check("vt_" in r.stdout and "shown only once" in r.stderr, f"create: {r.stdout} {r.stderr}")
    j = as_json(cli(c, "token", "create", "--name", "cli-json", "--role", "operator", "-o",
                    "json"), "token create") or {}
    secret, tid = j.get("token", ""), j.get("id", "")
    check(secret.startswith("vt_") and tid.startswith("tok_"), f"json: {j}")
    r = cli(c, "token", "list")
    ok(r, "token list")
    check("cli-made" in r.stdout and "cli-json" in r.stdout and secret not in r.stdout,
          f"list without secrets: {r.stdout}")
    r = cli(c, "token", "list", "-o", "json")
    check(secret not in r.stdout and "cli-json" in [i["name"] for i in
                                                    (as_json(r, "list") or {}).get("items", [])],
          "list -o json")
    ok(cli(c, "run", "list", token=secret), "the new token works")
    r = cli(c, "token", "revoke", tid)
    ok(r, "token revoke")
    check(r.stdout.strip() == f"revoked token {tid}", f"revoke: {r.stdout}")
    rc_is(cli(c, "run", "list", token=secret), 4, "a revoked token: exit 4")
    rc_is(cli(c, "token", "revoke", "tok_doesnotexist"), 1, "revoke an unknown token")
    rc_is(cli(c, "token", "create", "--name", "x", "--role", "root"), 2, "--role root")
    rc_is(cli(c, "token", "create", "--role", "viewer"), 2, "no --name")
    rc_is(cli(c, "token", "list", token="operator"), 4, "token list as operator")


@test
def audit_verify_command(c):
    r = cli(c, "audit", "verify")
    ok(r, "audit verify")
    check(r.stdout.startswith("ok:") and "events" in r.stdout, f"verify: {r.stdout}")
    j = as_json(cli(c, "audit", "verify", "-o", "json"), "verify") or {}
    check(j.get("ok") is True and j.get("events", 0) > 0, f"json: {j}")
    ok(cli(c, "audit", "verify", token="viewer"), "a viewer may verify")


@test
def completion_scripts(c):
    for shell, marker in (("bash", "complete"), ("zsh", "compdef"),
                          ("fish", "complete -c venture")):
        r = cli(c, "completion", shell, token=None)
        ok(r, f"completion {shell}")
        check(marker in r.stdout and "workflow" in r.stdout and "replay" in r.stdout,
              f"completion {shell} names the commands: {r.stdout[:300]}")
        exe = shutil.which(shell)
        if exe:
            check_cmd = [exe, "-n"] if shell != "fish" else [exe, "--no-execute"]
            p = subprocess.run(check_cmd, input=r.stdout, capture_output=True, text=True,
                               timeout=60)
            check(p.returncode == 0, f"{shell} parses the script: {p.stderr[:500]}")
    rc_is(cli(c, "completion", "powershell", token=None), 2, "completion of an unknown shell")


@test
def exit_codes(c):
    rc_is(cli(c, "run", "list", token="vt_" + "0" * 64), 4, "a bad token")
    r = cli(c, "run", "list", token="vt_bad")
    check("401" in r.stderr or "token" in r.stderr.lower(), f"the message says why: {r.stderr}")
    empty = tempfile.mkdtemp(dir=c.tmp)
    r = cli(c, "run", "list", token=None, cwd=empty)
    rc_is(r, 4, "no token at all")
    check("no token found" in r.stderr, f"a hint where tokens come from: {r.stderr}")
    rc_is(cli(c, "freeze", "--reason", "x", token="viewer"), 4, "a role that may not (403)")
    down = f"http://127.0.0.1:{free_port()}"
    for args in (("run", "list"), ("health",), ("run", "start", HELLO_FILE, "-f"),
                 ("logs", "stream", "run_x")):
        r = cli(c, *args, address=down, timeout=120)
        rc_is(r, 1, f"{' '.join(args)} with no server")
        check("cannot reach the server" in r.stderr and down in r.stderr,
              f"a clear message: {r.stderr}")
    for args in (("run", "start"), ("frobnicate",), ("run", "list", "--limit", "abc"),
                 ("run", "list", "-o", "yaml"), ("workflow",), ("token", "create", "--name", "x"),
                 ("patch", "create", "run_x")):
        r = cli(c, *args)
        rc_is(r, 2, f"usage error: venture {' '.join(args)}")
    r = cli(c, "--address", c.server.address, "run", "list", "-o", "json",
            address="http://127.0.0.1:1")
    ok(r, "--address before the command wins over VENTURE_ADDRESS")
    r = cli(c, "run", "list", "--token", c.tokens["viewer"], "-o", "json", token="vt_bad")
    ok(r, "--token wins over VENTURE_TOKEN")


@test
def readme_path(c):
    # A new user, from the repo root: the token comes from VENTURE_DATA_DIR/admin.token.
    r = cli(c, "run", "start", "examples/hello.json", "-f", token=None, cwd=ROOT,
            env={"VENTURE_DATA_DIR": c.server.data_dir})
    ok(r, "venture run start examples/hello.json -f (from the repo root)")
    lines = r.stdout.strip().splitlines()
    check(lines and " succeeded" in lines[-1], f"ends with the run's success: {lines[-1:]}")
    # ... or from ./venture-data/admin.token in the working directory.
    work = tempfile.mkdtemp(dir=c.tmp)
    os.makedirs(os.path.join(work, "venture-data"))
    shutil.copy(os.path.join(c.server.data_dir, "admin.token"),
                os.path.join(work, "venture-data", "admin.token"))
    r = cli(c, "run", "start", HELLO_FILE, "-f", token=None, cwd=work)
    ok(r, "token from ./venture-data/admin.token")
    # The defaults of SPEC §5 (http://127.0.0.1:8000, ./venture-data), when the port is free.
    probe = Client(8000, timeout=2)
    try:
        probe.get("/livez")
        busy = True
    except OSError:
        busy = False
    if busy:
        print("  .. port 8000 is in use: the all-defaults check is skipped")
        return
    srv = Server(BIN, data_dir=os.path.join(work, "venture-data-default"), port=8000)
    try:
        srv.start()
        os.makedirs(os.path.join(work, "d2"))
        os.symlink(srv.data_dir, os.path.join(work, "d2", "venture-data"))
        e = base_env()
        r = subprocess.run([BIN, "run", "start", HELLO_FILE, "-f"], capture_output=True,
                           text=True, timeout=120, env=e, cwd=os.path.join(work, "d2"))
        ok(r, "all defaults: no address, no token")
        check(srv.stop() == 0, "SIGTERM: exit 0")
    except AssertionError as ex:
        print(f"  .. default-port server did not start (port taken meanwhile?): {ex}")
    finally:
        srv.cleanup()


if __name__ == "__main__":
    run_all(setup, teardown)
