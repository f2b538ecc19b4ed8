#!/usr/bin/env python3
"""Goal: the test services of issue #5 start from the Debian packages on free loopback ports,
answer as the real thing (PostgreSQL 15 runs SQL as a non-root user, NATS has JetStream on, Redis
answers commands), and stop by PID leaving no process and, for a temporary root, no directory.

Method: helpers.services.Services as the integration tests will use it, and scripts/test-services
as a shell would.

Usage: services_test.py BINARY SOURCE_DIR [TEST_NAME_SUBSTRING...]
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers.harness import check, require, run_all, test  # noqa: E402
from helpers.services import Services  # noqa: E402

ROOT = os.path.abspath(sys.argv[2])  # argv[1]: the venture binary (unused here), as for the others


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


@test
def all_three_start_answer_and_stop():
    s = Services().start()
    try:
        env = s.env()
        r = subprocess.run(["psql", env["VENTURE_TEST_POSTGRES_URL"], "-tAc",
                            "SELECT current_setting('server_version_num')::int / 10000, "
                            "current_user"], capture_output=True, text=True, timeout=30)
        check(r.returncode == 0 and r.stdout.strip() == "15|venture",
              f"PostgreSQL 15 runs SQL: {r.stdout} {r.stderr}")
        owner = subprocess.run(["ps", "-o", "user=", "-p", str(s.procs["postgres"].pid)],
                               capture_output=True, text=True).stdout
        pg_users = subprocess.run(["ps", "-o", "user=", "-C", "postgres"], capture_output=True,
                                  text=True).stdout.split()
        check(pg_users and "root" not in pg_users, f"postgres runs as a non-root user: {pg_users}"
                                                   f" (launcher {owner.strip()})")
        with urllib.request.urlopen(f"http://127.0.0.1:{s.ports['nats_monitor']}/varz") as resp:
            varz = json.loads(resp.read())
        check(varz.get("jetstream", {}).get("config") is not None, "NATS has JetStream on")
        with socket.create_connection(("127.0.0.1", s.ports["redis"])) as c:
            c.sendall(b"SET k v\r\nGET k\r\n")
            got = b""
            while got.count(b"\r\n") < 3:
                got += c.recv(100)
        check(got == b"+OK\r\n$1\r\nv\r\n", f"Redis answers: {got!r}")
        pids = [p.pid for p in s.procs.values()]
        root = s.root
    finally:
        s.stop()
    check(not any(alive(p) for p in pids), "stopped by PID: nothing left running")
    check(not os.path.exists(root), "the temporary root is removed")


@test
def the_shell_script():
    root = tempfile.mkdtemp(prefix="venture-services-sh-")
    script = os.path.join(ROOT, "scripts", "test-services")
    try:
        r = subprocess.run([script, "start", root], capture_output=True, text=True, timeout=120)
        require(r.returncode == 0, f"start: {r.stderr}")
        env = dict(line.split("=", 1) for line in r.stdout.split())
        check(set(env) == {"VENTURE_TEST_POSTGRES_URL", "NATS_URL", "REDIS_URL"}, f"env: {env}")
        with open(os.path.join(root, "services.json")) as f:
            pids = list(json.load(f)["pids"].values())
        check(all(alive(p) for p in pids), "running after the script returned")
        again = subprocess.run([script, "start", root], capture_output=True, text=True)
        check(again.returncode == 1 and "already" in again.stderr, "a second start is refused")
        r = subprocess.run([script, "stop", root], capture_output=True, text=True, timeout=120)
        check(r.returncode == 0, f"stop: {r.stderr}")
        check(not any(alive(p) for p in pids), "stop leaves nothing running")
    finally:
        subprocess.run([script, "stop", root], capture_output=True)
        subprocess.run(["rm", "-rf", root])


if __name__ == "__main__":
    run_all()
