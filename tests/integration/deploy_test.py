#!/usr/bin/env python3
"""Goal: every file under deploy/ (process-compose, systemd, Kubernetes, nats.conf) describes a
deployment the real binary accepts and the seed's topology: the seed's ports (API 8000, engine
8005, NATS 4222/8222, PostgreSQL 5432, Redis 6379), only environment names `venture serve` reads,
only flags and --services values it accepts, probes on /livez and /readyz of the process's own
--listen port, standard Kubernetes labels with matching selectors, Type=notify systemd units with
absolute ExecStart paths; and that the process-compose topology really starts on PostgreSQL, NATS
and Redis, each process sending READY=1 to NOTIFY_SOCKET and answering /readyz.

Method: a small linter (the lint_* functions return a list of problems). What the binary accepts
is read from the binary (`venture serve --help`, `venture version`, runs that end in a usage
error or not), docs/configuration.md's table and src/api/config.cc, never from a copy here. The
negative tests feed the linter broken in-memory copies of the real files and check that each
breakage is reported.

Usage: deploy_test.py BINARY SOURCE_DIR [TEST_NAME_SUBSTRING...]
"""
import copy
import functools
import glob
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers.harness import check, note, require, run_all, test  # noqa: E402

BINARY = os.path.abspath(sys.argv[1])
ROOT = os.path.abspath(sys.argv[2])
DEPLOY = os.path.join(ROOT, "deploy")

# The seed's service catalog (shared/seeds, "Venture Service Catalog (v1)"): the ports are the
# contract this directory must keep. The seed's other services (8001-8004) must not be reused.
SEED_PORTS = {"api": 8000, "engine": 8005, "nats": 4222, "nats_monitor": 8222,
              "postgres": 5432, "redis": 6379}
SEED_RESERVED = {8000, 8001, 8002, 8003, 8004, 8005, 4222, 8222, 5432, 6379}
URL_PORTS = {"LEDGER_DB_URL": 5432, "VENTURE_STORE": 5432, "NATS_URL": 4222, "VENTURE_BUS": 4222,
             "REDIS_URL": 6379, "VENTURE_REDIS": 6379}
K8S_LABELS = ["app.kubernetes.io/name", "app.kubernetes.io/instance",
              "app.kubernetes.io/component", "app.kubernetes.io/part-of",
              "app.kubernetes.io/version", "app.kubernetes.io/managed-by"]
PROBE_PATHS = {"liveness": "/livez", "readiness": "/readyz", "startup": ("/livez", "/readyz")}


# ---------------------------------------------------------------- what the binary accepts ----

def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


@functools.lru_cache(maxsize=None)
def serve_flags():
    """The flags of `venture serve --help` (without --help)."""
    r = subprocess.run([BINARY, "serve", "--help"], capture_output=True, text=True, timeout=30)
    flags = set(re.findall(r"(?m)^\s+(?:-\w,)?(--[a-z][a-z0-9-]*)", r.stdout))
    flags.discard("--help")
    return frozenset(flags)


@functools.lru_cache(maxsize=None)
def binary_version():
    r = subprocess.run([BINARY, "version"], capture_output=True, text=True, timeout=30)
    return r.stdout.split()[-1]


def config_keys_docs():
    """The keys of docs/configuration.md's table (first column, back-quoted)."""
    keys = set()
    for line in read(os.path.join(ROOT, "docs", "configuration.md")).splitlines():
        if line.startswith("| `"):
            keys.update(re.findall(r"`([a-z_.]+)`", line.split("|")[1]))
    return keys


def config_keys_source():
    return set(re.findall(r'\{\{"([a-z_.]+)", "', read(os.path.join(ROOT, "src/api/config.cc"))))


def env_name(key):
    return "VENTURE_" + key.upper().replace(".", "_")


@functools.lru_cache(maxsize=None)
def aliases():
    """The seed's names `venture serve` reads for a VENTURE_* key (src/main.cc, config.cc)."""
    text = read(os.path.join(ROOT, "src/main.cc"))
    pairs = dict((a, v) for v, a in re.findall(r'\{"(VENTURE_[A-Z_]+)", "([A-Z_]+)"\}', text))
    return pairs  # alias -> VENTURE_* name


@functools.lru_cache(maxsize=None)
def accepted_env():
    """Environment names a venture process reads: VENTURE_<KEY> for each key both documented and
    in the source, VENTURE_CONFIG, and the aliases."""
    names = {env_name(k) for k in config_keys_docs() & config_keys_source()}
    if "$VENTURE_CONFIG" in read(os.path.join(ROOT, "docs", "configuration.md")):
        names.add("VENTURE_CONFIG")
    return frozenset(names | set(aliases()))


def run_serve(args, env_extra=None, timeout=20):
    d = tempfile.mkdtemp(prefix="venture-deploy-")
    try:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("VENTURE_") and k not in aliases() and k != "NOTIFY_SOCKET"}
        env.update(env_extra or {})
        try:
            r = subprocess.run([BINARY, "serve", "--data-dir", d, "--listen", "127.0.0.1:0"] + args,
                               capture_output=True, text=True, timeout=timeout, env=env, cwd=d)
            return r.returncode, r.stderr
        except subprocess.TimeoutExpired:
            return None, "still running"
    finally:
        shutil.rmtree(d, ignore_errors=True)


@functools.lru_cache(maxsize=None)
def services_accepted(spec):
    """(accepted, message): whether `venture serve --services SPEC` parses. On the embedded
    store and bus a valid partial SPEC ends in the usage error "needs cluster mode"; an invalid
    one in "services: unknown …" (both exit 2, after the services were parsed). `all` runs the
    whole server, which is not needed to know it is valid."""
    if spec == "all":
        return True, ""
    rc, err = run_serve(["--services", spec])
    return (rc == 2 and "needs cluster mode" in err), err.strip()


