#!/usr/bin/env python3
"""Goal: the approval node and the approvals API of SPEC §1/§3 through the real `venture serve`:
a run waits while an approval is pending; approvers by role and by user (token name); N-of-M
quorum; a rejection rejects (reject_on_any, configurable); the person who started the run may
not approve it unless the node allows it; 403 for who may not decide, 409 once decided; comments
and the decision history in the node output and the events; timeouts with on_timeout
approve/reject/fail; several approvals pending at once (parallel branches, foreach) resolve
independently; pending approvals and their timeouts survive a restart; signed approval links
(GET shows, only the POST from the page decides, single use, tamper-proof); the CLI commands.

Method: real binary on a temporary data dir and a free port; tokens for several people; runs
driven to completion through the HTTP API and the CLI; waiting is on observable state (never on
elapsed time alone).

Usage: approvals_test.py BINARY SOURCE_DIR [TEST_NAME_SUBSTRING...]
"""
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers.harness import check, require, run_all, test  # noqa: E402
from helpers.server import Client, Server  # noqa: E402

BIN, ROOT = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])

PEOPLE = {"alice": "approver", "bob": "approver", "carol": "operator", "dave": "operator",
          "vera": "viewer"}


def gate(**config):
    base = {"title": "Ship it?", "approvers": {"roles": ["approver"]}}
    base.update(config)
    return {"name": "gated", "nodes": [
        {"id": "review", "type": "approval", "config": base},
        {"id": "publish", "type": "noop", "needs": ["review"],
         "if": "${{ .nodes.review.outcome == \"approved\" }}"},
        {"id": "discard", "type": "noop", "needs": ["review"],
         "if": "${{ .nodes.review.outcome != \"approved\" }}"}],
        "output": "${{ .nodes.review.outcome }}"}


class Ctx:
    pass


def setup():
    c = Ctx()
    c.server = Server(BIN, extra_args=["--public-url", "http://approvals.example:9999/"]).start()
    c.admin = c.server.client()
    c.people = {}
    for name, role in PEOPLE.items():
        r = c.admin.post("/v1/tokens", {"name": name, "role": role})
        require(r.status == 201, f"token {name}: {r}")
        c.people[name] = Client(c.server.port, r.json["token"])
    return c


def teardown(c):
    if c is not None:
        c.server.cleanup()


def start(c, definition, who="carol"):
    r = c.people[who].post("/v1/runs", {"definition": definition})
    require(r.status == 201, f"start as {who}: {r}")
    return r.json["id"]


def pending(c, run, count=1, timeout=30):
    """The run's pending approvals once `count` exist (oldest first)."""
    deadline = time.monotonic() + timeout
    while True:
        r = c.admin.get(f"/v1/approvals?run={run}&status=pending")
        require(r.status == 200, f"list approvals: {r}")
        items = sorted(r.json["items"], key=lambda a: (a["created_at"], a["node"],
                                                       a["index"] if a["index"] is not None
                                                       else -1))
        if len(items) >= count or time.monotonic() > deadline:
            require(len(items) == count, f"{count} pending approvals in {run}: {items}")
            return items
        time.sleep(0.05)


def decide(c, who, approval, decision, comment=None):
    body = {"decision": decision}
    if comment is not None:
        body["comment"] = comment
    return c.people[who].post(f"/v1/approvals/{approval}/decide", body)


def events(c, run, prefix):
    return [e for e in c.admin.events(run) if e["type"].startswith(prefix)]


# ---- the gate ------------------------------------------------------------------------------------

