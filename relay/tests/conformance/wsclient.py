"""A deliberately small, strict WebSocket client over a raw socket (stdlib
only), written for the conformance suite from RFC 6455 and nothing else:
it can send any frame, well formed or not, and it reads the relay's byte
stream strictly (every server frame must be well formed, unmasked, without
RSV bits, minimally encoded, and text must be UTF-8), so a cut, interleaved
or corrupted frame fails the test that reads it.

Also the relay's side tools: starting `bm-relay serve` on free loopback
ports with a site from `bm-relay keygen`, tokens from `bm-relay token`, and
signed pushes (`bm-relay push`, or signed here for bulk pushes).
"""

import base64
import hashlib
import hmac
import http.client
import json
import os
import random
import signal
import socket
import struct
import subprocess
import tempfile
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
CONTROL = (OP_CLOSE, OP_PING, OP_PONG)


class ProtocolViolation(AssertionError):
    """The relay sent bytes that are not a valid server frame stream."""


class Closed(Exception):
    """The TCP connection ended (EOF or reset)."""


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_frame(opcode, payload=b"", fin=True, rsv=0, mask=True, length=None, mask_key=None):
    """Bytes of one client frame. `length` overrides the declared payload
    length (for frames that announce more than is sent)."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv & 7) << 4 | opcode])
    mbit = 0x80 if mask else 0
    if n <= 125:
        head += bytes([mbit | n])
    elif n <= 0xFFFF:
        head += bytes([mbit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = mask_key if mask_key is not None else os.urandom(4)
    return head + key + mask_bytes(payload, key)


def mask_bytes(payload: bytes, key: bytes) -> bytes:
    if not payload:
        return b""
    k = (key * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(len(payload), "big")


def close_payload(code, reason=b""):
    return struct.pack("!H", code) + reason


class Frame:
    def __init__(self, fin, opcode, payload):
        self.fin, self.opcode, self.payload = fin, opcode, payload

    def close_code(self):
        assert self.opcode == OP_CLOSE
        if not self.payload:
            return None, ""
        return struct.unpack("!H", self.payload[:2])[0], self.payload[2:].decode("utf-8")

    def json(self):
        assert self.opcode == OP_TEXT, f"expected a text frame, got opcode {self.opcode:#x}"
        return json.loads(self.payload.decode("utf-8"))

    def __repr__(self):
        p = self.payload[:80]
        return f"Frame(fin={self.fin}, op={self.opcode:#x}, {len(self.payload)} bytes: {p!r})"


class WsClient:
    """One raw WebSocket connection to the relay."""

    def __init__(self, port, rcvbuf=None, timeout=10.0, path="/v1/ws"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            # Before connect, so the advertised window is small from the start.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.buf = bytearray()
        self.received_close = None
        self._handshake(port, path)

    # -- opening handshake (RFC 6455 §4.1) --------------------------------
    def _handshake(self, port, path):
        key = base64.b64encode(os.urandom(16)).decode()
        req = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(req.encode())
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, rest = bytes(self.buf).split(b"\r\n\r\n", 1)
        self.buf = bytearray(rest)
        lines = head.decode("latin-1").split("\r\n")
        status = lines[0].split(" ")
        if len(status) < 2 or status[1] != "101":
            raise AssertionError(f"upgrade refused: {lines[0]!r}")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        want = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        if headers.get("sec-websocket-accept") != want:
            raise ProtocolViolation(f"Sec-WebSocket-Accept {headers.get('sec-websocket-accept')!r}, want {want!r}")
        if headers.get("upgrade", "").lower() != "websocket" or "upgrade" not in headers.get("connection", "").lower():
            raise ProtocolViolation(f"bad upgrade headers {headers}")
        if "sec-websocket-extensions" in headers:
            raise ProtocolViolation("an extension was negotiated that the client did not offer")

    # -- raw I/O ------------------------------------------------------------
    def _fill(self, want=1):
        try:
            chunk = self.sock.recv(max(want, 65536))
        except ConnectionResetError as e:
            raise Closed("connection reset") from e
        if not chunk:
            raise Closed("EOF")
        self.buf += chunk

    def _take(self, n):
        while len(self.buf) < n:
            self._fill(n - len(self.buf))
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def send_raw(self, data: bytes):
        self.sock.sendall(data)

    def send(self, opcode, payload=b"", **kw):
        self.send_raw(encode_frame(opcode, payload, **kw))

    def send_text(self, text):
        self.send(OP_TEXT, text.encode() if isinstance(text, str) else text)

    def send_json(self, obj):
        self.send_text(json.dumps(obj, separators=(",", ":")))

    def send_close(self, code=1000, reason=b""):
        self.send(OP_CLOSE, close_payload(code, reason) if code is not None else b"")

    # -- strict frame reader (RFC 6455 §5.2) ------------------------------
    def read_frame(self, timeout=None):
        """The next server frame, checked strictly."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        b0, b1 = self._take(2)
        fin, rsv, opcode = bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F
        if rsv:
            raise ProtocolViolation(f"server frame with RSV bits {rsv:#x} (no extension negotiated)")
        if opcode not in (OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG):
            raise ProtocolViolation(f"server frame with reserved opcode {opcode:#x}")
        if b1 & 0x80:
            raise ProtocolViolation("server frame is masked (RFC 6455 §5.1: a server MUST NOT mask)")
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._take(2))[0]
            if n < 126:
                raise ProtocolViolation(f"16-bit length {n} where 7 bits suffice (not minimal)")
        elif n == 127:
            n = struct.unpack("!Q", self._take(8))[0]
            if n >> 63:
                raise ProtocolViolation("64-bit length with the top bit set")
            if n <= 0xFFFF:
                raise ProtocolViolation(f"64-bit length {n} where 16 bits suffice (not minimal)")
        if opcode in CONTROL and (not fin or n > 125):
            raise ProtocolViolation(f"control frame {opcode:#x} fragmented or over 125 bytes ({n})")
        payload = self._take(n)
        if opcode == OP_TEXT:
            if not fin:
                raise ProtocolViolation("the relay fragments no message; got a non-final text frame")
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ProtocolViolation(f"text frame is not UTF-8: {e}") from e
        if opcode == OP_CONT:
            raise ProtocolViolation("continuation frame without a fragmented message")
        if opcode == OP_CLOSE:
            if len(payload) == 1:
                raise ProtocolViolation("close frame with a one-byte payload")
            if len(payload) >= 2:
                code = struct.unpack("!H", payload[:2])[0]
                if not (1000 <= code <= 4999) or code in (1004, 1005, 1006, 1015):
                    raise ProtocolViolation(f"close code {code} may not be sent")
                try:
                    payload[2:].decode("utf-8")
                except UnicodeDecodeError as e:
                    raise ProtocolViolation("close reason is not UTF-8") from e
            if self.received_close is not None:
                raise ProtocolViolation("a second close frame")
            self.received_close = Frame(fin, opcode, payload)
        elif self.received_close is not None:
            raise ProtocolViolation(f"a frame ({opcode:#x}) after the close frame")
        return Frame(fin, opcode, payload)

    def read_message(self, timeout=10.0, answer_pings=True):
        """The next text/binary/close frame, answering (and skipping) pings
        and skipping pongs."""
        deadline = time.monotonic() + timeout
        while True:
            f = self.read_frame(timeout=max(0.05, deadline - time.monotonic()))
            if f.opcode == OP_PING:
                if answer_pings:
                    self.send(OP_PONG, f.payload)
                continue
            if f.opcode == OP_PONG:
                continue
            return f

    def read_json(self, timeout=10.0):
        f = self.read_message(timeout)
        if f.opcode == OP_CLOSE:
            raise AssertionError(f"the relay closed: {f.close_code()}")
        return f.json()

    def expect_close(self, timeout=10.0):
        """Reads until the close frame (other frames are returned too)."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            f = self.read_frame(timeout=max(0.05, deadline - time.monotonic()))
            if f.opcode == OP_CLOSE:
                return f.close_code(), seen
            seen.append(f)

    def expect_eof(self, timeout=5.0):
        """The relay closes TCP within `timeout`, sending nothing more."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return
                raise ProtocolViolation(f"bytes after the close handshake: {chunk[:40]!r}")
        except ConnectionResetError:
            return  # also a close, if not the cleanest
        except socket.timeout as e:
            raise AssertionError(f"the relay kept the TCP connection open {timeout} s after the close") from e

    def expect_clean_eof(self, timeout=5.0):
        """The relay ends TCP with FIN (not RST) within `timeout`, sending
        nothing more."""
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError as e:
            raise AssertionError("the relay reset the connection instead of closing it") from e
        except socket.timeout as e:
            raise AssertionError(f"the relay kept the TCP connection open {timeout} s after the close") from e
        if chunk:
            raise ProtocolViolation(f"bytes after the close handshake: {chunk[:40]!r}")

    def is_open_for(self, seconds):
        """True when the relay neither sends nor closes for `seconds`."""
        self.sock.settimeout(seconds)
        try:
            chunk = self.sock.recv(1, socket.MSG_PEEK)
        except socket.timeout:
            return True
        except ConnectionResetError:
            return False
        return False if not chunk else True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# -- the relay process --------------------------------------------------------