# ---------------------------------------------------------------- the processes of a shape ----

class Proc:
    """One `venture serve` process as a shape describes it."""

    def __init__(self, where, argv, env, probes=None, own_filesystem=True):
        self.where = where          # "deploy/x.yaml: name"
        self.argv = argv            # the words after the venture binary
        self.env = env              # name -> value (None when it comes from elsewhere)
        self.probes = probes or []  # (kind, port, path)
        self.own_filesystem = own_filesystem

    def flags(self):
        out, bad, i = {}, [], 1
        while i < len(self.argv):
            word = self.argv[i]
            if word.startswith("--"):
                name, eq, value = word.partition("=")
                if not eq:
                    value = self.argv[i + 1] if i + 1 < len(self.argv) else None
                    i += 1
                out[name] = value
            else:
                bad.append(word)
            i += 1
        return out, bad


def venture_argv(words):
    """The words after `…/venture` when they run `serve`, else None."""
    for i, w in enumerate(words):
        if os.path.basename(w) == "venture" and i + 1 < len(words) and words[i + 1] == "serve":
            return words[i:i + 1], words[i + 1:]
    return None


def listen_port(value):
    m = re.fullmatch(r"(?:\[[^\]]*\]|[^:]*):(\d+)", value or "")
    return int(m.group(1)) if m else None


def url_port(url):
    m = re.match(r"[a-z]+://(?:[^@/]*@)?(?:\[[^\]]*\]|[^:/]*)(?::(\d+))?", url or "")
    return int(m.group(1)) if m and m.group(1) else None


def lint_proc(p):
    """The checks every venture process gets, whatever the shape."""
    problems = []
    flags, extra = p.flags()
    if p.argv[:1] != ["serve"]:
        problems.append(f"{p.where}: not `venture serve`: {p.argv}")
    for word in extra:
        problems.append(f"{p.where}: unexpected argument {word!r}")
    for name in flags:
        if name not in serve_flags():
            problems.append(f"{p.where}: unknown flag {name} (venture serve --help has "
                            f"{', '.join(sorted(serve_flags()))})")
    for name in p.env:
        if name not in accepted_env():
            problems.append(f"{p.where}: environment variable {name} is not one venture reads")
    port = listen_port(flags.get("--listen") or p.env.get("VENTURE_LISTEN"))
    if port is None:
        problems.append(f"{p.where}: no --listen HOST:PORT")
    if not (flags.get("--data-dir") or p.env.get("VENTURE_DATA_DIR")):
        problems.append(f"{p.where}: no --data-dir (each process needs a data dir of its own)")
    services = flags.get("--services") or p.env.get("VENTURE_SERVICES") or "all"
    ok, message = services_accepted(services)
    if not ok:
        problems.append(f"{p.where}: --services {services} is refused: {message}")
    words = re.split(r",", services)
    if "api" in words and port != SEED_PORTS["api"]:
        problems.append(f"{p.where}: the api listens on {port}, the seed's port is 8000")
    if "engine" in words and port != SEED_PORTS["engine"]:
        problems.append(f"{p.where}: the engine listens on {port}, the seed's port is 8005")
    if not ("api" in words or "engine" in words) and port in SEED_RESERVED:
        problems.append(f"{p.where}: workers listen on {port}, a port the seed gives another "
                        "service")
    # Cluster mode: a PostgreSQL store and a NATS bus, from a flag, VENTURE_* or the alias.
    for key, flag, schemes in (("store", "--store", ("postgres://", "postgresql://")),
                               ("bus", "--bus", ("nats://", "tls://"))):
        venture = env_name(key)
        alias = next((a for a, v in aliases().items() if v == venture), None)
        value = flags.get(flag) or p.env.get(venture) or p.env.get(alias)
        if value is None and (venture in p.env or alias in p.env):
            continue  # set, but from a Secret or an EnvironmentFile read elsewhere
        if value is None:
            problems.append(f"{p.where}: no {key}: cluster mode needs {flag}, {venture} or {alias}")
        elif not value.startswith(schemes):
            problems.append(f"{p.where}: {key} {value!r} is not {' or '.join(schemes)}")
    for name, value in p.env.items():
        if name in URL_PORTS and value and url_port(value) != URL_PORTS[name]:
            problems.append(f"{p.where}: {name}={value} is not on the seed's port "
                            f"{URL_PORTS[name]}")
    for kind, probe_port, path in p.probes:
        want = PROBE_PATHS[kind]
        if path not in (want if isinstance(want, tuple) else (want,)):
            problems.append(f"{p.where}: {kind} probe on {path}, not {want}")
        if probe_port != port:
            problems.append(f"{p.where}: {kind} probe on port {probe_port}, the process listens "
                            f"on {port}")
    kinds = {k for k, _, _ in p.probes}
    if p.probes and not {"liveness", "readiness"} <= kinds:
        problems.append(f"{p.where}: needs both a liveness (/livez) and a readiness (/readyz) "
                        f"probe, has {sorted(kinds)}")
    return problems


