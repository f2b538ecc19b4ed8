"""HTTP/1.1 over a raw socket, for what http.client will not send: malformed requests, lying
Content-Length, pipelining, slow clients. `read_response` parses one response (Content-Length or
chunked or close-delimited body) from a socket with a buffer kept between calls."""
import socket
import time


class Conn:
    def __init__(self, port, host="127.0.0.1", timeout=30):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode("latin-1"))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed")
        self.buf += chunk

    def _read_until(self, marker):
        while marker not in self.buf:
            self._fill()
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def _read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_head(self):
        """-> (status, {lower name: value}) of the next response. EOFError when closed first."""
        lines = self._read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        return status, headers

    def read_response(self, head_only_for=("HEAD",), method="GET"):
        """-> (status, {lower name: value}, body bytes). EOFError when closed before a status."""
        status, headers = self.read_head()
        if method in head_only_for or status in (204, 304) or 100 <= status < 200:
            return status, headers, b""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self._read_until(b"\r\n").strip().split(b";")[0], 16)
                if size == 0:
                    self._read_until(b"\r\n")
                    return status, headers, body
                body += self._read_exact(size)
                self._read_exact(2)
        if "content-length" in headers:
            return status, headers, self._read_exact(int(headers["content-length"]))
        body = self.buf
        self.buf = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            body += chunk
        return status, headers, body

    def closed_by_peer(self, timeout=10):
        """True when the server closes the connection within `timeout` (reads and drops data)."""
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if not self.sock.recv(65536):
                    return True
        except socket.timeout:
            return False
        except OSError:
            return True
        return False


def exchange(port, data, timeout=30):
    """Sends `data` on a new connection and reads one response: (status, headers, body), or
    (None, {}, b"") when the server closed without answering."""
    c = Conn(port, timeout=timeout)
    try:
        c.send(data)
        try:
            return c.read_response()
        except (EOFError, ConnectionResetError, BrokenPipeError):
            return None, {}, b""
    finally:
        c.close()
