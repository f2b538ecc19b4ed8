"""A Server-Sent Events reader over a raw socket: the response head, then one event per blank
line (`id:`, `event:`, `data:` fields; `:` comments skipped), until the server closes the stream.
The caller may stop early and `close()` (the test of Last-Event-ID resumption does)."""
import json

from helpers.rawhttp import Conn


class SseStream:
    def __init__(self, port, path, token=None, last_event_id=None, timeout=60, accept=None):
        self.conn = Conn(port, timeout=timeout)
        lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1",
                 f"Accept: {accept or 'text/event-stream'}"]
        if token:
            lines.append(f"Authorization: Bearer {token}")
        if last_event_id is not None:
            lines.append(f"Last-Event-ID: {last_event_id}")
        self.conn.send("\r\n".join(lines) + "\r\n\r\n")
        self.status, self.headers = self.conn.read_head()
        self.body = b""
        if self.status != 200:
            n = int(self.headers.get("content-length", "0"))
            self.body = self.conn._read_exact(n) if n else b""
        self.closed_cleanly = False

    def _lines(self):
        while True:
            while b"\n" in self.conn.buf:
                i = self.conn.buf.index(b"\n")
                line, self.conn.buf = self.conn.buf[:i], self.conn.buf[i + 1:]
                yield line.rstrip(b"\r").decode("utf-8")
            try:
                self.conn._fill()
            except EOFError:
                self.closed_cleanly = True
                return

    def events(self):
        """Yields {id, event, data, json} per event until the server ends the stream."""
        ev = {"id": None, "event": None, "data": []}
        for line in self._lines():
            if line == "":
                if ev["data"] or ev["event"] or ev["id"] is not None:
                    data = "\n".join(ev["data"])
                    try:
                        parsed = json.loads(data)
                    except ValueError:
                        parsed = None
                    yield {"id": ev["id"], "event": ev["event"], "data": data, "json": parsed}
                ev = {"id": None, "event": None, "data": []}
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if field == "data":
                ev["data"].append(value)
            elif field in ("id", "event"):
                ev[field] = value

    def close(self):
        self.conn.close()