def lint_procs_together(procs, where):
    """Ports and data dirs are a process's own; the shape runs an api and an engine."""
    problems = []
    seen_ports, seen_dirs, services = {}, {}, []
    for p in procs:
        flags, _ = p.flags()
        port = listen_port(flags.get("--listen"))
        d = flags.get("--data-dir")
        if port in seen_ports:
            problems.append(f"{where}: {p.where} and {seen_ports[port]} both listen on {port}")
        seen_ports[port] = p.where
        if d in seen_dirs and not p.own_filesystem:
            problems.append(f"{where}: {p.where} and {seen_dirs[d]} share the data dir {d}")
        seen_dirs[d] = p.where
        services += (flags.get("--services") or "all").split(",")
    for needed in ("api", "engine"):
        if needed not in services and "all" not in services:
            problems.append(f"{where}: no process runs the {needed}")
    if not any(s == "workers" or s.startswith("workers:") or s == "all" for s in services):
        problems.append(f"{where}: no process runs workers")
    return problems


# ---------------------------------------------------------------- process-compose ----

PC_CONDITIONS = {"process_started", "process_healthy", "process_completed",
                 "process_completed_successfully", "process_log_ready"}


def compose_procs(doc, where):
    procs = []
    for name, spec in (doc.get("processes") or {}).items():
        words = shlex.split(spec.get("command", ""))
        found = venture_argv(words)
        if not found:
            continue
        env = {}
        for item in spec.get("environment") or []:
            k, _, v = item.partition("=")
            env[k] = v
        probes = []
        for kind in ("liveness", "readiness"):
            probe = spec.get(f"{kind}_probe") or {}
            if "http_get" in probe:
                probes.append((kind, probe["http_get"].get("port"), probe["http_get"].get("path")))
        procs.append(Proc(f"{where}: {name}", found[1], env, probes, own_filesystem=False))
    return procs


def lint_compose(doc, where, nats_conf=None):
    problems = []
    if str(doc.get("version")) != "0.5":
        problems.append(f"{where}: version is {doc.get('version')!r}, not \"0.5\"")
    processes = doc.get("processes") or {}
    if not processes:
        return problems + [f"{where}: no processes"]
    seen = {"postgres": False, "nats": False, "redis": False}
    for name, spec in processes.items():
        w = f"{where}: {name}"
        command = spec.get("command", "")
        words = shlex.split(command)
        for dep, cond in (spec.get("depends_on") or {}).items():
            if dep not in processes:
                problems.append(f"{w}: depends on unknown process {dep}")
            if (cond or {}).get("condition") not in PC_CONDITIONS:
                problems.append(f"{w}: depends_on {dep} has condition {cond!r}")
            elif cond["condition"] == "process_healthy" and "readiness_probe" not in processes.get(
                    dep, {}):
                problems.append(f"{w}: waits for {dep} to be healthy, which has no readiness probe")
        one_shot = (spec.get("availability") or {}).get("restart") in ("no", "never")
        if not one_shot and (spec.get("availability") or {}).get("restart") != "on_failure":
            problems.append(f"{w}: availability restart is not on_failure")
        first = os.path.basename(words[0]) if words else ""
        if first == "postgres":
            seen["postgres"] = True
            port = words[words.index("-p") + 1] if "-p" in words else None
            if port != str(SEED_PORTS["postgres"]):
                problems.append(f"{w}: PostgreSQL on port {port}, the seed's is 5432")
            if "readiness_probe" not in spec:
                problems.append(f"{w}: no readiness probe (pg_isready)")
        elif first == "nats-server":
            seen["nats"] = True
            if "-js" not in words and "--jetstream" not in words:
                problems.append(f"{w}: nats-server without -js (JetStream)")
            conf = words[words.index("-c") + 1] if "-c" in words else None
            if conf is None:
                problems.append(f"{w}: nats-server without -c deploy/nats.conf")
            elif nats_conf is None and not os.path.exists(os.path.join(ROOT, conf)):
                problems.append(f"{w}: {conf} does not exist (paths are relative to the "
                                "repository root)")
            http = (spec.get("readiness_probe") or {}).get("http_get") or {}
            if http.get("port") != SEED_PORTS["nats_monitor"] or http.get("path") != "/healthz":
                problems.append(f"{w}: readiness probe is not GET :8222/healthz: {http}")
        elif first == "redis-server":
            seen["redis"] = True
            port = words[words.index("--port") + 1] if "--port" in words else None
            if port != str(SEED_PORTS["redis"]):
                problems.append(f"{w}: Redis on port {port}, the seed's is 6379")
        elif venture_argv(words):
            needs = {"ledger-db", "event-bus", "redis-cache"} & set(processes)
            deps = spec.get("depends_on") or {}
            for d in needs:
                if (deps.get(d) or {}).get("condition") != "process_healthy":
                    problems.append(f"{w}: does not wait for {d} to be healthy")
            for kind in ("readiness", "liveness"):
                probe = (spec.get(f"{kind}_probe") or {}).get("http_get")
                if not probe:
                    problems.append(f"{w}: no {kind}_probe http_get")
                elif probe.get("host") not in ("127.0.0.1", "localhost", "::1"):
                    problems.append(f"{w}: {kind} probe host {probe.get('host')!r}")
    for what, ok in seen.items():
        if not ok:
            problems.append(f"{where}: no {what} process")
    procs = compose_procs(doc, where)
    for p in procs:
        problems += lint_proc(p)
    problems += lint_procs_together(procs, where)
    return problems


# ---------------------------------------------------------------- nats.conf ----

