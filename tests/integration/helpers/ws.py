"""A minimal WebSocket client (RFC 6455) for the event streams: the handshake (checking
Sec-WebSocket-Accept), reading the server's unmasked frames (text, continuation, ping answered
with a masked pong, close answered with a masked close), and sending a masked close."""
import base64
import hashlib
import os
import struct

from helpers.rawhttp import Conn

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class WsError(Exception):
    pass


class WebSocket:
    def __init__(self, port, path, token=None, timeout=60):
        self.conn = Conn(port, timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        if token:
            lines.append(f"Authorization: Bearer {token}")
        self.conn.send("\r\n".join(lines) + "\r\n\r\n")
        self.status, self.headers = self.conn.read_head()
        self.body = b""
        if self.status != 101:
            n = int(self.headers.get("content-length", "0"))
            self.body = self.conn._read_exact(n) if n else b""
            return
        want = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        if self.headers.get("sec-websocket-accept") != want:
            raise WsError(f"bad Sec-WebSocket-Accept: {self.headers}")
        self.close_code = None
        self.closed = False

    def _send_frame(self, opcode, payload=b""):
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.conn.send(head + mask + masked)

    def _read_frame(self):
        b0, b1 = self.conn._read_exact(2)
        fin, opcode = b0 & 0x80, b0 & 0x0F
        if b1 & 0x80:
            raise WsError("the server masked a frame")
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.conn._read_exact(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self.conn._read_exact(8))[0]
        return bool(fin), opcode, self.conn._read_exact(n)

    def recv(self):
        """The next text message (str), or None once the server closed the connection."""
        parts = []
        while True:
            try:
                fin, opcode, payload = self._read_frame()
            except EOFError:
                self.closed = True
                return None
            if opcode == 0x9:
                self._send_frame(0xA, payload)
                continue
            if opcode == 0xA:
                continue
            if opcode == 0x8:
                self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                try:
                    self._send_frame(0x8, payload[:2])
                except OSError:
                    pass
                self.closed = True
                self.conn.close()
                return None
            if opcode in (0x1, 0x0, 0x2):
                parts.append(payload)
                if fin:
                    return b"".join(parts).decode("utf-8")

    def messages(self):
        while True:
            m = self.recv()
            if m is None:
                return
            yield m

    def close(self, code=1000):
        if not getattr(self, "closed", True):
            try:
                self._send_frame(0x8, struct.pack("!H", code))
            except OSError:
                pass
        self.closed = True
        self.conn.close()
