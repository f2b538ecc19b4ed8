#!/usr/bin/env python3
"""Goal: the http node on a real `venture serve` does what docs/http.md says, and the egress
(SSRF) guard blocks every attack form in a corpus of more than 100 URLs, redirects, headers and
methods, with nothing ever reaching a target.

Method: a local fixture HTTP server (helpers/fixture.py) on 127.0.0.5 plays the remote side and
is the only thing allow-listed (`--egress-allow 127.0.0.5/32`); attacks aim at 127.0.0.1 and
every other address class at a trap port, where trap listeners on 0.0.0.0 and [::] count any
connection (they catch every local address: all of 127/8, ::1, this host's own addresses). Each
attack runs through the real http node in its own run with retries allowed (3 attempts): it must
fail with egress_denied or invalid_request after exactly one attempt, the traps must see no
connection, and the fixture no request carrying the attack's tag. The traps are shown to catch
every address form first (a positive control), so a silent trap cannot pass the test.

The test re-runs itself inside a new network namespace (`unshare --net`, as root) when it can:
there only loopback exists, so an attack on a private, metadata or NAT64 address could not leave
the machine even if the guard failed (it would fail differently, and the test with it); and two
"public" addresses (11.22.33.44, 2001:db8::8) are added to lo as this host's own addresses, to
prove the own-address rule. Without a namespace the off-host entries are left out (and said so).

Behaviour tests (same server): JSON GET with query and headers, POST with JSON and text bodies,
expect_status, timeouts (retryable), response_too_large, redirects (credentials kept on the same
origin, stripped across origins), a flaky 503 that succeeds on attempt 3 with the same
Idempotency-Key each time, 429 + Retry-After honoured (read from the node.retrying event's due
minus its time), 300 requests in flight at once with few server threads, and connection reuse.
A second server checks the allow-list's host-name and environment forms, and bad entries stop
startup with a message naming them. No timing assertions: waits are on states.

Usage: egress_test.py BINARY SOURCE_DIR [TEST_NAME_SUBSTRING...]
       (VENTURE_EGRESS_NETNS=0 runs without a network namespace)
"""
import datetime
import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers.fixture import Fixture, Trap  # noqa: E402
from helpers.harness import check, note, require, run_all, test  # noqa: E402
from helpers.server import Server, binary_serves_http  # noqa: E402

BIN, ROOT = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
OWN_PUBLIC = ["11.22.33.44", "2001:db8::8"]  # added to lo inside the namespace
NETNS_SETUP = ("ip link set lo up && ip addr add 11.22.33.44/32 dev lo && "
               "ip addr add 2001:db8::8/128 dev lo")