def parse_nats_conf(text):
    """The NATS config format, enough for this file: `key: value` / `key = value` / `key value`,
    `name { … }` blocks, # and // comments. Returns nested dicts of strings."""
    root, stack = {}, []
    cur = root
    lines = []
    for raw in text.splitlines():
        # Comments off, then every brace on a line of its own.
        code = re.sub(r"(^|\s)(#|//).*$", "", raw)
        lines += re.sub(r"\s*([{}])\s*", lambda m: "\n" + m.group(1) + "\n"
                        if m.group(1) == "}" else " {\n", code).splitlines()
    for line in lines:
        line = line.strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z_][\w.-]*)\s*[:=]?\s*\{", line)
        if m:
            stack.append(cur)
            cur[m.group(1)] = cur = {}
            continue
        if line == "}":
            cur = stack.pop()
            continue
        m = re.fullmatch(r"([A-Za-z_][\w.-]*)\s*(?:[:=]\s*|\s+)(.+?)\s*[;,]?", line)
        if m:
            cur[m.group(1)] = m.group(2).strip().strip('"').strip("'")
    if stack:
        raise ValueError("unbalanced braces")
    return root


def lint_nats(conf, where):
    problems = []
    if listen_port(conf.get("listen")) != SEED_PORTS["nats"] and conf.get("port") != str(
            SEED_PORTS["nats"]):
        problems.append(f"{where}: clients listen on {conf.get('listen') or conf.get('port')}, "
                        "the seed's port is 4222")
    monitor = conf.get("http") or conf.get("http_port") or conf.get("monitor_port")
    if (listen_port(monitor) if ":" in (monitor or "") else int(monitor or 0)) != SEED_PORTS[
            "nats_monitor"]:
        problems.append(f"{where}: monitoring on {monitor}, the seed's port is 8222")
    js = conf.get("jetstream")
    if not isinstance(js, dict):
        problems.append(f"{where}: no jetstream {{ … }} block")
    else:
        for key in ("store_dir", "max_file_store"):
            if key not in js:
                problems.append(f"{where}: jetstream has no {key}")
    if not conf.get("server_name"):
        problems.append(f"{where}: no server_name")
    return problems


# ---------------------------------------------------------------- systemd ----

def parse_unit(text):
    """A systemd unit file: section -> key -> [values] (keys repeat; `\\` continues a line)."""
    sections, cur = {}, None
    text = re.sub(r"\\\n", " ", text)
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            cur = sections.setdefault(line[1:-1], {})
            continue
        key, eq, value = line.partition("=")
        if not eq or cur is None:
            raise ValueError(f"not KEY=VALUE: {line!r}")
        cur.setdefault(key.strip(), []).append(value.strip())
    return sections


def parse_env_file(text):
    out = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, eq, value = line.partition("=")
        if eq:
            out[key.strip()] = value.strip().strip('"')
    return out


def unit_words(values):
    return " ".join(values).split()


def lint_unit(unit, where, env_files):
    """`env_files`: basename -> parsed example EnvironmentFile under deploy/systemd/."""
    problems = []
    svc, u = unit.get("Service", {}), unit.get("Unit", {})

    def one(key, default=None):
        return (svc.get(key) or [default])[-1]

    if one("Type") != "notify":
        problems.append(f"{where}: Type={one('Type')}, not notify (venture serve sends READY=1)")
    if one("NotifyAccess") not in ("main", "all"):
        problems.append(f"{where}: NotifyAccess={one('NotifyAccess')}, not main")
    if one("Restart") != "on-failure":
        problems.append(f"{where}: Restart={one('Restart')}, not on-failure")
    if one("User") in (None, "root", "0"):
        problems.append(f"{where}: User={one('User')}: run as an unprivileged user")
    for key, want in (("NoNewPrivileges", ("yes", "true", "1")), ("ProtectSystem", ("strict",)),
                      ("PrivateTmp", ("yes", "true", "1"))):
        if one(key) not in want:
            problems.append(f"{where}: {key}={one(key)}, want {want[0]}")
    for target in ("network-online.target", "postgresql.service", "nats-server.service",
                   "redis-server.service"):
        if target not in unit_words(u.get("After", [])):
            problems.append(f"{where}: not After={target}")
    if "network-online.target" not in unit_words(u.get("Wants", []) + u.get("Requires", [])):
        problems.append(f"{where}: no Wants=network-online.target")
    exec_start = svc.get("ExecStart") or []
    if len(exec_start) != 1:
        return problems + [f"{where}: {len(exec_start)} ExecStart lines"]
    words = shlex.split(exec_start[0].lstrip("-@+!:"))
    if not words or not words[0].startswith("/"):
        problems.append(f"{where}: ExecStart {words[:1]} is not an absolute path")
    found = venture_argv(words)
    if not found:
        return problems + [f"{where}: ExecStart does not run `venture serve`"]
    env = {}
    for path in svc.get("EnvironmentFile", []):
        base = os.path.basename(path.lstrip("-"))
        if base not in env_files:
            problems.append(f"{where}: EnvironmentFile {path} has no example deploy/systemd/{base}")
        else:
            env.update(env_files[base])
    for item in unit_words(svc.get("Environment", [])):
        k, _, v = item.partition("=")
        env[k] = v
    p = Proc(where, found[1], env, own_filesystem=False)
    problems += lint_proc(p)
    flags, _ = p.flags()
    state = one("StateDirectory")
    if not state:
        problems.append(f"{where}: no StateDirectory")
    else:
        if flags.get("--data-dir") != f"/var/lib/{state}":
            problems.append(f"{where}: --data-dir {flags.get('--data-dir')} is not "
                            f"/var/lib/{state} (StateDirectory={state})")
        if f"/var/lib/{state}" not in unit_words(svc.get("ReadWritePaths", [])):
            problems.append(f"{where}: ReadWritePaths does not hold /var/lib/{state}")
    return problems, p


# ---------------------------------------------------------------- Kubernetes ----

def k8s_container_proc(obj, where, env_sources):
    """The venture container of a Deployment as a Proc, plus problems about its pod spec."""
    problems = []
    pod = obj["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    procs = []
    for c in pod.get("containers", []):
        w = f"{where}: container {c.get('name')}"
        words = list(c.get("command") or []) + list(c.get("args") or [])
        found = venture_argv(words)
        if not found:
            continue
        if not words[0].startswith("/"):
            problems.append(f"{w}: command {words[0]} is not an absolute path")
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        for src in c.get("envFrom", []):
            for kind in ("configMapRef", "secretRef"):
                if kind in src:
                    ref = (kind, src[kind]["name"])
                    if ref not in env_sources:
                        problems.append(f"{w}: envFrom {kind} {ref[1]} is not in deploy/k8s")
                    else:
                        env.update(env_sources[ref])
        ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        probes = []
        for kind in ("liveness", "readiness", "startup"):
            probe = c.get(f"{kind}Probe")
            if not probe:
                problems.append(f"{w}: no {kind}Probe")
                continue
            get = probe.get("httpGet") or {}
            port = get.get("port")
            port = ports.get(port, port) if isinstance(port, str) else port
            probes.append((kind, port, get.get("path")))
        sc = c.get("securityContext") or {}
        psc = pod.get("securityContext") or {}
        if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
            problems.append(f"{w}: not runAsNonRoot")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{w}: readOnlyRootFilesystem is not true")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{w}: allowPrivilegeEscalation is not false")
        res = c.get("resources") or {}
        if not res.get("requests") or not res.get("limits"):
            problems.append(f"{w}: resources need requests and limits")
        p = Proc(w, found[1], env, probes, own_filesystem=True)
        flags, _ = p.flags()
        data_dir = flags.get("--data-dir")
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        vol = volumes.get(mounts.get(data_dir))
        if vol is None or not ({"emptyDir", "persistentVolumeClaim", "ephemeral"} & set(vol)):
            problems.append(f"{w}: the data dir {data_dir} is not a writable emptyDir/PVC mount")
        procs.append(p)
    return problems, procs


def lint_k8s(docs, where):
    problems, procs = [], []
    docs = [d for d in docs if d]
    version = binary_version()
    env_sources = {}
    for d in docs:
        if d.get("kind") == "ConfigMap":
            env_sources[("configMapRef", d["metadata"]["name"])] = dict(d.get("data") or {})
        if d.get("kind") == "Secret":
            env_sources[("secretRef", d["metadata"]["name"])] = dict(
                d.get("stringData") or {k: None for k in d.get("data") or {}})
    pod_labels = {}
    for d in docs:
        w = f"{where}: {d.get('kind')} {d.get('metadata', {}).get('name')}"
        labels = d.get("metadata", {}).get("labels") or {}
        for key in K8S_LABELS:
            if key not in labels:
                problems.append(f"{w}: no label {key}")
        if labels.get("app.kubernetes.io/version") not in (None, version):
            problems.append(f"{w}: app.kubernetes.io/version {labels['app.kubernetes.io/version']}"
                            f" is not the binary's {version}")
        if d.get("kind") != "Namespace" and not d.get("metadata", {}).get("namespace"):
            problems.append(f"{w}: no namespace")
        if d.get("kind") in ("ConfigMap", "Secret"):
            for name, value in (d.get("data") or {}).items() | (d.get("stringData") or {}).items():
                if name in URL_PORTS and url_port(value) != URL_PORTS[name]:
                    problems.append(f"{w}: {name}={value} is not on the seed's port "
                                    f"{URL_PORTS[name]}")
        if d.get("kind") == "Deployment":
            tmpl = d["spec"]["template"]["metadata"].get("labels") or {}
            for key in K8S_LABELS:
                if key not in tmpl:
                    problems.append(f"{w}: pod template has no label {key}")
            sel = d["spec"].get("selector", {}).get("matchLabels") or {}
            if not sel or any(tmpl.get(k) != v for k, v in sel.items()):
                problems.append(f"{w}: selector {sel} does not match the pod labels {tmpl}")
            pod_labels[d["metadata"]["name"]] = tmpl
            pp, dp = k8s_container_proc(d, w, env_sources)
            problems += pp
            for p in dp:
                problems += lint_proc(p)
                flags, _ = p.flags()
                if "engine" in (flags.get("--services") or "").split(",") and d["spec"].get(
                        "replicas", 1) < 2:
                    problems.append(f"{w}: the engine runs {d['spec'].get('replicas', 1)} "
                                    "replica(s); the seed says 2+")
            procs += dp
    for d in docs:
        if d.get("kind") != "Service":
            continue
        w = f"{where}: Service {d['metadata']['name']}"
        sel = d["spec"].get("selector") or {}
        matches = [n for n, labels in pod_labels.items()
                   if sel and all(labels.get(k) == v for k, v in sel.items())]
        if not matches:
            problems.append(f"{w}: selector {sel} matches no Deployment's pods")
        for n in matches:
            dep = next(x for x in docs if x.get("kind") == "Deployment"
                       and x["metadata"]["name"] == n)
            container_ports = {p.get("name"): p["containerPort"]
                               for c in dep["spec"]["template"]["spec"]["containers"]
                               for p in c.get("ports", [])}
            for port in d["spec"].get("ports", []):
                target = port.get("targetPort", port["port"])
                target = container_ports.get(target, target)
                if target not in container_ports.values():
                    problems.append(f"{w}: targetPort {port.get('targetPort')} is no container "
                                    f"port of {n}")
                elif port["port"] != target:
                    problems.append(f"{w}: port {port['port']} fronts container port {target}: "
                                    "keep the seed's port on both")
    # The names the API and engine Services answer on are the seed's.
    names = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "Service"}
    for name, port in (("control-plane-api", 8000), ("venture-orchestrator", 8005)):
        if name not in names:
            problems.append(f"{where}: no Service {name} (the seed's DNS name)")
        elif port not in [p["port"] for p in names[name]["spec"].get("ports", [])]:
            problems.append(f"{where}: Service {name} is not on port {port}")
    problems += lint_procs_together(procs, where)
    return problems


