"""The event hash chain of SPEC §4 recomputed in Python, and the content-hash version of §1.

Canonical JSON as the server writes it: object keys sorted (by UTF-8 bytes), no whitespace,
strings raw UTF-8 with JSON escapes only for `"`, `\\` and control characters. Numbers keep the
text the server sent (parse with `loads`, which keeps floats as their original text), so no
float formatting has to be reproduced.
    hash    = "b2:" + hex BLAKE2b-256(raw bytes of prev's hash ‖ canonical(event without hash))
    version = "b2:" + hex BLAKE2b-256(canonical(definition))
"""
import hashlib
import json
import os


class RawNumber(str):
    """A JSON number kept as the server's text."""


def loads(text):
    return json.loads(text, parse_float=RawNumber)


def _string(s):
    return json.dumps(s, ensure_ascii=False)


def canonical(v):
    if isinstance(v, RawNumber):
        return str(v)
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        raise ValueError("canonical: parse with chain.loads so floats keep their text")
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, list):
        return "[" + ",".join(canonical(x) for x in v) + "]"
    if isinstance(v, dict):
        keys = sorted(v.keys(), key=lambda k: k.encode("utf-8"))
        return "{" + ",".join(_string(k) + ":" + canonical(v[k]) for k in keys) + "}"
    raise TypeError(type(v))


def b2(data):
    return "b2:" + hashlib.blake2b(data, digest_size=32).hexdigest()


def event_hash(event):
    body = {k: v for k, v in event.items() if k != "hash"}
    prev = event["prev"]
    return b2(bytes.fromhex(prev[3:]) + canonical(body).encode("utf-8"))


def version_of(definition):
    return b2(canonical(definition).encode("utf-8"))


ZERO = "b2:" + "0" * 64


def check_chain(events):
    """Problems (strings) of the whole global event list. Embedded (one chain): seq +1 each,
    prev = the previous hash. Clustered (VENTURE_TEST_CLUSTER=1: PostgreSQL keeps one chain per
    partition, and seqs may skip numbers): check_partitioned_chains. Both: hash recomputed,
    unique ids."""
    if os.environ.get("VENTURE_TEST_CLUSTER") == "1":
        return check_partitioned_chains(events)
    problems = []
    seen = set()
    for i, e in enumerate(events):
        if e["id"] in seen:
            problems.append(f"seq {e['seq']}: duplicate event id {e['id']}")
        seen.add(e["id"])
        if i > 0:
            p = events[i - 1]
            if int(e["seq"]) != int(p["seq"]) + 1:
                problems.append(f"seq {p['seq']} is followed by {e['seq']}")
            if e["prev"] != p["hash"]:
                problems.append(f"seq {e['seq']}: prev {e['prev']} != hash of seq {p['seq']}")
        try:
            h = event_hash(e)
        except (ValueError, TypeError, KeyError) as ex:
            problems.append(f"seq {e.get('seq')}: cannot hash: {ex}")
            continue
        if h != e.get("hash"):
            problems.append(f"seq {e['seq']}: hash {e.get('hash')} != recomputed {h}")
        if len(problems) > 20:
            break
    return problems


def check_partitioned_chains(events, max_chains=1024):
    """Problems of a global event list made of several interleaved hash chains (one per
    partition): seq strictly increasing, every prev either the zero hash (a partition's first
    event) or the hash of an EARLIER event, no hash continued twice (no fork), hash recomputed,
    unique ids."""
    problems = []
    seen_ids = set()
    hashes = set()
    continued = set()
    starts = 0
    last_seq = 0
    for e in events:
        seq = int(e["seq"])
        if e["id"] in seen_ids:
            problems.append(f"seq {seq}: duplicate event id {e['id']}")
        seen_ids.add(e["id"])
        if seq <= last_seq:
            problems.append(f"seq {seq} follows {last_seq}")
        last_seq = seq
        prev = e["prev"]
        if prev == ZERO:
            starts += 1
        elif prev not in hashes:
            problems.append(f"seq {seq}: prev {prev} is not the hash of an earlier event")
        elif prev in continued:
            problems.append(f"seq {seq}: prev {prev} continues a chain a second time (a fork)")
        continued.add(prev)
        try:
            h = event_hash(e)
        except (ValueError, TypeError, KeyError) as ex:
            problems.append(f"seq {seq}: cannot hash: {ex}")
            continue
        if h != e.get("hash"):
            problems.append(f"seq {seq}: hash {e.get('hash')} != recomputed {h}")
        hashes.add(e.get("hash"))
        if len(problems) > 20:
            break
    if starts > max_chains:
        problems.append(f"{starts} chains start from the zero hash")
    return problems