@test
def quorum_of_approvers_by_role_and_user(c):
    rid = start(c, gate(approvers={"roles": ["approver"], "users": ["dave"]}, quorum=2,
                        description="two of three", show={"items": [1, 2, 3]}))
    (a,) = pending(c, rid)
    check(c.admin.run(rid)["status"] == "waiting", "the run waits while the approval is pending")
    check(a["title"] == "Ship it?" and a["show"] == {"items": [1, 2, 3]} and a["quorum"] == 2,
          f"the approval shows what was asked: {a}")
    check(a["started_by"] == "carol", f"who started the run is recorded: {a['started_by']}")
    r = decide(c, "alice", a["id"], "approve", "looks right")
    check(r.status == 200 and r.json["status"] == "pending", f"1 of 2: still pending: {r}")
    check(c.admin.run(rid)["status"] == "waiting", "still waiting after one approval")
    r = decide(c, "dave", a["id"], "approve")  # an operator, named as a user
    check(r.status == 200 and r.json["status"] == "approved", f"2 of 2 by user name: {r}")
    done = c.admin.wait(rid)
    check(done["status"] == "succeeded" and done["output"] == "approved", f"run: {done}")
    node = done["nodes"]["review"]
    check(node["outcome"] == "approved", f"outcome approved: {node}")
    out = node["output"]
    check(out["decision"] == "approve" and [d["by"] for d in out["decisions"]] == ["alice", "dave"]
          and out["decisions"][0]["comment"] == "looks right", f"history in the output: {out}")
    check(done["nodes"]["publish"]["status"] == "succeeded" and
          done["nodes"]["discard"]["status"] == "skipped", "the approved branch ran")
    types = [e["type"] for e in events(c, rid, "approval.")]
    check(types == ["approval.requested", "approval.decided", "approval.decided"],
          f"events: {types}")
    r = decide(c, "bob", a["id"], "approve")
    check(r.status == 409 and r.is_problem(), f"once decided: 409, got {r}")


@test
def who_may_not_decide(c):
    rid = start(c, gate(approvers={"roles": ["approver", "operator"], "users": ["vera"]}))
    (a,) = pending(c, rid)
    r = decide(c, "carol", a["id"], "approve")
    check(r.status == 403 and "allow_self_approval" in r.json.get("detail", ""),
          f"the starter may not approve her own run: {r}")
    r = decide(c, "vera", a["id"], "approve")
    check(r.status == 403, f"a viewer may not decide at all (the route): {r}")
    rid2 = start(c, gate(approvers={"users": ["bob"]}))
    (a2,) = pending(c, rid2)
    r = decide(c, "alice", a2["id"], "approve")
    check(r.status == 403 and r.is_problem(), f"an approver not named: 403, got {r}")
    r = decide(c, "bob", a2["id"], "maybe")
    check(r.status == 422 and "/decision" in r.error_paths(), f"bad decision: 422, got {r}")
    r = c.people["bob"].post(f"/v1/approvals/{a2['id']}/decide", raw=b"{nope")
    check(r.status == 400 and r.is_problem(), f"bad JSON: 400, got {r}")
    r = decide(c, "bob", "apr_doesnotexist", "approve")
    check(r.status == 404, f"unknown approval: 404, got {r}")
    check(c.admin.get(f"/v1/approvals/{a2['id']}").json["status"] == "pending",
          "refusals change nothing")
    check(decide(c, "bob", a2["id"], "approve").status == 200, "bob may")
    check(c.admin.wait(rid2)["output"] == "approved", "approved by bob")
    # allow_self_approval lets the starter decide
    rid3 = start(c, gate(approvers={"users": ["carol"]}, allow_self_approval=True))
    (a3,) = pending(c, rid3)
    check(decide(c, "carol", a3["id"], "approve").status == 200, "self-approval when allowed")
    check(c.admin.wait(rid3)["output"] == "approved", "approved by the starter")
    c.admin.post(f"/v1/runs/{rid}/cancel", {"reason": "done testing"})
    check(c.admin.get(f"/v1/approvals/{a['id']}").json["status"] == "cancelled",
          "cancelling the run closes its pending approval")


@test
def a_rejection_rejects_unless_configured(c):
    rid = start(c, gate(quorum=2))
    (a,) = pending(c, rid)
    check(decide(c, "alice", a["id"], "reject", "not yet").status == 200, "reject")
    done = c.admin.wait(rid)
    check(done["status"] == "succeeded" and done["output"] == "rejected" and
          done["nodes"]["discard"]["status"] == "succeeded", f"one rejection rejects: {done}")
    rid = start(c, gate(quorum=2, reject_on_any=False))
    (a,) = pending(c, rid)
    check(decide(c, "alice", a["id"], "reject").json["status"] == "pending",
          "reject_on_any false: one rejection is not enough")
    check(decide(c, "bob", a["id"], "reject").json["status"] == "rejected",
          "two rejections (the quorum) reject")
    check(c.admin.wait(rid)["output"] == "rejected", "rejected")