# ---------------------------------------------------------------- the files ----

def deploy_files():
    return sorted(p for p in glob.glob(os.path.join(DEPLOY, "**", "*"), recursive=True)
                  if os.path.isfile(p))


def rel(path):
    return os.path.relpath(path, ROOT)


def load_compose():
    path = os.path.join(DEPLOY, "process-compose.yaml")
    return yaml.safe_load(read(path)), rel(path)


def load_k8s():
    docs = []
    for path in sorted(glob.glob(os.path.join(DEPLOY, "k8s", "*.y*ml"))):
        docs += [d for d in yaml.safe_load_all(read(path)) if d]
    return docs


def load_units():
    env_files = {os.path.basename(p): parse_env_file(read(p))
                 for p in glob.glob(os.path.join(DEPLOY, "systemd", "*.env"))}
    units = {rel(p): parse_unit(read(p))
             for p in sorted(glob.glob(os.path.join(DEPLOY, "systemd", "*.service")))}
    return units, env_files


def lint_systemd(units, env_files):
    problems, procs = [], []
    for where, unit in units.items():
        out = lint_unit(unit, where, env_files)
        if isinstance(out, tuple):
            problems += out[0]
            procs.append(out[1])
        else:
            problems += out
    for name, env in env_files.items():
        for key in env:
            if key not in accepted_env():
                problems.append(f"deploy/systemd/{name}: {key} is not a name venture reads")
    return problems + lint_procs_together(procs, "deploy/systemd")


