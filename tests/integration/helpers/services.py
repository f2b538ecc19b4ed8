"""Throw-away PostgreSQL 15, NATS JetStream and Redis servers for tests (issue #5, item 6).

Each runs from the Debian packages (scripts/bootstrap installs them) on a free loopback port, with
its data in a temporary directory, and is stopped by PID: nothing system-wide is started, touched
or left behind. PostgreSQL refuses to run as root, so as root it runs as the `postgres` user (the
package creates it); otherwise as the current user.

    with Services() as s:          # or: s = Services().start(); ...; s.stop()
        s.env()  # VENTURE_TEST_POSTGRES_URL, NATS_URL, REDIS_URL

`scripts/test-services start DIR` / `stop DIR` wrap this for a shell.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

PG_BIN = "/usr/lib/postgresql/15/bin"
READY_TIMEOUT_S = 60


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what, ready, proc=None, timeout=READY_TIMEOUT_S, log=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready"
                               f"{_tail(log)}")
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} not ready after {timeout}s{_tail(log)}")


def _tail(log):
    if not log:
        return ""
    try:
        with open(log, "rb") as f:
            return ":\n" + f.read().decode("utf-8", "replace")[-2000:]
    except OSError:
        return ""


def _answers(port, send, expect):
    """A TCP round trip on 127.0.0.1:port whose reply starts with `expect`."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
        if send:
            c.sendall(send)
        return c.recv(4096).startswith(expect)


class Services:
    def __init__(self, root=None, postgres=True, nats=True, redis=True):
        self.own = root is None
        self.root = root or tempfile.mkdtemp(prefix="venture-services-")
        self.want = {"postgres": postgres, "nats": nats, "redis": redis}
        self.pids = {}
        self.ports = {}
        self.procs = {}

    # ---- start ----

    def start(self):
        os.makedirs(self.root, exist_ok=True)
        # PostgreSQL may run as another user: it must be able to reach its directory.
        os.chmod(self.root, 0o755)
        try:
            if self.want["postgres"]:
                self._start_postgres()
            if self.want["nats"]:
                self._start_nats()
            if self.want["redis"]:
                self._start_redis()
        except BaseException:
            self.stop()
            raise
        self._save()
        return self

    def _as_postgres(self):
        return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _start_postgres(self, again=False):
        data = os.path.join(self.root, "postgres")
        log = os.path.join(self.root, "postgres.log")
        if not again:
            os.makedirs(data, mode=0o700)
            if os.geteuid() == 0:
                shutil.chown(data, "postgres", "postgres")
            subprocess.run(self._as_postgres() + [f"{PG_BIN}/initdb", "-D", data, "-U",
                                                  "venture", "--auth=trust", "--encoding=UTF8",
                                                  "--no-sync"],
                           check=True, capture_output=True, timeout=120)
        port = self.ports["postgres"] if again else free_port()
        with open(log, "ab") as out:
            if os.geteuid() == 0:
                shutil.chown(log, "postgres", "postgres")
            proc = subprocess.Popen(
                self._as_postgres() + [f"{PG_BIN}/postgres", "-D", data, "-p", str(port),
                                       "-h", "127.0.0.1", "-k", data, "-c", "fsync=on",
                                       "-c", "max_connections=300"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        self.procs["postgres"], self.ports["postgres"] = proc, port
        ready = ["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(port)]
        _wait("postgres", lambda: subprocess.run(ready).returncode == 0, proc, log=log)
        if not again:
            subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "venture", "-d",
                            "postgres", "-q", "-c", "CREATE DATABASE venture"],
                           check=True, capture_output=True, timeout=60)

    def _start_nats(self, again=False):
        store = os.path.join(self.root, "nats")
        if not again:
            os.makedirs(store)
        port = self.ports["nats"] if again else free_port()
        monitor = self.ports["nats_monitor"] if again else free_port()
        log = os.path.join(self.root, "nats.log")
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(port), "-m", str(monitor),
                 "-sd", store],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        self.procs["nats"], self.ports["nats"] = proc, port
        self.ports["nats_monitor"] = monitor
        _wait("nats-server", lambda: _answers(port, None, b"INFO ") and self._jetstream(),
              proc, log=log)

    def _jetstream(self):
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['nats_monitor']}/jsz",
                                    timeout=2) as r:
            return r.status == 200 and "config" in json.loads(r.read())

    def _start_redis(self, again=False):
        data = os.path.join(self.root, "redis")
        if not again:
            os.makedirs(data)
        port = self.ports["redis"] if again else free_port()
        log = os.path.join(self.root, "redis.log")
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", data,
                 "--save", "", "--appendonly", "no", "--daemonize", "no"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        self.procs["redis"], self.ports["redis"] = proc, port
        _wait("redis-server", lambda: _answers(port, b"PING\r\n", b"+PONG"), proc, log=log)

    # ---- outages ----

    def stop_one(self, name):
        """Stops one service (its data stays), e.g. to test an outage; `start_one` brings it
        back on the same port."""
        proc = self.procs.pop(name)
        self._kill(proc.pid, proc, self.STOP_SIGNAL.get(name, signal.SIGTERM))

    def start_one(self, name):
        {"postgres": self._start_postgres, "nats": self._start_nats,
         "redis": self._start_redis}[name](again=True)
        self._save()

    # ---- use ----

    def env(self):
        out = {}
        if "postgres" in self.ports:
            out["VENTURE_TEST_POSTGRES_URL"] = (
                f"postgres://venture@127.0.0.1:{self.ports['postgres']}/venture")
        if "nats" in self.ports:
            out["NATS_URL"] = f"nats://127.0.0.1:{self.ports['nats']}"
        if "redis" in self.ports:
            out["REDIS_URL"] = f"redis://127.0.0.1:{self.ports['redis']}"
        return out

    def _save(self):
        pids = {name: p.pid for name, p in self.procs.items()}
        with open(os.path.join(self.root, "services.json"), "w") as f:
            json.dump({"pids": pids, "ports": self.ports, "env": self.env()}, f)

    # ---- stop ----

    # PostgreSQL's fast shutdown is SIGINT (SIGTERM would wait for every client to leave).
    STOP_SIGNAL = {"postgres": signal.SIGINT}

    @staticmethod
    def _kill(pid, proc=None, sig=signal.SIGTERM):
        """`sig` to the process group (postgres forks its workers), SIGKILL after 20 s."""
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if proc is not None:
                if proc.poll() is not None:
                    return
            else:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
            time.sleep(0.05)
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if proc is not None:
            proc.wait()

    def stop(self):
        for name, proc in list(self.procs.items()):
            self._kill(proc.pid, proc, self.STOP_SIGNAL.get(name, signal.SIGTERM))
            del self.procs[name]
        if self.own:
            shutil.rmtree(self.root, ignore_errors=True)

    @classmethod
    def stop_dir(cls, root):
        """Stops what `start` recorded in root/services.json (another process started them)."""
        with open(os.path.join(root, "services.json")) as f:
            pids = json.load(f)["pids"]
        for name, pid in pids.items():
            cls._kill(pid, None, cls.STOP_SIGNAL.get(name, signal.SIGTERM))

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
