#!/usr/bin/env python3
"""Goal: the real `venture` binary behaves as SPEC §5 says for the commands of this issue.

Method: run the binary as a user would (subprocess, exit codes, stdout), on the examples in the
tree and on broken definitions made for the purpose; start `serve` on a temporary data dir and
stop it with SIGTERM (the API itself is covered by api_test.py and cli_api_test.py).
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

BIN, ROOT = sys.argv[1], sys.argv[2]
failures = []


def run(*args, **kw):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=240, **kw)


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


# version
r = run("version")
check(r.returncode == 0 and r.stdout.startswith("venture "), f"version: {r}")

# validate: every example is valid
examples = sorted(os.path.join(ROOT, "examples", f) for f in os.listdir(os.path.join(ROOT, "examples")))
r = run("workflow", "validate", *examples)
check(r.returncode == 0, f"examples validate: {r.stdout} {r.stderr}")
check(r.stdout.count(": ok") == len(examples), f"one ok line per example: {r.stdout}")

# validate: problems are printed as FILE: /pointer: message, exit 1
bad = os.path.join(ROOT, "tests", "integration", "bad")
cycle = os.path.join(bad, "cycle.json")
r = run("workflow", "validate", cycle)
check(r.returncode == 1, f"cycle exit code {r.returncode}")
lines = r.stdout.strip().splitlines()
check(all(l.startswith(cycle + ": /") for l in lines), f"lines are FILE: /pointer: message: {lines}")
check(any("cycle" in l and "a" in l and "b" in l for l in lines), f"the cycle is named: {lines}")
check(any("/nodes/2/type" in l for l in lines), f"unknown node type has its path: {lines}")
check(any("/nodes/3/config/expr" in l for l in lines), f"bad jq has its path: {lines}")

typo = os.path.join(bad, "typo.yaml")
r = run("workflow", "validate", typo)
check(r.returncode == 1 and "did you mean" in r.stdout and "fetch" in r.stdout,
      f"did you mean: {r.stdout}")

trunc = os.path.join(bad, "truncated.json")
r = run("workflow", "validate", trunc)
check(r.returncode == 1 and "line" in r.stdout, f"truncated JSON names a line: {r.stdout}")

r = run("workflow", "validate", os.path.join(bad, "does-not-exist.json"))
check(r.returncode == 1 and "cannot open" in r.stdout, f"missing file: {r.stdout}")

with tempfile.TemporaryDirectory() as tmp:
    huge = os.path.join(tmp, "huge.json")
    with open(huge, "w") as f:
        f.write('{"name": "h", "description": "' + "x" * (10 << 20) + '", "nodes": []}')
    r = run("workflow", "validate", huge)
    check(r.returncode == 1 and r.stdout.startswith(huge + ": "), f"10 MB file: {r.stdout[:300]}")

# validate -o json
r = run("workflow", "validate", "-o", "json", cycle, examples[0])
doc = json.loads(r.stdout)
check(r.returncode == 1 and doc[0]["valid"] is False and doc[1]["valid"] is True,
      f"json output: {r.stdout[:300]}")
check(all("path" in e and "message" in e for e in doc[0]["errors"]), "json errors have paths")

# usage errors exit 2
r = run("workflow", "frobnicate")
check(r.returncode == 2, f"unknown command exits 2: {r.returncode}")
r = run("bench", "Z", "--store", "memory")
check(r.returncode == 2, f"unknown workload exits 2: {r.returncode} {r.stderr}")

# bench: a small run of each workload completes every run (durable SQLite store)
for w, extra in (("A", ["--runs", "50", "--steps", "5"]), ("B", ["--runs", "30"]),
                 ("C", ["--runs", "200"]), ("L", ["--runs", "5", "--steps", "3"])):
    r = run("bench", w, *extra, "--warmup", "2", "-o", "json")
    ok = r.returncode == 0
    res = json.loads(r.stdout) if ok else {}
    check(ok and res["succeeded"] == res["runs"] and res["failed"] == 0,
          f"bench {w}: {r.stdout} {r.stderr[-500:]}")
    for key in ("workload", "runs", "steps", "succeeded", "failed", "wall_s", "steps_per_s",
                "p50_ms", "p99_ms"):
        check(key in res, f"bench {w} json has {key}")

# serve: starts on a temp data dir and a free port, creates the store, key and admin token, logs
# JSON lines on stdout, stops on SIGTERM with exit 0
with tempfile.TemporaryDirectory() as tmp:
    data = os.path.join(tmp, "data")
    p = subprocess.Popen([BIN, "serve", "--data-dir", data, "--listen", "127.0.0.1:0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    while True:  # "venture serving" is logged once the engine has recovered and the API is ready
        line = p.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "venture serving" in line:
            break
    check(lines and "venture serving" in lines[-1], f"serve logs: {lines}")
    check(all(json.loads(l).get("level") for l in lines), "serve logs JSON lines")
    check(os.path.exists(os.path.join(data, "venture.db")), "serve created the store")
    for name in ("signing.key", "admin.token"):
        path = os.path.join(data, name)
        check(os.path.exists(path) and (os.stat(path).st_mode & 0o777) == 0o600, f"{name} 0600")
    p.send_signal(signal.SIGTERM)
    rc = p.wait(timeout=60)
    check(rc == 0, f"serve exits 0 on SIGTERM: {rc} {p.stderr.read()[-500:]}")

print(f"{0 if failures else 1} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