def report(problems):
    for p in problems:
        note(p)
    return problems


# ---------------------------------------------------------------- tests: the real files ----

@test
def every_file_under_deploy_parses():
    files = deploy_files()
    require(files, "deploy/ has files")
    for path in files:
        name = rel(path)
        try:
            if path.endswith((".yaml", ".yml")):
                docs = [d for d in yaml.safe_load_all(read(path)) if d is not None]
                check(docs, f"{name}: no YAML document")
            elif path.endswith(".service"):
                check(parse_unit(read(path)).get("Service"), f"{name}: no [Service]")
            elif path.endswith(".env"):
                check(parse_env_file(read(path)), f"{name}: no KEY=VALUE")
            elif path.endswith(".conf"):
                check(parse_nats_conf(read(path)), f"{name}: empty")
            else:
                check(False, f"{name}: a file the linter does not know how to read")
        except Exception as e:  # noqa: BLE001 - a parse error is the finding
            check(False, f"{name}: does not parse: {e}")


@test
def the_accepted_names_come_from_the_binary_and_docs():
    flags = serve_flags()
    for f in ("--listen", "--data-dir", "--services", "--store", "--bus", "--redis"):
        check(f in flags, f"`venture serve --help` lists {f}: {sorted(flags)}")
    docs, source = config_keys_docs(), config_keys_source()
    check(docs and docs == source, f"docs/configuration.md documents the keys config.cc has: "
                                   f"only in docs {docs - source}, only in source {source - docs}")
    check(set(aliases()) == {"LEDGER_DB_URL", "NATS_URL", "REDIS_URL"},
          f"the seed's aliases: {aliases()}")
    # The binary itself reads each alias: a malformed value stops it with a usage error.
    for alias, venture in aliases().items():
        rc, err = run_serve([], {alias: "zz://not-a-url"})
        check(rc == 2, f"venture serve reads {alias} (as {venture}): exit {rc}: {err.strip()}")


@test
def process_compose_matches_the_seed_and_the_binary():
    doc, where = load_compose()
    check(not report(lint_compose(doc, where)), f"{where} lints clean (see above)")


@test
def nats_conf_has_the_seeds_ports_and_jetstream():
    path = os.path.join(DEPLOY, "nats.conf")
    check(not report(lint_nats(parse_nats_conf(read(path)), rel(path))),
          "deploy/nats.conf lints clean (see above)")
    if shutil.which("nats-server"):
        r = subprocess.run(["nats-server", "-c", path, "-t"], capture_output=True, text=True,
                           timeout=30, cwd=ROOT)
        check(r.returncode == 0, f"nats-server -t accepts deploy/nats.conf: {r.stderr}")


@test
def systemd_units_are_notify_units_of_the_seeds_topology():
    units, env_files = load_units()
    require(len(units) >= 3, f"deploy/systemd has api, engine and worker units: {list(units)}")
    require("venture.env" in env_files, "deploy/systemd/venture.env exists")
    for alias in aliases():
        check(alias in env_files["venture.env"], f"venture.env sets {alias}")
    check(not report(lint_systemd(units, env_files)), "deploy/systemd lints clean (see above)")
    if shutil.which("systemd-analyze"):
        for where in units:
            r = subprocess.run(["systemd-analyze", "verify", "--man=no", os.path.join(ROOT, where)],
                               capture_output=True, text=True, timeout=60)
            # The binary is not installed at /usr/local/bin here; anything else is a finding.
            other = [line for line in (r.stdout + r.stderr).splitlines()
                     if line.strip() and "is not executable" not in line]
            check(not other, f"systemd-analyze verify {where}: {other}")


