"""The clustered shape of the integration suites (issue #5): with VENTURE_TEST_CLUSTER=1 every
`Server` of a suite runs `venture serve` on PostgreSQL + NATS JetStream + Redis instead of SQLite
and the in-process bus. ctest registers each suite twice (NAME and NAME_cluster).

One throw-away PostgreSQL 15 and one Redis per test process (a fresh database per Server), and one
nats-server per Server (its streams, consumers and KV buckets are the Server's own, like its data
dir); all started by helpers/services.py on free loopback ports and stopped by PID at exit.
"""
import atexit
import os
import subprocess
import tempfile
import uuid

from helpers.services import Services

ENABLED = os.environ.get("VENTURE_TEST_CLUSTER") == "1"
# The variables that select a store, bus or Redis: cleared for embedded servers so a developer's
# environment (or with-test-services) never turns an embedded test into a clustered one.
SELECTORS = ("VENTURE_STORE", "VENTURE_BUS", "VENTURE_REDIS", "LEDGER_DB_URL", "NATS_URL",
             "REDIS_URL")

_shared = None
_slots = []


def _shared_services():
    global _shared
    if _shared is None:
        s = Services(tempfile.mkdtemp(prefix="venture-cluster-"), nats=False)
        s.own = True
        s.start()
        _shared = s
        atexit.register(_stop_all)
    return _shared


def _stop_all():
    for slot in list(_slots):
        slot.stop()
    if _shared is not None:
        _shared.stop()


class Slot:
    """The cluster dependencies of one Server: a fresh database, its own nats-server, the shared
    Redis. `env()` gives the server's VENTURE_STORE / VENTURE_BUS / VENTURE_REDIS."""

    def __init__(self):
        shared = _shared_services()
        self.pg_port = shared.ports["postgres"]
        self.redis_port = shared.ports["redis"]
        self.database = "v_" + uuid.uuid4().hex[:16]
        subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "venture", "-d",
                        "postgres", "-q", "-c", f"CREATE DATABASE {self.database}"],
                       check=True, capture_output=True, timeout=60)
        self.nats = Services(tempfile.mkdtemp(prefix="venture-nats-"), postgres=False,
                             redis=False)
        self.nats.own = True
        self.nats.start()
        _slots.append(self)

    def env(self):
        return {
            "VENTURE_STORE": f"postgres://venture@127.0.0.1:{self.pg_port}/{self.database}",
            "VENTURE_BUS": f"nats://127.0.0.1:{self.nats.ports['nats']}",
            "VENTURE_REDIS": f"redis://127.0.0.1:{self.redis_port}",
        }

    def stop(self):
        if self in _slots:
            _slots.remove(self)
            self.nats.stop()