def free_port():
    """A free port in 20000-32767 (below the ephemeral range), like the Rust harness."""
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    while True:
        port = rng.randrange(20000, 32768)
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()


def die_with_parent():
    """In the child, before exec: the kernel kills it with SIGKILL when the
    test process dies, however that happens (a `timeout`, a kill -9)."""
    import ctypes
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Relay:
    """`bm-relay serve` on free loopback ports, for one generated site."""

    SITE = "x"

    def __init__(self, binary, limits):
        self.binary = binary
        keys = json.loads(self.tool("keygen", "--json", "--site", self.SITE))
        self.secret, self.relay_key = keys["site_secret"], keys["relay_key"]
        self.dir = tempfile.TemporaryDirectory(prefix="bm-conformance-")
        self.proc = None
        for attempt in range(5):
            self.port, self.admin = free_port(), free_port()
            cfg = os.path.join(self.dir.name, "relay.toml")
            with open(cfg, "w") as f:
                f.write(f'listen = "127.0.0.1:{self.port}"\nadmin_listen = "127.0.0.1:{self.admin}"\n')
                f.write(f'[sites]\n"{self.SITE}" = "{self.relay_key}"\n[limits]\n{limits}')
            self.log = open(os.path.join(self.dir.name, "relay.log"), "w+")
            env = {k: v for k, v in os.environ.items() if not k.startswith("BM_RELAY_")}
            env["RUST_LOG"] = "info"
            self.proc = subprocess.Popen(
                [binary, "serve", "--config", cfg], stdout=subprocess.DEVNULL, stderr=self.log,
                env=env, start_new_session=True, preexec_fn=die_with_parent,
            )
            if self._wait_healthy():
                return
            self.stop()
            if "cannot listen" not in self.stderr():
                break
        raise RuntimeError(f"the relay did not start:\n{self.stderr()}")

    def _wait_healthy(self, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.admin, timeout=1)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def stderr(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)

    def close(self):
        self.stop()
        self.log.close()
        self.dir.cleanup()

    def tool(self, *args, stdin=None):
        r = subprocess.run([self.binary, *args], input=stdin, capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"bm-relay {' '.join(args)}: exit {r.returncode}: {r.stderr}")
        return r.stdout.strip()

    def token(self, user, thread=None, ttl=3600):
        args = ["token", "--secret", "-", "--site", self.SITE, "--user", str(user), "--ttl", str(ttl)]
        if thread is not None:
            args += ["--thread", str(thread)]
        return self.tool(*args, stdin=self.secret + "\n")

    def push_tool(self, to=(), thread=None, data="{}"):
        """A push sealed and signed by `bm-relay push` (WordPress's part)."""
        args = ["push", "--url", f"http://127.0.0.1:{self.port}", "--site", self.SITE, "--secret", "-", "--data", data]
        for u in to:
            args += ["--to", str(u)]
        if thread is not None:
            args += ["--thread", str(thread)]
        return self.tool(*args, stdin=self.secret + "\n")

    def push_signed(self, events):
        """POST /v1/push signed here (protocol §5), for bulk pushes: returns
        (status, parsed reply)."""
        body = json.dumps({"events": events}, separators=(",", ":")).encode()
        ts = str(int(time.time()))
        msg = f"{ts}\n{self.SITE}\nPOST /v1/push\n".encode() + body
        sig = hmac.new(b64u_decode(self.relay_key), msg, hashlib.sha256).hexdigest()
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        c.request("POST", "/v1/push", body=body, headers={
            "Content-Type": "application/json", "X-BM-Site": self.SITE, "X-BM-Timestamp": ts,
            "X-BM-Signature": "v1=" + sig,
        })
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, json.loads(data)

    def metric(self, name):
        c = http.client.HTTPConnection("127.0.0.1", self.admin, timeout=5)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return None


def fake_envelope(event_id, size, key_id="t/1/0"):
    """An envelope of the right shape (protocol §4) with random bytes as
    ciphertext: the relay checks the shape, never the content."""
    return {"v": 1, "id": event_id, "k": key_id, "n": b64u(os.urandom(12)), "c": b64u(os.urandom(size))}