@test
def timeouts_with_each_on_timeout(c):
    runs = {on: start(c, gate(timeout="1s", on_timeout=on)) for on in ("approve", "reject", "fail")}
    for on, rid in runs.items():
        done = c.admin.wait(rid)
        review = done["nodes"]["review"]
        if on == "fail":
            check(done["status"] == "failed" and review["outcome"] == "timed_out" and
                  review["error"]["code"] == "approval_timed_out", f"on_timeout fail: {done}")
        else:
            want = "approved" if on == "approve" else "rejected"
            check(done["status"] == "succeeded" and done["output"] == want and
                  review["output"]["timed_out"] is True, f"on_timeout {on}: {done}")
        apr = [e for e in events(c, rid, "approval.decided")]
        check(len(apr) == 1 and apr[0]["data"]["decision"] == "timeout",
              f"the timeout is an event: {apr}")


@test
def parallel_and_foreach_approvals(c):
    definition = {"name": "many", "nodes": [
        {"id": "left", "type": "approval",
         "config": {"title": "L", "approvers": {"roles": ["approver"]}}},
        {"id": "right", "type": "approval",
         "config": {"title": "R", "approvers": {"roles": ["approver"]}}},
        {"id": "each", "type": "approval", "foreach": "${{ [\"x\", \"y\", \"z\"] }}",
         "config": {"title": "item ${{ .item }}", "approvers": {"roles": ["approver"]}}},
        {"id": "end", "type": "noop", "needs": ["left", "right", "each"]}],
        "output": "${{ [.nodes.left.outcome, .nodes.right.outcome, .nodes.each.outcome] }}"}
    rid = start(c, definition)
    items = pending(c, rid, count=5)
    titles = sorted(a["title"] for a in items)
    check(titles == ["L", "R", "item x", "item y", "item z"], f"five pending at once: {titles}")
    by_title = {a["title"]: a["id"] for a in items}
    for title, decision in (("item y", "approve"), ("R", "reject"), ("item x", "approve"),
                            ("item z", "approve"), ("L", "approve")):
        r = decide(c, "alice", by_title[title], decision)
        check(r.status == 200, f"decide {title}: {r}")
    done = c.admin.wait(rid)
    check(done["status"] == "succeeded" and done["output"] == ["approved", "rejected", "approved"],
          f"each resolved on its own: {done.get('output')}")
    check(len(done["nodes"]["each"]["output"]) == 3, "foreach output has the three decisions")


@test
def pending_approvals_and_timeouts_survive_a_restart(c):
    srv = Server(BIN).start()
    try:
        a = srv.client()
        tok = a.post("/v1/tokens", {"name": "ann", "role": "approver"}).json["token"]
        ann = Client(srv.port, tok)
        waiting = a.post("/v1/runs", {"definition": gate()}).json["id"]
        timed = a.post("/v1/runs", {"definition": gate(timeout="2s", on_timeout="approve")}
                       ).json["id"]
        deadline = time.monotonic() + 30
        while len(a.get("/v1/approvals?status=pending").json["items"]) < 2:
            require(time.monotonic() < deadline, "two approvals requested")
            time.sleep(0.05)
        check(srv.stop() == 0, "SIGTERM with pending approvals: exit 0")
        time.sleep(2.5)  # the timeout falls due while the server is down
        srv.start()
        done = a.wait(timed)
        check(done["status"] == "succeeded" and done["output"] == "approved" and
              done["nodes"]["review"]["output"]["timed_out"] is True,
              f"a timeout that fell due while down fires after the restart: {done}")
        (p,) = [x for x in a.get("/v1/approvals?status=pending").json["items"]]
        check(p["run"] == waiting, f"the other approval is still pending: {p}")
        srv.kill()  # and a crash, too
        srv.start()
        r = ann.post(f"/v1/approvals/{p['id']}/decide", {"decision": "approve"})
        check(r.status == 200 and r.json["status"] == "approved", f"decided after a crash: {r}")
        check(a.wait(waiting)["output"] == "approved", "the run finishes")
        check(a.get("/v1/audit/verify").json["ok"] is True, "audit ok")
    finally:
        srv.cleanup()