@test
def kubernetes_objects_are_labelled_probed_and_locked_down():
    docs = load_k8s()
    kinds = sorted(d["kind"] for d in docs)
    for kind in ("ConfigMap", "Deployment", "Service"):
        check(kind in kinds, f"deploy/k8s has a {kind}: {kinds}")
    check(not report(lint_k8s(docs, "deploy/k8s")), "deploy/k8s lints clean (see above)")


@test
def the_shapes_run_the_same_processes():
    """process-compose, systemd and Kubernetes run the same --services on the same ports."""
    def shape(procs):
        out = set()
        for p in procs:
            flags, _ = p.flags()
            out.add((flags.get("--services"), listen_port(flags.get("--listen"))))
        return out
    doc, where = load_compose()
    compose = shape(compose_procs(doc, where))
    units, env_files = load_units()
    systemd = shape(lint_unit(u, w, env_files)[1] for w, u in units.items())
    k8s = set()
    for d in load_k8s():
        if d.get("kind") == "Deployment":
            k8s |= shape(k8s_container_proc(d, "k8s", {})[1])
    check(compose == systemd == k8s,
          f"the same processes: compose {sorted(compose)}, systemd {sorted(systemd)}, "
          f"k8s {sorted(k8s)}")


@test
def docs_deploy_names_the_ports_and_the_environment():
    text = read(os.path.join(ROOT, "docs", "deploy.md"))
    for port in sorted(set(SEED_PORTS.values())):
        check(str(port) in text, f"docs/deploy.md names port {port}")
    for name in ("LEDGER_DB_URL", "NATS_URL", "REDIS_URL", "READY=1", "/readyz", "/livez"):
        check(name in text, f"docs/deploy.md names {name}")
    for path in ("deploy/process-compose.yaml", "deploy/systemd", "deploy/k8s"):
        check(path in text, f"docs/deploy.md points at {path}")


# ---------------------------------------------------------------- tests: the linter fails ----

def compose_proc(doc, name):
    return doc["processes"][name]


def venture_process_names(doc):
    return [n for n, s in doc["processes"].items() if venture_argv(shlex.split(s["command"]))]


def engine_name(doc):
    return next(n for n in venture_process_names(doc)
                if "--services engine" in doc["processes"][n]["command"])


def expect_reported(problems, needle, what):
    hit = [p for p in problems if needle in p]
    check(hit, f"{what}: the linter reports it (looked for {needle!r} in {problems})")


@test
def the_linter_reports_a_wrong_port():
    doc, where = load_compose()
    bad = copy.deepcopy(doc)
    spec = compose_proc(bad, engine_name(bad))
    spec["command"] = spec["command"].replace("0.0.0.0:8005", "0.0.0.0:8006")
    expect_reported(lint_compose(bad, where), "the seed's port is 8005", "engine on 8006")
    expect_reported(lint_compose(bad, where), "probe on port 8005, the process listens on 8006",
                    "probe on another port than --listen")
    bad = copy.deepcopy(doc)
    compose_proc(bad, "redis-cache")["command"] = "redis-server --port 6380"
    expect_reported(lint_compose(bad, where), "the seed's is 6379", "Redis on 6380")
    bad = copy.deepcopy(doc)
    spec = compose_proc(bad, engine_name(bad))
    spec["environment"] = [e.replace(":4222", ":4223") for e in spec["environment"]]
    expect_reported(lint_compose(bad, where), "seed's port 4222", "NATS_URL on 4223")
    expect_reported(lint_nats(parse_nats_conf("listen: 0.0.0.0:4222\nhttp: 8223\n"
                                              "server_name: x\njetstream { store_dir: /x\n"
                                              "max_file_store: 1G\n}\n"), "nats.conf"),
                    "monitoring on 8223", "NATS monitoring on 8223")


@test
def the_linter_reports_an_unknown_env_name():
    doc, where = load_compose()
    bad = copy.deepcopy(doc)
    compose_proc(bad, engine_name(bad))["environment"].append("VENTURE_LISTN=0.0.0.0:8005")
    expect_reported(lint_compose(bad, where), "VENTURE_LISTN is not one venture reads",
                    "a misspelt VENTURE_ name")
    bad = copy.deepcopy(doc)
    compose_proc(bad, engine_name(bad))["environment"].append("DATABASE_URL=postgres://x:5432/v")
    expect_reported(lint_compose(bad, where), "DATABASE_URL is not one venture reads",
                    "a name from another system")
    units, env_files = load_units()
    env_files = copy.deepcopy(env_files)
    env_files["venture.env"]["NATS_SERVERS"] = "nats://x:4222"
    expect_reported(lint_systemd(units, env_files), "NATS_SERVERS is not",
                    "a bad name in venture.env")


@test
def the_linter_reports_an_unknown_flag_and_a_refused_services_value():
    doc, where = load_compose()
    bad = copy.deepcopy(doc)
    spec = compose_proc(bad, engine_name(bad))
    spec["command"] = spec["command"].replace("--listen", "--listn")
    expect_reported(lint_compose(bad, where), "unknown flag --listn", "--listn")
    bad = copy.deepcopy(doc)
    spec = compose_proc(bad, engine_name(bad))
    spec["command"] = spec["command"].replace("--services engine", "--services engine,scheduler")
    expect_reported(lint_compose(bad, where), "--services engine,scheduler is refused",
                    "an unknown service")
    bad = copy.deepcopy(doc)
    name = next(n for n in venture_process_names(bad)
                if "workers:" in bad["processes"][n]["command"])
    spec = compose_proc(bad, name)
    spec["command"] = re.sub(r"--services \S+", "--services workers:http,smtp", spec["command"])
    expect_reported(lint_compose(bad, where), "unknown worker type 'smtp'",
                    "an unknown worker type")


