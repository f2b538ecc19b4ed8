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


def check_chain(events):
    """Problems (strings) of a contiguous global event list: seq +1 each, prev = the previous
    hash, hash recomputed, unique ids."""
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