# ---- approval links ------------------------------------------------------------------------------

def link_of(c, run, user):
    (req,) = events(c, run, "approval.requested")
    links = {link["user"]: link for link in req["data"].get("links", [])}
    require(user in links, f"a link for {user}: {req['data'].get('links')}")
    url = links[user]["url"]
    check(url.startswith("http://approvals.example:9999/approve/"),
          f"the link is built from --public-url: {url}")
    return "/" + url.split("/", 3)[3]


def confirm_value(page):
    m = re.search(r'name="confirm" value="([^"]+)"', page)
    return m.group(1) if m else None


def post_form(c, path, fields):
    return Client(c.server.port).request(
        "POST", path, raw=urllib.parse.urlencode(fields).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"})


@test
def approval_links(c):
    rid = start(c, gate(approvers={"users": ["alice", "bob"]}, quorum=2,
                        show={"amount": "<script>alert(1)</script>"}))
    (a,) = pending(c, rid)
    path = link_of(c, rid, "alice")
    anon = Client(c.server.port)
    for _ in range(3):  # link previews, crawlers, a person reading twice
        r = anon.get(path)
        check(r.status == 200 and r.headers.get("content-type", "").startswith("text/html"),
              f"GET shows the page: {r}")
    page = r.text
    check("Ship it?" in page and "&lt;script&gt;" in page and "<script>" not in page,
          "the page shows the content, escaped")
    check(r.headers.get("cache-control") == "no-store" and
          "frame-ancestors 'none'" in r.headers.get("content-security-policy", ""),
          f"no caching, no framing: {r.headers}")
    check(c.admin.get(f"/v1/approvals/{a['id']}").json["decisions"] == [],
          "GETs decide nothing")
    r = post_form(c, path, {"decision": "approve"})
    check(r.status == 400, f"a POST without the page's confirmation: 400, got {r}")
    tampered = path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")
    check(anon.get(tampered).status == 404, "a tampered link: 404")
    body, _, sig = path.rsplit("/", 1)[1].partition(".")
    forged = json.loads(__import__("base64").urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    forged["u"] = "mallory"
    fb = __import__("base64").urlsafe_b64encode(json.dumps(forged).encode()).decode().rstrip("=")
    check(anon.get(f"/approve/{fb}.{sig}").status == 404, "a re-signed payload: 404")
    confirm = confirm_value(page)
    require(confirm, "the page carries a confirmation value")
    r = post_form(c, path, {"decision": "approve", "comment": "via mail", "confirm": confirm})
    check(r.status == 200 and "Recorded" in r.text, f"the page's POST decides: {r}")
    r = post_form(c, path, {"decision": "approve", "confirm": confirm})
    check(r.status == 409, f"the link decides once: 409, got {r}")
    got = c.admin.get(f"/v1/approvals/{a['id']}").json
    check([(d["by"], d["via"], d["comment"]) for d in got["decisions"]] ==
          [("alice", "link", "via mail")], f"recorded as alice via the link: {got['decisions']}")
    check(got["status"] == "pending", "1 of 2")
    bob = link_of(c, rid, "bob")
    r = post_form(c, bob, {"decision": "reject", "confirm": confirm_value(anon.get(bob).text)})
    check(r.status == 200, f"bob rejects by link: {r}")
    check(c.admin.wait(rid)["output"] == "rejected", "rejected")
    check(anon.get(path).status == 200 and "already decided" in anon.get(path).text,
          "after the decision the page says so and offers no form")


@test
def list_filters_and_errors(c):
    r = c.admin.get("/v1/approvals?status=nope")
    check(r.status == 400 and "/query/status" in r.error_paths(), f"bad status: {r}")
    r = c.admin.get("/v1/approvals?limit=0")
    check(r.status == 400 and "/query/limit" in r.error_paths(), f"bad limit: {r}")
    r = c.admin.get("/v1/approvals?cursor=garbage")
    check(r.status == 400 and r.is_problem(), f"bad cursor: {r}")
    r = c.admin.get("/v1/approvals/apr_doesnotexist")
    check(r.status == 404 and r.is_problem(), f"unknown: {r}")
    seen, cursor = [], None
    while True:
        q = "/v1/approvals?limit=2" + (f"&cursor={cursor}" if cursor else "")
        r = c.people["vera"].get(q)  # viewers read
        require(r.status == 200, f"page: {r}")
        seen += [a["id"] for a in r.json["items"]]
        cursor = r.json["next_cursor"]
        if not cursor:
            break
    check(len(seen) == len(set(seen)) and len(seen) >= 5, f"pages without repeats: {len(seen)}")
    r = c.admin.post("/v1/workflows", {"name": "bad", "nodes": [
        {"id": "a", "type": "approval", "config": {"title": "t", "approvers": {
            "roles": ["aprover"]}}}]})
    check(r.status == 422 and "/nodes/0/config/approvers/roles/0" in r.error_paths(),
          f"a misspelt role is refused at registration: {r}")
    r = c.admin.post("/v1/workflows", {"name": "bad", "nodes": [
        {"id": "a", "type": "approval", "config": {"title": "t", "quorum": 3,
                                                   "approvers": {"users": ["x", "y"]}}}]})
    check(r.status == 422 and "/nodes/0/config/quorum" in r.error_paths(),
          f"an unreachable quorum is refused: {r}")


# ---- CLI -----------------------------------------------------------------------------------------

def cli(c, *args, token):
    env = dict(os.environ, VENTURE_ADDRESS=c.server.address, VENTURE_TOKEN=token, NO_COLOR="1")
    return subprocess.run([BIN, *args], capture_output=True, text=True, env=env, timeout=60)


@test
def cli_approvals_list_and_approve(c):
    rid = start(c, gate(show={"n": 1}))
    (a,) = pending(c, rid)
    alice = c.people["alice"].token
    r = cli(c, "approvals", "list", "--run", rid, token=alice)
    check(r.returncode == 0 and a["id"] in r.stdout and "pending" in r.stdout,
          f"approvals list: {r.stdout}{r.stderr}")
    r = cli(c, "approvals", "list", "--status", "pending", "-o", "json", token=alice)
    check(r.returncode == 0 and any(x["id"] == a["id"] for x in json.loads(r.stdout)["items"]),
          f"approvals list -o json: {r.stdout[:300]}")
    r = cli(c, "approvals", "show", a["id"], token=alice)
    check(r.returncode == 0 and "Ship it?" in r.stdout and '"n": 1' in r.stdout,
          f"approvals show: {r.stdout}")
    r = cli(c, "approve", a["id"], "approve", "--reason", "ok", token=c.people["vera"].token)
    check(r.returncode == 4, f"a viewer: exit 4 (auth), got {r.returncode}: {r.stderr}")
    r = cli(c, "approve", a["id"], "maybe", token=alice)
    check(r.returncode == 2, f"a bad decision: usage error 2, got {r.returncode}")
    r = cli(c, "approve", a["id"], "approve", "--reason", "ok", token=alice)
    check(r.returncode == 0 and "approved" in r.stdout, f"venture approve: {r.stdout}{r.stderr}")
    r = cli(c, "approve", a["id"], "approve", token=c.people["bob"].token)
    check(r.returncode == 1 and "already" in r.stderr, f"again: exit 1, {r.stderr}")
    got = c.admin.get(f"/v1/approvals/{a['id']}").json
    check(got["decisions"][0]["comment"] == "ok", f"--reason is the comment: {got['decisions']}")


if __name__ == "__main__":
    run_all(setup, teardown)