@test
def the_linter_reports_a_missing_label_and_a_selector_mismatch():
    docs = load_k8s()
    bad = copy.deepcopy(docs)
    dep = next(d for d in bad if d["kind"] == "Deployment")
    del dep["metadata"]["labels"]["app.kubernetes.io/part-of"]
    expect_reported(lint_k8s(bad, "k8s"), "no label app.kubernetes.io/part-of", "a missing label")
    bad = copy.deepcopy(docs)
    svc = next(d for d in bad if d["kind"] == "Service")
    svc["spec"]["selector"]["app.kubernetes.io/component"] = "nothing"
    expect_reported(lint_k8s(bad, "k8s"), "matches no Deployment's pods", "a Service selector")
    bad = copy.deepcopy(docs)
    dep = next(d for d in bad if d["kind"] == "Deployment")
    dep["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["path"] = "/health"
    expect_reported(lint_k8s(bad, "k8s"), "liveness probe on /health", "a probe on /health")
    bad = copy.deepcopy(docs)
    dep = next(d for d in bad if d["kind"] == "Deployment")
    dep["spec"]["template"]["spec"]["containers"][0]["securityContext"][
        "readOnlyRootFilesystem"] = False
    expect_reported(lint_k8s(bad, "k8s"), "readOnlyRootFilesystem", "a writable root filesystem")


@test
def the_linter_reports_a_broken_unit():
    units, env_files = load_units()
    where, unit = next(iter(units.items()))
    bad = copy.deepcopy(unit)
    bad["Service"]["Type"] = ["simple"]
    bad["Service"]["ExecStart"] = [bad["Service"]["ExecStart"][0].replace("/usr/local/bin/", "")]
    problems = lint_unit(bad, where, env_files)[0]
    expect_reported(problems, "Type=simple", "Type=simple")
    expect_reported(problems, "not an absolute path", "a relative ExecStart")
    bad = copy.deepcopy(unit)
    bad["Service"]["StateDirectory"] = ["venture/other"]
    expect_reported(lint_unit(bad, where, env_files)[0], "StateDirectory=venture/other",
                    "a data dir outside the StateDirectory")


# ---------------------------------------------------------------- the topology starts ----

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def start_order(doc):
    """The venture processes of the compose file in depends_on order."""
    names = venture_process_names(doc)
    out = []
    while names:
        for n in names:
            deps = set((doc["processes"][n].get("depends_on") or {})) & set(names)
            if not deps:
                out.append(n)
                names.remove(n)
                break
        else:
            raise AssertionError(f"a depends_on cycle among {names}")
    return out


@test
def the_compose_topology_starts_on_postgres_nats_and_redis():
    """Each venture process of deploy/process-compose.yaml, as written but on free ports and the
    test's PostgreSQL/NATS/Redis, sends READY=1 (and STOPPING=1 on SIGTERM) to NOTIFY_SOCKET,
    answers /livez and /readyz, and exits 0."""
    from helpers.services import Services  # noqa: E402 - only this test needs the services
    doc, _ = load_compose()
    tmp = tempfile.mkdtemp(prefix="venture-deploy-")
    procs = []
    try:
        with Services() as services:
            senv = services.env()
            urls = {"LEDGER_DB_URL": senv["VENTURE_TEST_POSTGRES_URL"],
                    "NATS_URL": senv["NATS_URL"], "REDIS_URL": senv["REDIS_URL"]}
            for name in start_order(doc):
                spec = doc["processes"][name]
                words = shlex.split(spec["command"])
                _, argv = venture_argv(words)
                argv = list(argv)
                port = free_port()
                argv[argv.index("--listen") + 1] = f"127.0.0.1:{port}"
                argv[argv.index("--data-dir") + 1] = os.path.join(tmp, name)
                env = {k: v for k, v in os.environ.items()
                       if not k.startswith("VENTURE_") and k not in aliases()}
                for item in spec.get("environment") or []:
                    k, _, v = item.partition("=")
                    env[k] = urls.get(k, v)
                sock_path = os.path.join(tmp, f"{name}.notify")
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                sock.bind(sock_path)
                sock.settimeout(0.2)
                env["NOTIFY_SOCKET"] = sock_path
                proc = subprocess.Popen([BINARY] + argv, env=env, cwd=tmp,
                                        stdout=open(os.path.join(tmp, f"{name}.log"), "w"),
                                        stderr=subprocess.STDOUT)
                procs.append((name, proc, sock, port))
                ready, deadline = False, time.monotonic() + 60
                while not ready and time.monotonic() < deadline and proc.poll() is None:
                    try:
                        ready = b"READY=1" in sock.recv(256)
                    except socket.timeout:
                        pass
                log = read(os.path.join(tmp, f"{name}.log"))[-2000:]
                require(ready, f"{name} ({' '.join(argv)}) sent READY=1: exit {proc.poll()} {log}")
                note(f"{name}: {' '.join(argv)}: READY=1")
                base = f"http://127.0.0.1:{port}"
                check(http_status(base + "/readyz") == 200, f"{name}: /readyz is 200 once ready")
                check(http_status(base + "/livez") == 200, f"{name}: /livez is 200")
            for name, proc, sock, port in reversed(procs):
                proc.terminate()
                try:
                    rc = proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    rc = proc.wait()
                stopping = False
                try:
                    while not stopping:
                        stopping = b"STOPPING=1" in sock.recv(256)
                except socket.timeout:
                    pass
                check(rc == 0, f"{name} exits 0 on SIGTERM, not {rc}")
                check(stopping, f"{name} sent STOPPING=1")
    finally:
        for _, proc, sock, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            sock.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    run_all()