def reexec_in_netns():
    """Runs this test again inside a fresh network namespace when possible; returns its exit
    code, or None to go on here."""
    if os.environ.get("VENTURE_EGRESS_NETNS") is not None:
        return None
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        os.environ["VENTURE_EGRESS_NETNS"] = "0"
        return None
    probe = subprocess.run(["unshare", "--net", "sh", "-c", NETNS_SETUP],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        print(f"no network namespace ({probe.stderr.strip()}); running in place", flush=True)
        os.environ["VENTURE_EGRESS_NETNS"] = "0"
        return None
    env = dict(os.environ, VENTURE_EGRESS_NETNS="1")
    cmd = ["unshare", "--net", "sh", "-c", NETNS_SETUP + ' && exec "$@"', "sh",
           sys.executable, os.path.abspath(__file__), *sys.argv[1:]]
    return subprocess.run(cmd, env=env).returncode


def in_netns():
    if os.environ.get("VENTURE_EGRESS_NETNS") != "1":
        return False
    out = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    ifaces = {line.split()[1] for line in out.splitlines() if line.strip()}
    return ifaces == {"lo"} and all(a in out for a in OWN_PUBLIC)


def own_addresses():
    """This host's interface addresses other than loopback (what `ip -o addr` lists)."""
    out = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    addrs = []
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 4 and f[2] in ("inet", "inet6"):
            a = f[3].split("/")[0]
            if a not in ("127.0.0.1", "::1") and not a.startswith("fe80:"):
                addrs.append(a)
    return addrs


def loopback_names():
    """Names that resolve to a loopback address here (/etc/hosts and the host name)."""
    names = set()
    try:
        with open("/etc/hosts") as f:
            for line in f:
                fields = line.split("#")[0].split()
                if len(fields) >= 2 and (fields[0].startswith("127.") or fields[0] == "::1"):
                    names.update(fields[1:])
    except OSError:
        pass
    names.add(socket.gethostname())
    out = []
    for n in sorted(names):
        try:
            if all(ai[4][0].startswith("127.") or ai[4][0] == "::1"
                   for ai in socket.getaddrinfo(n, 80, proto=socket.IPPROTO_TCP)):
                out.append(n)
        except OSError:
            pass
    return out


def hostport(a, port):
    return f"[{a}]:{port}" if ":" in a else f"{a}:{port}"


# ---- the attack corpus ---------------------------------------------------------------------

DENIED = ("egress_denied",)
INVALID = ("invalid_request",)
EITHER = ("egress_denied", "invalid_request")


def corpus(T, fx, netns):
    """[(name, inputs, expected codes, offhost)] — `offhost`: the address is not on this
    machine, so the entry runs only inside the network namespace."""
    FP = fx.ports[0]
    E = []

    def add(name, url, codes=DENIED, offhost=False, headers=None, method=None):
        inputs = {"url": url}
        if headers is not None:
            inputs["headers"] = headers
        if method is not None:
            inputs["method"] = method
        E.append((name, inputs, codes, offhost))

    def at(host, path="/"):
        return f"http://{host}:{T}{path}"

    # Numeric IPv4 spellings of loopback (curl's parser normalises them; the guard judges the
    # address connected), and other 127/8 addresses.
    for h in ["127.0.0.1", "2130706433", "0x7f000001", "0X7F000001", "017700000001",
              "0177.0.0.1", "0177.0000.0000.0001", "0x7f.0.0.1", "0x7f.0x0.0x0.0x1", "127.1",
              "127.0.1", "0x7f.1", "0177.1", "127.000.000.001", "0x7f.0.1", "0x7f.0.0.0x1",
              "0177.0x0.0.1", "127.0.0.2", "127.127.127.127", "127.255.255.254", "0x7f.1.2.3"]:
        add("ipv4 " + h, at(h))
    for h in ["0.0.0.0", "0", "0x0", "00", "0.0", "0x00000000"]:
        add("zero " + h, at(h))
    # Percent-encoded hosts.
    add("pct 127.0.0.1", "http://%31%32%37%2e%30%2e%30%2e%31:" + str(T) + "/", EITHER)
    add("pct last octet", "http://127.0.0.%31:" + str(T) + "/", EITHER)
    add("pct localhost", "http://%6c%6f%63%61%6c%68%6f%73%74:" + str(T) + "/", EITHER)
    add("pct zero", "http://%30:" + str(T) + "/", EITHER)
    # IPv6 forms of loopback and embeddings of IPv4 loopback (on this machine).
    for h in ["::1", "0:0:0:0:0:0:0:1", "0000::0001", "::ffff:127.0.0.1", "::ffff:7f00:1",
              "::FFFF:127.0.0.1", "::ffff:127.0.0.2", "::ffff:0.0.0.0", "::", "0::0"]:
        add("ipv6 " + h, at(f"[{h}]"))
    # Embeddings that a broken guard would send off this machine: namespace only.
    for h in ["::127.0.0.1", "::7f00:1", "::ffff:0:127.0.0.1", "::ffff:0:7f00:1",
              "64:ff9b::7f00:1", "64:ff9b::127.0.0.1", "64:ff9b:1::7f00:1", "64:ff9b:1:ffff::1",
              "2002:7f00:1::", "2002:7f00:1::1", "2002:a9fe:a9fe::1",
              "2001:0:4136:e378:8000:63bf:80ff:fffe", "2001::1", "fe80::1", "fe80::1%25lo",
              "fe80::1%251", "fc00::1", "fd00::1", "fdff:ffff::1", "ff02::1", "ff05::2",
              "::ffff:a9fe:a9fe", "::ffff:169.254.169.254", "::ffff:10.0.0.1",
              "::ffff:192.168.1.1", "fd00:ec2::254"]:
        add("ipv6 " + h, at(f"[{h}]"), offhost=True)
    add("zone id on loopback", at("[::1%25lo]"), EITHER)
    # Cloud metadata and private, shared, reserved, documentation and multicast ranges.
    for h in ["169.254.169.254", "169.254.170.2", "0xa9fea9fe", "2852039166",
              "0251.0376.0251.0376", "0xa9.0xfe.0xa9.0xfe", "100.100.100.200", "10.0.0.1",
              "10.255.255.254", "012.0.0.1", "167772161", "0x0a000001", "172.16.0.1",
              "172.31.255.254", "192.168.0.1", "192.168.1.1", "100.64.0.1", "198.18.0.1",
              "192.0.0.1", "192.0.2.1", "198.51.100.1", "203.0.113.1", "224.0.0.1",
              "239.255.255.250", "240.0.0.1", "255.255.255.255"]:
        add("range " + h, at(h), offhost=True)
    # This host's own addresses.
    for a in (OWN_PUBLIC if netns else own_addresses()):
        add("own " + a, at(f"[{a}]" if ":" in a else a))
    # Names of this host.
    names = ["localhost", "LOCALHOST", "LocalHost", "foo.localhost", "a.b.c.localhost",
             "LOCALHOST.localhost"]
    for n in loopback_names():
        if n.lower() != "localhost":
            names.append(n)
    for n in names:
        add("name " + n, at(n))
    # Credentials and parser confusion. `tag` queries let the fixture tell if one got through.
    fp = f"127.0.0.5:{FP}"
    add("userinfo", f"http://user:pw@{fp}/echo?tag=atk-u1", INVALID)
    add("user only", f"http://user@{fp}/echo?tag=atk-u2", INVALID)
    add("empty userinfo", f"http://:@{fp}/echo?tag=atk-u3", INVALID)
    add("allowed@internal", f"http://{fp}@127.0.0.1:{T}/", INVALID)
    add("example.com@internal", f"http://example.com@127.0.0.1:{T}/", INVALID)
    add("backslash", f"http://127.0.0.1:{T}\\@{fp}/echo?tag=atk-u6", EITHER)
    add("backslash 2", f"http://{fp}\\@127.0.0.1:{T}/", EITHER)
    add("fragment @", f"http://127.0.0.1:{T}#@{fp}/echo?tag=atk-u8")
    add("query @", f"http://127.0.0.1:{T}?@{fp}/echo")
    add("path fragment @", f"http://127.0.0.1:{T}/#@{fp}/echo")
    add("encoded @ in port", f"http://{fp}%40127.0.0.1:{T}/", EITHER)
    add("encoded slash userinfo", f"http://127.0.0.1%2f@{fp}/echo?tag=atk-u12", EITHER)
    add("NUL in host", f"http://127.0.0.1%00.{fp}/echo?tag=atk-u13", EITHER)
    add("CRLF in host", f"http://127.0.0.1%0d%0a:{T}/", EITHER)
    add("leading space", f" http://127.0.0.1:{T}/", INVALID)
    add("trailing space", f"http://127.0.0.1:{T}/ ", INVALID)
    add("space in host", f"http://127.0.0.1 :{T}/", INVALID)
    add("tab in host", f"http://127.0.0.1\t:{T}/", INVALID)
    add("CRLF in URL", f"http://{fp}/echo?tag=atk-u19\r\nX-Injected: 1", INVALID)
    add("LF in path", f"http://{fp}/echo?tag=atk-u20\nHost: evil", INVALID)
    add("one slash", f"http:/127.0.0.1:{T}/", EITHER)
    add("no slash", f"http:127.0.0.1:{T}/", EITHER)
    add("backslashes", f"http:\\\\127.0.0.1:{T}\\", EITHER)
    add("upper-case scheme", f"HTTP://127.0.0.1:{T}/")
    add("IDN circled localhost", f"http://\u24db\u24de\u24d2\u24d0\u24db\u24d7\u24de\u24e2\u24e3:{T}/",
        EITHER)
    add("fullwidth localhost", f"http://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54:{T}/",
        EITHER)
    add("ideographic dots", f"http://127\u30020\u30020\u30021:{T}/", EITHER)
    # Other schemes.
    for u in ["file:///etc/passwd", "file://localhost/etc/passwd", "FILE:///etc/passwd",
              f"gopher://127.0.0.1:{T}/_GET%20/", f"gophers://127.0.0.1:{T}/",
              f"dict://127.0.0.1:{T}/info", f"ftp://127.0.0.1:{T}/", f"ftps://127.0.0.1:{T}/",
              f"ldap://127.0.0.1:{T}/", f"ldaps://127.0.0.1:{T}/", f"tftp://127.0.0.1:{T}/x",
              f"telnet://127.0.0.1:{T}/", f"smtp://127.0.0.1:{T}/", f"imap://127.0.0.1:{T}/",
              f"pop3://127.0.0.1:{T}/", f"rtsp://127.0.0.1:{T}/", f"mqtt://127.0.0.1:{T}/",
              f"scp://127.0.0.1:{T}/x", f"sftp://127.0.0.1:{T}/x", f"smb://127.0.0.1:{T}/x",
              f"ws://127.0.0.1:{T}/", f"wss://127.0.0.1:{T}/", f"jar:http://127.0.0.1:{T}/!/",
              "data:text/plain,hi", "javascript:alert(1)", "netdoc:///etc/passwd",
              "unix:///var/run/docker.sock", f"http+unix://127.0.0.1:{T}/"]:
        add("scheme " + u.split(":")[0], u, INVALID)
    # Redirects from the allow-listed fixture: to internal addresses, other schemes, userinfo.
    targets = [at("127.0.0.1"), at("localhost"), at("[::1]"), at("0x7f000001"),
               at("2130706433"), at("[::ffff:127.0.0.1]"), at("0.0.0.0"), at("127.1"),
               "file:///etc/passwd", f"gopher://127.0.0.1:{T}/_x", f"dict://127.0.0.1:{T}/x",
               f"ftp://127.0.0.1:{T}/", f"ldap://127.0.0.1:{T}/", f"//127.0.0.1:{T}/",
               f"http://user:pw@{fp}/echo?tag=atk-r15", "javascript:alert(1)",
               f"http://{fp}@127.0.0.1:{T}/"]
    targets += [at(OWN_PUBLIC[0] if netns else "127.0.0.3")]
    for i, to in enumerate(targets):
        status = [301, 302, 303, 307, 308][i % 5]
        add(f"redirect {status} to {to}",
            fx.url("/redirect?" + urllib.parse.urlencode({"to": to, "status": status})))
    for to in [at("169.254.169.254", "/latest/meta-data/"), at("10.0.0.1"), at("[fd00::1]")]:
        add(f"redirect to {to}", fx.url("/redirect?" + urllib.parse.urlencode({"to": to})),
            offhost=True)
    inner = fx.url("/redirect?" + urllib.parse.urlencode({"to": at("127.0.0.1")}), origin=1)
    add("two hops then internal", fx.url("/redirect?" + urllib.parse.urlencode({"to": inner})))
    # Header injection: the fixture is allowed, so a request that got out would be seen there.
    hdrs = [{"X-A": "a\r\nX-Injected: 1"}, {"X-A": "a\nX-Injected: 1"}, {"X-A": "a\rb"},
            {"X-A": "a\u0000b"}, {"X-A\r\nX-Injected": "1"}, {"X A": "1"}, {"X-A:": "1"},
            {"": "1"}, {"Host": "127.0.0.1"}, {"host": "evil.example"}, {"HOST": "x"},
            {"Content-Length": "0"}, {"Transfer-Encoding": "chunked"}, {"Connection": "close"},
            {"Upgrade": "websocket"}, {"TE": "trailers"},
            {"X-B": "\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: 127.0.0.1"}]
    for i, h in enumerate(hdrs):
        add(f"header {json.dumps(h)}", fx.url(f"/echo?tag=atk-h{i}"), INVALID, headers=h)
    for i, m in enumerate(["GET /x HTTP/1.1\r\nHost: evil\r\n\r\nGET", "TRACE", "CONNECT",
                           "PROPFIND", "G E T"]):
        add(f"method {m!r}", fx.url(f"/echo?tag=atk-m{i}"), INVALID, method=m)
    return E


# ---- workflows ------------------------------------------------------------------------------

RETRY3 = {"max_attempts": 3, "initial_interval": "10ms", "backoff_coefficient": 1}

ATTACK = {
    "name": "egress-attack",
    "nodes": [{"id": "fetch", "type": "http", "retry": RETRY3,
               "config": {"url": "${{ .inputs.url }}",
                          "method": "${{ .inputs.method // \"GET\" }}",
                          "headers": "${{ .inputs.headers // {} }}"}}],
}


def one_node(name, config, retry=None, node="call", **extra):
    n = {"id": node, "type": "http", "config": config}
    if retry:
        n["retry"] = retry
    n.update(extra)
    return {"name": name, "nodes": [n]}


class Ctx:
    pass


def setup():
    if not binary_serves_http(BIN):
        raise RuntimeError(f"{BIN} serve has no --listen: this build does not serve HTTP yet")
    c = Ctx()
    c.netns = in_netns()
    note("network namespace: " + ("yes (off-host entries included)" if c.netns else
                                  "no (off-host entries left out)"))
    c.fx = Fixture("127.0.0.5", origins=2).start()
    c.trap = Trap()
    c.server = Server(BIN, extra_args=["--egress-allow", "127.0.0.5/32"]).start()
    c.admin = c.server.client()
    c.admin.register(ATTACK)
    return c


def teardown(c):
    if c is None:
        return
    check(c.server.stop() == 0, "SIGTERM: exit 0")
    c.server.cleanup()
    c.fx.stop()
    c.trap.stop()


def run_def(c, definition, inputs=None, timeout=120):
    """Registers `definition`, runs it, waits; returns (run, events)."""
    c.admin.register(definition)
    rid = c.admin.start(workflow=definition["name"], inputs=inputs or {})["id"]
    run = c.admin.wait(rid, timeout=timeout)
    return run, c.admin.events(rid)


def node(run, nid="call"):
    return run["nodes"][nid]


def parse_time(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


# ---- the guard ------------------------------------------------------------------------------

@test
def traps_catch_every_local_address_form(c):
    """The positive control: a direct connection to each address form counts."""
    before = c.trap.count()
    targets = ["127.0.0.1", "127.0.0.2", "127.255.255.254", "::1"]
    targets += OWN_PUBLIC if c.netns else own_addresses()
    for a in targets:
        fam = socket.AF_INET6 if ":" in a else socket.AF_INET
        with socket.socket(fam, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect((a, c.trap.port))
            s.sendall(b"GET / HTTP/1.1\r\n\r\n")
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(("::ffff:127.0.0.1", c.trap.port))
    got = c.trap.count() - before
    check(got == len(targets) + 1, f"trap saw {got} of {len(targets) + 1} direct connections")
    c.trap_baseline = c.trap.count()


@test
def ssrf_corpus_is_blocked(c):
    entries = corpus(c.trap.port, c.fx, c.netns)
    run_here = [e for e in entries if c.netns or not e[3]]
    note(f"{len(entries)} attack entries, {len(run_here)} run here"
         + ("" if c.netns else f" ({len(entries) - len(run_here)} off-host ones need a network "
                               "namespace)"))
    require(len(run_here) >= 100, f"the corpus has {len(run_here)} entries here, fewer than 100")
    baseline = getattr(c, "trap_baseline", c.trap.count())
    started = [(e, c.admin.start(workflow="egress-attack", inputs=e[1])["id"]) for e in run_here]
    bad = []
    by_code = {}
    for (name, inputs, codes, _), rid in started:
        run = c.admin.wait(rid)
        n = run["nodes"]["fetch"]
        err = n.get("error") or {}
        by_code[err.get("code")] = by_code.get(err.get("code"), 0) + 1
        if os.environ.get("VENTURE_EGRESS_VERBOSE"):
            note(f"{name!r}: {err.get('code')}: {err.get('message')}")
        if run["status"] != "failed" or err.get("code") not in codes or n.get("attempts") != 1:
            bad.append(f"{name}: run {run['status']}, node {n.get('status')} after "
                       f"{n.get('attempts')} attempts, error {err}")
    for b in bad:
        check(False, b)
    note(f"{len(run_here) - len(bad)} of {len(run_here)} blocked as expected; codes {by_code}")
    hits = c.trap.count() - baseline
    check(hits == 0, f"the traps saw {hits} connections: {c.trap.hits[-hits:] if hits else ''}")
    leaked = c.fx.seen(lambda r: str(r["query"].get("tag", "")).startswith("atk-"))
    check(not leaked, f"the fixture received blocked requests: {leaked[:3]}")


@test
def blocked_error_names_the_reason(c):
    run = c.admin.wait(c.admin.start(workflow="egress-attack",
                                     inputs={"url": f"http://localhost:{c.trap.port}/"})["id"])
    msg = (run["nodes"]["fetch"].get("error") or {}).get("message", "")
    check("localhost resolves to" in msg and "loopback" in msg, f"message: {msg!r}")
    run = c.admin.wait(c.admin.start(
        workflow="egress-attack", inputs={"url": f"http://0x7f000001:{c.trap.port}/"})["id"])
    msg = (run["nodes"]["fetch"].get("error") or {}).get("message", "")
    check(msg == "127.0.0.1 is loopback (127.0.0.0/8)", f"message: {msg!r}")
    run = c.admin.wait(c.admin.start(workflow="egress-attack",
                                     inputs={"url": "gopher://127.0.0.1:70/"})["id"])
    msg = (run["nodes"]["fetch"].get("error") or {}).get("message", "")
    check("http and https" in msg and "gopher" in msg, f"message: {msg!r}")


@test
def allow_list_host_names_and_environment(c):
    """A second server allow-lists by VENTURE_EGRESS_ALLOW: a host name and a CIDR."""
    fx1 = Fixture("127.0.0.1", origins=1).start()
    fx6 = Fixture("127.0.0.6", origins=1).start()
    srv = Server(BIN, env={"VENTURE_EGRESS_ALLOW": "localhost, 127.0.0.6/32"}).start()
    try:
        a = srv.client()
        a.register(ATTACK)

        def fetch(url):
            run = a.wait(a.start(workflow="egress-attack", inputs={"url": url})["id"])
            return run["nodes"]["fetch"]

        p1, p6 = fx1.ports[0], fx6.ports[0]
        for url in [f"http://localhost:{p1}/echo?tag=ok1", f"http://LOCALHOST:{p1}/echo?tag=ok2",
                    f"http://127.0.0.6:{p6}/echo?tag=ok3"]:
            n = fetch(url)
            check(n["status"] == "succeeded" and n["output"]["status"] == 200,
                  f"{url}: {n.get('status')} {n.get('error')}")
        denied = [f"http://127.0.0.1:{p1}/echo?tag=no1",
                  f"http://[::ffff:127.0.0.1]:{p1}/echo?tag=no3",
                  f"http://127.0.0.5:{c.fx.ports[0]}/echo?tag=no4"]
        if c.netns:  # "localhost." is looked up in DNS: only where no query can leave
            denied.append(f"http://localhost.:{p1}/echo?tag=no2")
        for url in denied:
            n = fetch(url)
            check(n["status"] == "failed" and (n.get("error") or {}).get("code")
                  in ("egress_denied", "network_error"), f"{url}: {n.get('status')} {n.get('error')}")
            check((n.get("error") or {}).get("code") == "egress_denied" or "localhost." in url,
                  f"{url}: {n.get('error')}")
        check(len(fx1.seen_tag("no")) == 0 and len(c.fx.seen_tag("no4")) == 0,
              "a request the allow-list does not open reached a fixture")
        check(len(fx1.seen_tag("ok")) == 2 and len(fx6.seen_tag("ok3")) == 1,
              "the allowed requests reached their fixtures")
    finally:
        check(srv.stop() == 0, "second server: SIGTERM exit 0")
        srv.cleanup()
        fx1.stop()
        fx6.stop()


@test
def bad_allow_entries_stop_startup(c):
    for args, env, bad in [(["--egress-allow", "10.0.0.0/33"], {}, "10.0.0.0/33"),
                           (["--egress-allow", "127.0.0.5/32,not a host!"], {}, "not a host!"),
                           ([], {"VENTURE_EGRESS_ALLOW": "10.1.2.0/24,::1/200"}, "::1/200")]:
        d = os.path.join(c.server.own_tmp.name, "bad-" + uuid.uuid4().hex[:8])
        e = dict(os.environ, **env)
        r = subprocess.run([BIN, "serve", "--data-dir", d, "--listen", "127.0.0.1:0", *args],
                           capture_output=True, text=True, env=e, timeout=60)
        check(r.returncode != 0 and "egress.allow" in r.stderr and bad in r.stderr,
              f"{args} {env}: exit {r.returncode}, stderr {r.stderr.strip()!r}")


# ---- the http node --------------------------------------------------------------------------

@test
def json_get_with_query_and_headers(c):
    run, _ = run_def(c, one_node("h-get", {
        "url": c.fx.url("/echo?fixed=1"),
        "query": {"q": "a b&c=d/é", "n": "${{ .inputs.n }}"},
        "headers": {"X-Trace": "t-1", "Accept": "application/json"}}), {"n": "7"})
    n = node(run)
    require(run["status"] == "succeeded", f"run: {run['status']} {n.get('error')}")
    out = n["output"]
    check(out["status"] == 200, f"status {out['status']}")
    check(out["headers"].get("content-type") == "application/json", f"headers {out['headers']}")
    body = out["body"]
    check(isinstance(body, dict), f"the JSON body is parsed: {body!r}")
    check(body["method"] == "GET" and body["query"] == {"fixed": "1", "q": "a b&c=d/é", "n": "7"},
          f"echo {body}")
    h = body["headers"]
    check(h.get("x-trace") == "t-1" and h.get("accept") == "application/json", f"headers {h}")
    check(h.get("user-agent", "").startswith("venture/"), f"user-agent {h.get('user-agent')}")
    check(h.get("idempotency-key") == f"{run['id']}/call/0", f"key {h.get('idempotency-key')}")


@test
def post_json_and_text_bodies(c):
    run, _ = run_def(c, one_node("h-post-json", {
        "method": "POST", "url": c.fx.url("/echo"), "body": {"a": [1, 2], "b": "${{ .inputs.b }}"}}),
        {"b": "x"})
    body = node(run)["output"]["body"]
    check(body["method"] == "POST" and json.loads(body["body"]) == {"a": [1, 2], "b": "x"}
          and body["headers"].get("content-type") == "application/json", f"echo {body}")
    run, _ = run_def(c, one_node("h-post-text", {
        "method": "PUT", "url": c.fx.url("/echo"), "body": "plain words"}))
    body = node(run)["output"]["body"]
    check(body["method"] == "PUT" and body["body"] == "plain words"
          and body["headers"].get("content-type", "").startswith("text/plain"), f"echo {body}")
    run, _ = run_def(c, one_node("h-post-ctype", {
        "method": "PATCH", "url": c.fx.url("/echo"), "body": {"k": 1},
        "headers": {"Content-Type": "application/merge-patch+json"}}))
    body = node(run)["output"]["body"]
    check(body["headers"].get("content-type") == "application/merge-patch+json"
          and json.loads(body["body"]) == {"k": 1}, f"echo {body}")


@test
def text_and_binary_bodies(c):
    run, _ = run_def(c, one_node("h-text", {"url": c.fx.url("/text")}))
    out = node(run)["output"]
    check(out["body"] == "hello text" and "body_base64" not in out, f"text output {out}")
    run, _ = run_def(c, one_node("h-bytes", {"url": c.fx.url("/bytes")}))
    out = node(run)["output"]
    check(out["body"] is None and out.get("body_base64") == "//4AAQ==", f"bytes output {out}")


@test
def expect_status(c):
    run, _ = run_def(c, one_node("h-expect-404", {"url": c.fx.url("/status/404"),
                                                  "expect_status": 404}))
    n = node(run)
    check(run["status"] == "succeeded" and n["output"]["status"] == 404, f"{run['status']} {n}")
    run, _ = run_def(c, one_node("h-unexpected-404", {"url": c.fx.url("/status/404")},
                                 retry=RETRY3))
    n = node(run)
    err = n.get("error") or {}
    check(run["status"] == "failed" and err.get("code") == "http_status" and "404" in
          err.get("message", "") and n["attempts"] == 1, f"404: {n}")
    run, _ = run_def(c, one_node("h-unexpected-503", {"url": c.fx.url("/status/503"),
                                                      "expect_status": [200, 201]}, retry=RETRY3))
    n = node(run)
    err = n.get("error") or {}
    check(run["status"] == "failed" and err.get("code") == "http_status" and n["attempts"] == 3,
          f"503 is retryable: {n}")


@test
def slow_response_times_out_and_is_retryable(c):
    key = "slow-" + uuid.uuid4().hex[:8]
    try:
        run, events = run_def(c, one_node("h-slow", {"url": c.fx.url(f"/hold/{key}"),
                                                     "timeout": "300ms"},
                                          retry={"max_attempts": 2, "initial_interval": "10ms"}))
    finally:
        c.fx.release(key)
    n = node(run)
    check(run["status"] == "failed" and (n.get("error") or {}).get("code") == "timeout"
          and n["attempts"] == 2, f"slow: {n}")
    retrying = [e for e in events if e["type"] == "node.retrying"]
    check(len(retrying) == 1 and retrying[0]["data"]["error"]["code"] == "timeout",
          f"retried once after a timeout: {retrying}")


@test
def huge_response_is_refused(c):
    for chunked in ("", "&chunked=1"):
        run, _ = run_def(c, one_node("h-huge" + ("-chunked" if chunked else ""), {
            "url": c.fx.url(f"/huge?bytes=3000000{chunked}"), "max_response_bytes": 1000000},
            retry=RETRY3))
        n = node(run)
        check(run["status"] == "failed"
              and (n.get("error") or {}).get("code") == "response_too_large"
              and n["attempts"] == 1, f"huge{chunked}: {n}")
    run, _ = run_def(c, one_node("h-big-ok", {"url": c.fx.url("/huge?bytes=1000000"),
                                              "max_response_bytes": 1000000}))
    n = node(run)
    check(run["status"] == "succeeded" and len(n["output"]["body"]) == 1000000,
          f"exactly max_response_bytes: {n.get('status')} {n.get('error')}")


@test
def redirects_keep_credentials_only_on_the_same_origin(c):
    creds = {"Authorization": "Bearer s3cret", "Cookie": "session=abc", "X-Keep": "kept"}
    run, _ = run_def(c, one_node("h-redirect-same", {
        "url": c.fx.url("/redirect?" + urllib.parse.urlencode({"to": "/echo?hop=same"})),
        "headers": creds}))
    h = node(run)["output"]["body"]["headers"]
    check(h.get("authorization") == "Bearer s3cret" and h.get("cookie") == "session=abc"
          and h.get("x-keep") == "kept", f"same origin: {h}")
    cross = c.fx.url("/echo?hop=cross", origin=1)
    run, _ = run_def(c, one_node("h-redirect-cross", {
        "url": c.fx.url("/redirect?" + urllib.parse.urlencode({"to": cross, "status": 307})),
        "method": "POST", "body": {"x": 1}, "headers": creds}))
    out = node(run)["output"]
    h = out["body"]["headers"]
    check("authorization" not in h and "cookie" not in h and h.get("x-keep") == "kept",
          f"cross origin: {h}")
    check(out["body"]["method"] == "POST" and json.loads(out["body"]["body"]) == {"x": 1},
          f"307 keeps method and body: {out['body']}")
    run, _ = run_def(c, one_node("h-redirect-303", {
        "url": c.fx.url("/redirect?" + urllib.parse.urlencode({"to": "/echo", "status": 303})),
        "method": "POST", "body": {"x": 1}}))
    b = node(run)["output"]["body"]
    check(b["method"] == "GET" and b["body"] == "" and "content-type" not in b["headers"],
          f"303 becomes a GET without a body: {b}")
    loop = "/redirect?" + urllib.parse.urlencode({"to": "/redirect?to=/status/200"})
    for _ in range(5):
        loop = "/redirect?" + urllib.parse.urlencode({"to": loop})
    run, _ = run_def(c, one_node("h-redirect-many", {"url": c.fx.url(loop)}, retry=RETRY3))
    n = node(run)
    check((n.get("error") or {}).get("code") == "too_many_redirects" and n["attempts"] == 1,
          f"7 redirects: {n}")


@test
def flaky_503_succeeds_on_attempt_3_with_one_idempotency_key(c):
    key = "flaky-" + uuid.uuid4().hex[:8]
    run, _ = run_def(c, one_node("h-flaky", {"url": c.fx.url(f"/flaky/{key}?fail=2")},
                                 retry=RETRY3))
    n = node(run)
    require(run["status"] == "succeeded", f"flaky: {run['status']} {n}")
    check(n["attempts"] == 3 and n["output"]["body"]["attempts"] == 3, f"attempts: {n}")
    keys = c.fx.idem.get(key, [])
    check(len(keys) == 3 and len(set(keys)) == 1 and keys[0] == f"{run['id']}/call/0",
          f"the receiver saw keys {keys}")


@test
def retry_after_is_honoured(c):
    for variant, wait_ms in (("after=1", 1000), ("after=2&date=1", 2000)):
        key = "rl-" + uuid.uuid4().hex[:8]
        run, events = run_def(c, one_node("h-429-" + variant.split("&")[-1].split("=")[0], {
            "url": c.fx.url(f"/ratelimit/{key}?{variant}")}, retry={
            "max_attempts": 2, "initial_interval": "10ms"}))
        n = node(run)
        check(run["status"] == "succeeded" and n["attempts"] == 2, f"429 {variant}: {n}")
        retrying = [e for e in events if e["type"] == "node.retrying"]
        require(len(retrying) == 1, f"one node.retrying: {retrying}")
        e = retrying[0]
        gap = (parse_time(e["data"]["due"]) - parse_time(e["time"])).total_seconds() * 1000
        check(e["data"]["error"]["code"] == "http_status" and gap >= wait_ms,
              f"{variant}: due - time = {gap} ms, Retry-After {wait_ms} ms: {e}")


@test
def sequential_requests_reuse_connections(c):
    tag = "reuse-" + uuid.uuid4().hex[:8]
    nodes = []
    for i in range(6):
        nd = {"id": f"n{i}", "type": "http", "config": {"url": c.fx.url(f"/conn?tag={tag}")}}
        if i:
            nd["needs"] = [f"n{i - 1}"]
        nodes.append(nd)
    run, _ = run_def(c, {"name": "h-reuse", "nodes": nodes})
    require(run["status"] == "succeeded", f"chain: {run['status']}")
    seen = c.fx.seen_tag(tag)
    conns = {r["conn"] for r in seen}
    check(len(seen) == 6 and len(conns) < len(seen),
          f"{len(seen)} requests over {len(conns)} connections")
    note(f"6 sequential requests used {len(conns)} connection(s)")


@test
def many_requests_in_flight_with_few_threads(c):
    n = 300
    key = "barrier-" + uuid.uuid4().hex[:8]
    d = {"name": "h-barrier", "inputs": {"type": "object"},
         "nodes": [{"id": "call", "type": "http", "foreach": "${{ .inputs.items }}",
                    "config": {"url": c.fx.url(f"/barrier/{key}?n={n}"), "timeout": "120s"}}]}
    c.admin.register(d)
    tasks = f"/proc/{c.server.proc.pid}/task"
    before = len(os.listdir(tasks))
    rid = c.admin.start(workflow="h-barrier", inputs={"items": list(range(n))})["id"]
    try:
        full = c.fx.wait_arrived(key, n)
        threads = len(os.listdir(tasks))
    finally:
        c.fx.release(key)
    require(full, f"only {c.fx.arrived.get(key)} of {n} requests arrived at once")
    note(f"{n} requests in flight at once; the server has {threads} threads ({before} before)")
    # A thread per request would add n threads; the egress client adds none per request.
    check(threads - before < 16 and threads < n // 2,
          f"{threads} server threads ({before} before) for {n} requests in flight")
    run = c.admin.wait(rid)
    check(run["status"] == "succeeded" and len(node(run)["output"]) == n,
          f"barrier run: {run['status']}")


if __name__ == "__main__":
    rc = reexec_in_netns()
    if rc is not None:
        sys.exit(rc)
    run_all(setup, teardown)
