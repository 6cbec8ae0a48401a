"""Tools for the edge cases (TLS, tokens, origins, handshake rules, liveness, frame
violations), all built at test time and independent of the gateway's code:

- `PKI`: a throwaway root CA, an intermediate CA and leaf certificates made with the
  `openssl` command line in the run's temp dir (the leaf's file holds the full chain).
- `SigningKey`/`make_key`, `mint`, `hs_token`, `unsigned_token`, `confusion_token`: JWTs
  minted with PyJWT (HS256/384/512, RS256, PS256, ES256, ES384, EdDSA with Ed25519), keys
  made with `cryptography`; the two attacks PyJWT refuses to produce are built by hand.
- `jwks_document`: a JWKS (RFC 7517) with the public keys, each with `kid`, `alg`, `use`.
- `JwksServer`: a small threaded HTTP server whose answer (status, body) the test can
  change, and which it can stop and start again on the same port.
- `RawWS`, `upgrade_request`, `http_exchange`: a WebSocket client over a plain or TLS
  socket that sends arbitrary frames (masked or not, any RSV bits, opcode, FIN, length),
  reads frames one by one, and answers nothing by itself (no pong, no close echo).
- `vm_rss`: a process's resident memory from /proc/PID/status.

`python3 Tests/e2e/edgetools.py` checks the tools against themselves (PyJWT verifies the
tokens and the JWKS, `openssl verify` the chain, the raw client talks to a local TLS
server made here) without any gateway.
"""
from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import http.server
import json
import os
import pathlib
import secrets
import socket
import ssl
import struct
import subprocess
import threading
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# opcodes
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

# close codes RFC 6455 section 7.4.1 reserves (never sent on the wire) and the valid ranges
RESERVED_CLOSE = {1004, 1005, 1006, 1015}


def close_code_sendable(code: int) -> bool:
    """A close code a server may put on the wire (RFC 6455 sections 7.4.1 and 7.4.2)."""
    return (1000 <= code <= 1014 and code not in RESERVED_CLOSE) or 3000 <= code <= 4999


# --- PKI with the openssl command line -----------------------------------------------------

class PKIError(Exception):
    pass


def _openssl(*args: str, cwd: pathlib.Path, input_: bytes | None = None) -> bytes:
    proc = subprocess.run(["openssl", *args], cwd=cwd, input=input_, capture_output=True, timeout=60)
    if proc.returncode != 0:
        raise PKIError(f"openssl {' '.join(args[:3])}… exit {proc.returncode}: "
                       f"{proc.stderr.decode(errors='replace')[-400:]}")
    return proc.stdout


@dataclasses.dataclass
class Leaf:
    name: str
    key_path: pathlib.Path      # PEM private key (PKCS#8)
    cert_path: pathlib.Path     # the leaf certificate alone
    chain_path: pathlib.Path    # leaf + intermediate: what a server is given
    der: bytes                  # the leaf certificate, DER (what a client sees as the peer cert)

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.der).hexdigest()


class PKI:
    """root CA -> intermediate CA -> leaves. Clients trust the root only, so a handshake that
    verifies proves the server sent the intermediate."""

    def __init__(self, workdir: pathlib.Path, name: str = "pki"):
        self.dir = pathlib.Path(workdir) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.root_key = self.dir / "root.key"
        self.root = self.dir / "root.pem"
        self.int_key = self.dir / "intermediate.key"
        self.intermediate = self.dir / "intermediate.pem"
        ext = self.dir / "ext.cnf"
        ext.write_text(
            "[v3_root]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
            "subjectKeyIdentifier=hash\n"
            "[v3_int]\nbasicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n"
            "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\n")
        self.ext = ext
        d = self.dir
        # `req` needs a config file for its extension sections
        cfg = d / "req.cnf"
        cfg.write_text("[req]\ndistinguished_name=dn\nprompt=no\n[dn]\nCN=unused\n" + ext.read_text())
        _openssl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", self.root_key.name, "-out", self.root.name, "-days", "3", "-sha256",
                 "-subj", "/O=Streamgate e2e/CN=Streamgate e2e root CA", "-config", cfg.name,
                 "-extensions", "v3_root", cwd=d)
        _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", self.int_key.name, "-out", "intermediate.csr",
                 "-subj", "/O=Streamgate e2e/CN=Streamgate e2e intermediate CA", "-config", cfg.name, cwd=d)
        _openssl("x509", "-req", "-in", "intermediate.csr", "-CA", self.root.name, "-CAkey", self.root_key.name,
                 "-set_serial", str(secrets.randbits(63)), "-days", "3", "-sha256",
                 "-extfile", ext.name, "-extensions", "v3_int", "-out", self.intermediate.name, cwd=d)

    def leaf(self, name: str, sans=("DNS:localhost", "IP:127.0.0.1", "DNS:*.example.test"),
             key_type: str = "ec", days: int = 2) -> Leaf:
        d = self.dir
        ext = d / f"{name}.ext"
        ext.write_text("[v3_leaf]\nbasicConstraints=critical,CA:FALSE\n"
                       "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
                       "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\n"
                       f"subjectAltName={','.join(sans)}\n")
        key = d / f"{name}.key"
        if key_type == "rsa":
            _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key.name, cwd=d)
        else:
            _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key.name, cwd=d)
        _openssl("req", "-new", "-key", key.name, "-out", f"{name}.csr", "-config", str(d / "req.cnf"),
                 "-subj", f"/O=Streamgate e2e/CN={name}.example.test", cwd=d)
        cert = d / f"{name}.pem"
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", self.intermediate.name, "-CAkey", self.int_key.name,
                 "-set_serial", str(secrets.randbits(63)), "-days", str(days), "-sha256",
                 "-extfile", ext.name, "-extensions", "v3_leaf", "-out", cert.name, cwd=d)
        chain = d / f"{name}.chain.pem"
        chain.write_bytes(cert.read_bytes() + self.intermediate.read_bytes())
        der = ssl.PEM_cert_to_DER_cert(cert.read_text())
        return Leaf(name, key, cert, chain, der)

    def verify(self, leaf: Leaf) -> str:
        """`openssl verify` of the leaf against the root, the intermediate as untrusted."""
        out = _openssl("verify", "-CAfile", str(self.root), "-untrusted", str(self.intermediate),
                       "-purpose", "sslserver", str(leaf.cert_path), cwd=self.dir)
        return out.decode().strip()

    def client_context(self, alpn=("http/1.1",), minimum=None, maximum=None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.root))
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        if alpn:
            ctx.set_alpn_protocols(list(alpn))
        if minimum is not None:
            ctx.minimum_version = minimum
        if maximum is not None:
            ctx.maximum_version = maximum
        return ctx


def install_leaf(leaf: Leaf, cert_path: pathlib.Path, key_path: pathlib.Path) -> None:
    """Puts `leaf`'s chain and key at the paths a server reads (atomic renames, as
    certificate tools do)."""
    for src, dst in ((leaf.chain_path, cert_path), (leaf.key_path, key_path)):
        tmp = dst.with_name(dst.name + ".tmp")
        tmp.write_bytes(src.read_bytes())
        os.replace(tmp, dst)


# --- JWT ------------------------------------------------------------------------------------------

def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _uint_b64(n: int) -> str:
    return b64url(n.to_bytes((n.bit_length() + 7) // 8 or 1, "big"))


def claims(sub: str, *, exp_in: float | None = 300, channels=None, iss=None, aud=None, nbf_in=None,
           iat: bool = True, extra: dict | None = None, now: float | None = None) -> dict:
    now = time.time() if now is None else now
    c: dict = {"sub": sub}
    if exp_in is not None:
        c["exp"] = int(now + exp_in)
    if iat:
        c["iat"] = int(now)
    if nbf_in is not None:
        c["nbf"] = int(now + nbf_in)
    if iss is not None:
        c["iss"] = iss
    if aud is not None:
        c["aud"] = aud
    if channels is not None:
        c["channels"] = channels
    if extra:
        c.update(extra)
    return c


@dataclasses.dataclass
class SigningKey:
    kid: str
    alg: str           # RS256, PS256, ES256, ES384, EdDSA
    private: object
    public: object

    def sign(self, payload: dict, *, kid: str | None | bool = True, alg: str | None = None,
             headers: dict | None = None) -> str:
        """A token signed with this key. kid=True: this key's kid; None/False: no kid;
        a string: that kid. alg: another algorithm of the same key type (a mismatch test)."""
        h = dict(headers or {})
        if kid is True:
            h["kid"] = self.kid
        elif isinstance(kid, str):
            h["kid"] = kid
        return jwt.encode(payload, self.private, algorithm=alg or self.alg, headers=h or None)

    def jwk(self, *, with_alg: bool = True) -> dict:
        pub = self.public
        if isinstance(pub, rsa.RSAPublicKey):
            nums = pub.public_numbers()
            d = {"kty": "RSA", "n": _uint_b64(nums.n), "e": _uint_b64(nums.e)}
        elif isinstance(pub, ec.EllipticCurvePublicKey):
            nums = pub.public_numbers()
            crv, size = {"secp256r1": ("P-256", 32), "secp384r1": ("P-384", 48)}[pub.curve.name]
            d = {"kty": "EC", "crv": crv, "x": b64url(nums.x.to_bytes(size, "big")),
                 "y": b64url(nums.y.to_bytes(size, "big"))}
        elif isinstance(pub, ed25519.Ed25519PublicKey):
            raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            d = {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}
        else:  # pragma: no cover
            raise TypeError(type(pub))
        d["kid"] = self.kid
        d["use"] = "sig"
        if with_alg:
            d["alg"] = self.alg
        return d

    def public_pem(self) -> bytes:
        return self.public.public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)

    def public_pem_pkcs1(self) -> bytes:
        return self.public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)


def make_key(alg: str, kid: str) -> SigningKey:
    if alg in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"):
        priv = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif alg == "ES256":
        priv = ec.generate_private_key(ec.SECP256R1())
    elif alg == "ES384":
        priv = ec.generate_private_key(ec.SECP384R1())
    elif alg == "EdDSA":
        priv = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(alg)
    return SigningKey(kid, alg, priv, priv.public_key())


def jwks_document(keys, *, with_alg: bool = True) -> dict:
    return {"keys": [k.jwk(with_alg=with_alg) if isinstance(k, SigningKey) else k for k in keys]}


def hs_token(secret: bytes, payload: dict, alg: str = "HS256", headers: dict | None = None) -> str:
    return jwt.encode(payload, secret, algorithm=alg, headers=headers)


def _compact(header: dict, payload) -> str:
    p = payload if isinstance(payload, (bytes, str)) else json.dumps(payload, separators=(",", ":"))
    if isinstance(p, str):
        p = p.encode()
    return b64url(json.dumps(header, separators=(",", ":")).encode()) + "." + b64url(p)


def unsigned_token(payload: dict, *, alg: str = "none", kid: str | None = None, signature: str = "") -> str:
    """`alg: none` (or any spelling of it), with an empty or a given signature part."""
    h = {"alg": alg, "typ": "JWT"}
    if kid:
        h["kid"] = kid
    return _compact(h, payload) + "." + signature


def hmac_by_hand(secret: bytes, header: dict, payload, alg: str = "HS256") -> str:
    """An HMAC-signed JWT built without PyJWT (which refuses PEM keys as HMAC secrets)."""
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    signing_input = _compact(header, payload)
    sig = hmac.new(secret, signing_input.encode(), digest).digest()
    return signing_input + "." + b64url(sig)


def confusion_token(key: SigningKey, payload: dict, pem: bytes | None = None) -> str:
    """RFC 8725 section 2.1 algorithm confusion: HS256 with the key's public PEM as the HMAC
    secret and the key's kid, so a verifier that takes `alg` from the token accepts it."""
    return hmac_by_hand(pem if pem is not None else key.public_pem(),
                        {"alg": "HS256", "typ": "JWT", "kid": key.kid}, payload)


def with_payload_bytes(token: str, payload: bytes, secret: bytes, alg: str = "HS256") -> str:
    """A correctly HMAC-signed token whose payload part is `payload` exactly (not JSON, an array...)."""
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    return hmac_by_hand(secret, header, payload, alg)


# --- a JWKS over HTTP -------------------------------------------------------------------------------

class JwksServer:
    """Serves one document on any GET path, on 127.0.0.1. `set()` changes what it answers;
    `stop()` closes the port (connections refused), `start()` listens on the same port again."""

    def __init__(self, document=None, status: int = 200, content_type: str = "application/json"):
        self.lock = threading.Lock()
        self.status = status
        self.content_type = content_type
        self.body = b""
        self.hits = 0
        self.log: list[tuple[float, str, int]] = []
        if document is not None:
            self.set(document)
        self.port = 0
        self.httpd = None
        self.thread = None

    def set(self, document=None, *, status: int | None = None, body: bytes | None = None,
            content_type: str | None = None):
        with self.lock:
            if document is not None:
                self.body = json.dumps(document).encode()
            if body is not None:
                self.body = body
            if status is not None:
                self.status = status
            if content_type is not None:
                self.content_type = content_type

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/.well-known/jwks.json"

    def start(self) -> "JwksServer":
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802
                with owner.lock:
                    owner.hits += 1
                    status, body, ct = owner.status, owner.body, owner.content_type
                    owner.log.append((time.monotonic(), self.path, status))
                self.send_response(status)
                self.send_header("Content-Type", ct)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        class Server(http.server.ThreadingHTTPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.httpd = Server(("127.0.0.1", self.port), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                       daemon=True, name="jwks-server")
        self.thread.start()
        return self

    def stop(self):
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None
            if self.thread:
                self.thread.join(5)

    def hits_now(self) -> int:
        with self.lock:
            return self.hits


# --- raw HTTP / WebSocket -----------------------------------------------------------------------------

def ws_key(n: int = 16) -> str:
    return base64.b64encode(os.urandom(n)).decode()


def ws_accept(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def upgrade_request(path: str = "/v1/ws", *, host: str | None = "127.0.0.1", key: str | None = None,
                    version: str | None = "13", protocols=("streamgate.v1",), method: str = "GET",
                    http_version: str = "HTTP/1.1", upgrade: str | None = "websocket",
                    connection: str | None = "Upgrade", extra=(), omit=()) -> tuple[bytes, str | None]:
    """(request head, the Sec-WebSocket-Key in it). `extra`: (name, value) lines appended
    as given (duplicates allowed); `omit`: lower-case names of the default lines to leave out."""
    key = ws_key() if key is None else key
    lines = [f"{method} {path} {http_version}"]
    defaults = [("Host", host), ("Upgrade", upgrade), ("Connection", connection),
                ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", version)]
    if protocols:
        defaults.append(("Sec-WebSocket-Protocol", ", ".join(protocols)))
    for k, v in defaults:
        if v is not None and k.lower() not in omit:
            lines.append(f"{k}: {v}")
    for k, v in extra:
        lines.append(f"{k}: {v}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), key


@dataclasses.dataclass
class Response:
    status: int
    reason: str
    headers: list          # [(lower-case name, value)] in order
    body: bytes
    raw_head: bytes

    def header(self, name: str) -> str | None:
        vals = [v for k, v in self.headers if k == name.lower()]
        return ", ".join(vals) if vals else None

    def header_lines(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name.lower()]

    def __repr__(self):
        return f"HTTP {self.status} {self.reason!r} {dict(self.headers)} body={self.body[:80]!r}"


async def open_stream(host: str, port: int, ssl_ctx: ssl.SSLContext | None = None,
                      server_hostname: str | None = None, timeout: float = 5.0):
    kw = {}
    if ssl_ctx is not None:
        kw = {"ssl": ssl_ctx, "server_hostname": server_hostname or host}
    return await asyncio.wait_for(asyncio.open_connection(host, port, limit=1 << 22, **kw), timeout)


async def read_response(reader: asyncio.StreamReader, timeout: float = 5.0, method: str = "GET") -> Response | None:
    """The next response head (and Content-Length body, not for 101); None when the
    connection ends before a complete head."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    except asyncio.TimeoutError:  # an OSError since 3.11: test it first
        return Response(-2, f"no response within {timeout}s", [], b"", b"")
    except (asyncio.IncompleteReadError, ConnectionError, OSError, ssl.SSLError, asyncio.LimitOverrunError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    try:
        status = int(parts[1])
    except (IndexError, ValueError):
        return Response(-1, lines[0], [], b"", head)
    headers = []
    for ln in lines[1:]:
        if not ln:
            continue
        k, _, v = ln.partition(":")
        headers.append((k.strip().lower(), v.strip()))
    resp = Response(status, parts[2] if len(parts) > 2 else "", headers, b"", head)
    if status != 101 and method != "HEAD":
        n = resp.header("content-length")
        try:
            n = int(n) if n is not None else 0
        except ValueError:
            n = 0
        if n:
            try:
                resp.body = await asyncio.wait_for(reader.readexactly(n), timeout)
            except Exception:
                pass
    return resp


async def http_exchange(host: str, port: int, request: bytes, *, ssl_ctx=None, server_hostname=None,
                        timeout: float = 5.0, keep=False):
    """Sends `request` on a new connection; returns the response (None when the connection
    ended without one). With keep=True returns (response, reader, writer)."""
    reader, writer = await open_stream(host, port, ssl_ctx, server_hostname, timeout)
    try:
        writer.write(request)
        await writer.drain()
    except (ConnectionError, OSError):
        pass
    method = request.split(b" ", 1)[0].decode("latin-1", "replace")
    resp = await read_response(reader, timeout, method)
    if keep:
        return resp, reader, writer
    close_writer(writer)
    return resp


def close_writer(writer):
    try:
        writer.close()
    except Exception:
        pass


async def wait_eof(reader: asyncio.StreamReader, timeout: float) -> tuple[bool, bytes]:
    """(True, data read meanwhile) when the peer closes the connection within timeout."""
    got = b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False, got
        try:
            chunk = await asyncio.wait_for(reader.read(65536), left)
        except asyncio.TimeoutError:
            return False, got
        except (ConnectionError, OSError, ssl.SSLError):
            return True, got
        if not chunk:
            return True, got
        got += chunk


def mask_bytes(data: bytes, key: bytes) -> bytes:
    if not data:
        return b""
    n = len(data)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def build_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, mask: bool = True,
                mask_key: bytes | None = None, length: int | None = None, length_form: str | None = None) -> bytes:
    """One frame. rsv: 3 bits (4 = RSV1, 2 = RSV2, 1 = RSV3). length: the length the header
    declares (default len(payload)); length_form: force '7', '16' or '64' bit encoding."""
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)
    n = len(payload) if length is None else length
    form = length_form or ("7" if n < 126 else "16" if n < 65536 else "64")
    mbit = 0x80 if mask else 0
    if form == "7":
        head = struct.pack("!BB", b0, mbit | n)
    elif form == "16":
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if mask:
        key = os.urandom(4) if mask_key is None else mask_key
        return head + key + mask_bytes(payload, key)
    return head + payload


def close_payload(code: int | None, reason: bytes = b"") -> bytes:
    return b"" if code is None else struct.pack("!H", code) + reason


@dataclasses.dataclass
class Frame:
    fin: bool
    rsv: int
    opcode: int
    masked: bool
    payload: bytes
    t: float

    @property
    def close_code(self) -> int | None:
        return struct.unpack("!H", self.payload[:2])[0] if self.opcode == CLOSE and len(self.payload) >= 2 else None

    @property
    def close_reason(self) -> bytes:
        return self.payload[2:] if self.opcode == CLOSE else b""

    def text(self) -> str:
        return self.payload.decode("utf-8", "replace")

    def json(self):
        try:
            return json.loads(self.payload)
        except ValueError:
            return None

    def __repr__(self):
        name = {0: "cont", 1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong"}.get(self.opcode, self.opcode)
        if self.opcode == CLOSE:
            return f"<close {self.close_code} {self.close_reason[:60]!r}>"
        return f"<{name} fin={int(self.fin)} rsv={self.rsv} {len(self.payload)}B {self.payload[:60]!r}>"


class HandshakeFailed(Exception):
    def __init__(self, response: Response | None, why: str = ""):
        super().__init__(f"handshake failed: {response!r} {why}")
        self.response = response
        self.status = response.status if response else None


class RawWS:
    """A WebSocket client that does only what it is told: no automatic pong or close reply."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, response: Response, name=""):
        self.r = reader
        self.w = writer
        self.response = response
        self.name = name
        self.frames: list[Frame] = []   # every frame read, in order
        self.buf = bytearray()          # bytes read, not yet a complete frame
        self.eof = False
        self.sent_bytes = 0

    @classmethod
    async def connect(cls, host: str, port: int, path: str = "/v1/ws", *, headers=(), ssl_ctx=None,
                      server_hostname=None, protocols=("streamgate.v1",), timeout: float = 5.0,
                      name: str = "", sndbuf: int | None = None, rcvbuf: int | None = None) -> "RawWS":
        if sndbuf or rcvbuf:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if sndbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
            if rcvbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setblocking(False)
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, port)), timeout)
            kw = {"sock": sock, "limit": 1 << 22}
            if ssl_ctx is not None:
                kw.update(ssl=ssl_ctx, server_hostname=server_hostname or host)
            reader, writer = await asyncio.wait_for(asyncio.open_connection(**kw), timeout)
        else:
            reader, writer = await open_stream(host, port, ssl_ctx, server_hostname, timeout)
        req, key = upgrade_request(path, host=f"{host}:{port}", protocols=protocols, extra=headers)
        writer.write(req)
        await writer.drain()
        resp = await read_response(reader, timeout)
        if resp is None or resp.status != 101:
            close_writer(writer)
            raise HandshakeFailed(resp)
        if resp.header("sec-websocket-accept") != ws_accept(key):
            close_writer(writer)
            raise HandshakeFailed(resp, "wrong Sec-WebSocket-Accept")
        return cls(reader, writer, resp, name)

    # -- sending --
    async def send_raw(self, data: bytes, drain_timeout: float = 10.0) -> bool:
        try:
            self.w.write(data)
            self.sent_bytes += len(data)
            await asyncio.wait_for(self.w.drain(), drain_timeout)
            return True
        except (ConnectionError, OSError, ssl.SSLError, asyncio.TimeoutError):
            return False

    def write_nowait(self, data: bytes) -> bool:
        try:
            self.w.write(data)
            self.sent_bytes += len(data)
            return True
        except (ConnectionError, OSError, RuntimeError):
            return False

    async def send(self, opcode: int, payload: bytes = b"", **kw) -> bool:
        return await self.send_raw(build_frame(opcode, payload, **kw))

    async def send_text(self, text: str | bytes, **kw) -> bool:
        return await self.send(TEXT, text.encode() if isinstance(text, str) else text, **kw)

    async def send_json(self, obj, **kw) -> bool:
        return await self.send_text(json.dumps(obj, separators=(",", ":")), **kw)

    async def send_close(self, code: int | None = 1000, reason: bytes = b"") -> bool:
        return await self.send(CLOSE, close_payload(code, reason))

    # -- reading --
    def _parse(self) -> Frame | None:
        """One complete frame off the front of the buffer, or None (nothing is consumed then)."""
        buf = self.buf
        if len(buf) < 2:
            return None
        b0, b1 = buf[0], buf[1]
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            if len(buf) < 4:
                return None
            n = struct.unpack_from("!H", buf, 2)[0]
            pos = 4
        elif n == 127:
            if len(buf) < 10:
                return None
            n = struct.unpack_from("!Q", buf, 2)[0]
            pos = 10
        key = None
        if b1 & 0x80:
            if len(buf) < pos + 4:
                return None
            key = bytes(buf[pos:pos + 4])
            pos += 4
        if len(buf) < pos + n:
            return None
        payload = bytes(buf[pos:pos + n])
        del buf[:pos + n]
        if key:
            payload = mask_bytes(payload, key)
        return Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0xF, key is not None, payload, time.monotonic())

    async def read_frame(self, timeout: float = 5.0) -> Frame | None:
        """The next frame; None at EOF (or a reset). Raises asyncio.TimeoutError, losing nothing:
        bytes of a frame not complete yet stay buffered for the next call."""
        deadline = time.monotonic() + timeout
        while True:
            f = self._parse()
            if f is not None:
                self.frames.append(f)
                return f
            if self.eof:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise asyncio.TimeoutError
            try:
                chunk = await asyncio.wait_for(self.r.read(1 << 20), left)
            except asyncio.TimeoutError:  # (an OSError since 3.11: not the end of the stream)
                raise
            except (ConnectionError, OSError, ssl.SSLError):
                chunk = b""
            if not chunk:
                self.eof = True
                continue
            self.buf += chunk

    async def read_until(self, pred, timeout: float) -> Frame | None:
        """Reads frames until pred(frame); None when the timeout passes or the connection ends first."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                f = await self.read_frame(left)
            except asyncio.TimeoutError:
                return None
            if f is None:
                return None
            if pred(f):
                return f

    async def read_json(self, pred=lambda o: True, timeout: float = 5.0):
        f = await self.read_until(lambda f: f.opcode == TEXT and isinstance(f.json(), dict) and pred(f.json()),
                                  timeout)
        return f.json() if f else None

    async def expect_close(self, timeout: float = 5.0) -> Frame | None:
        """Reads (and keeps) frames until the server's close frame; None if the connection
        ends or the timeout passes without one."""
        return await self.read_until(lambda f: f.opcode == CLOSE, timeout)

    async def wait_eof(self, timeout: float) -> bool:
        """True when the server closes the TCP connection within timeout (frames read meanwhile
        are kept)."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                await self.read_frame(left)
            except asyncio.TimeoutError:
                return False
        return True

    def close(self):
        close_writer(self.w)


def vm_rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


# --- self-test ---------------------------------------------------------------------------------------

def _selftest() -> int:
    import tempfile
    problems = []
    d = pathlib.Path(tempfile.mkdtemp(prefix="edgetools-"))
    t0 = time.monotonic()
    pki = PKI(d)
    leaf = pki.leaf("node1", key_type="rsa")
    leaf2 = pki.leaf("node1b")
    for lf in (leaf, leaf2):
        out = pki.verify(lf)
        if not out.endswith("OK"):
            problems.append(f"openssl verify {lf.name}: {out}")
    print(f"pki: {time.monotonic() - t0:.1f}s, {pki.verify(leaf)}")
    # chain file = leaf + intermediate; a root-only client verifies a server given the chain
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(leaf.chain_path, leaf.key_path)
    sctx.set_alpn_protocols(["http/1.1"])

    async def tls_roundtrip():
        async def handle(r, w):
            req = await r.readuntil(b"\r\n\r\n")
            key = [ln.split(b":", 1)[1].strip() for ln in req.split(b"\r\n")
                   if ln.lower().startswith(b"sec-websocket-key")][0].decode()
            w.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     f"Sec-WebSocket-Accept: {ws_accept(key)}\r\nSec-WebSocket-Protocol: streamgate.v1\r\n\r\n").encode())
            w.write(build_frame(PING, b"srv", mask=False))
            # echo one frame back unmasked, then close 1002
            b = await r.readexactly(2)
            n = b[1] & 0x7F
            k = await r.readexactly(4)
            p = mask_bytes(await r.readexactly(n), k)
            w.write(build_frame(b[0] & 0xF, p, mask=False, rsv=(b[0] >> 4) & 7))
            await w.drain()
            split = build_frame(TEXT, b"split-frame", mask=False)
            w.write(split[:3])
            await w.drain()
            await asyncio.sleep(0.6)
            w.write(split[3:])
            w.write(build_frame(CLOSE, close_payload(1002, b"x"), mask=False))
            await w.drain()
            w.close()
        srv = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=sctx)
        port = srv.sockets[0].getsockname()[1]
        cctx = pki.client_context(alpn=("h2", "http/1.1"))
        ws = await RawWS.connect("127.0.0.1", port, ssl_ctx=cctx, server_hostname="node1.example.test")
        sslobj = ws.w.get_extra_info("ssl_object")
        if sslobj.selected_alpn_protocol() != "http/1.1":
            problems.append(f"alpn {sslobj.selected_alpn_protocol()}")
        if sslobj.getpeercert(binary_form=True) != leaf.der:
            problems.append("peer cert is not the leaf")
        f = await ws.read_frame()
        if not (f and f.opcode == PING and f.payload == b"srv" and not f.masked):
            problems.append(f"ping {f}")
        await ws.send(TEXT, b"hello", rsv=4)
        f = await ws.read_frame()
        if not (f and f.opcode == TEXT and f.rsv == 4 and f.payload == b"hello"):
            problems.append(f"echo {f}")
        # a frame arriving in pieces across read time-outs is not lost
        try:
            await ws.read_frame(0.3)
            problems.append("read_frame returned before the split frame was complete")
        except asyncio.TimeoutError:
            pass
        f = await ws.read_frame(3)
        if not (f and f.opcode == TEXT and f.payload == b"split-frame"):
            problems.append(f"split frame {f}")
        c = await ws.expect_close()
        if not (c and c.close_code == 1002 and c.close_reason == b"x"):
            problems.append(f"close {c}")
        if not await ws.wait_eof(3):
            problems.append("no eof")
        ws.close()
        srv.close()

    asyncio.run(tls_roundtrip())
    # tokens
    secret = b"e2e-secret"
    now = time.time()
    cl = claims("alice", channels={"sub": ["*"], "pub": []}, iss="iss", aud="aud", now=now)
    for alg in ("HS256", "HS384", "HS512"):
        tok = hs_token(secret, cl, alg)
        jwt.decode(tok, secret, algorithms=[alg], audience="aud", issuer="iss")
    keys = [make_key(a, f"k-{a}") for a in ("RS256", "PS256", "ES256", "ES384", "EdDSA")]
    doc = jwks_document(keys)
    jset = jwt.PyJWKSet.from_dict(doc)
    for k in keys:
        tok = k.sign(cl)
        hdr = jwt.get_unverified_header(tok)
        assert hdr["kid"] == k.kid and hdr["alg"] == k.alg, hdr
        jwt.decode(tok, jset[k.kid].key, algorithms=[k.alg], audience="aud", issuer="iss")
    # attack tokens really are what they claim
    rs = keys[0]
    conf = confusion_token(rs, cl)
    h = jwt.get_unverified_header(conf)
    assert h == {"alg": "HS256", "typ": "JWT", "kid": rs.kid}, h
    si, sig = conf.rsplit(".", 1)
    assert hmac.compare_digest(b64url(hmac.new(rs.public_pem(), si.encode(), hashlib.sha256).digest()), sig)
    try:
        jwt.decode(conf, jset[rs.kid].key, algorithms=["RS256"], audience="aud", issuer="iss")
        problems.append("confusion token verified as RS256")
    except jwt.InvalidTokenError:
        pass
    nt = unsigned_token(cl)
    assert jwt.get_unverified_header(nt)["alg"] == "none" and nt.endswith(".")
    assert jwt.decode(nt, options={"verify_signature": False})["sub"] == "alice"
    # a JWKS server that can change and stop
    js = JwksServer(doc).start()
    import urllib.request
    got = json.loads(urllib.request.urlopen(js.url, timeout=5).read())
    assert got == doc
    js.set(status=500, body=b"oops")
    try:
        urllib.request.urlopen(js.url, timeout=5)
        problems.append("status 500 not served")
    except urllib.error.HTTPError as e:
        assert e.code == 500
    js.stop()
    try:
        urllib.request.urlopen(js.url, timeout=2)
        problems.append("stopped server still answers")
    except OSError:
        pass
    js.set(doc, status=200)
    js.start()
    assert json.loads(urllib.request.urlopen(js.url, timeout=5).read()) == doc
    js.stop()
    # frames
    fr = build_frame(TEXT, b"x" * 70000, mask=False)
    assert fr[:2] == bytes([0x81, 127]) and struct.unpack("!Q", fr[2:10])[0] == 70000
    fr = build_frame(PING, b"a" * 126)
    assert fr[1] == 0x80 | 126
    print(f"rss of self: {vm_rss_kib(os.getpid())} KiB")
    for p in problems:
        print("PROBLEM", p)
    print("selftest", "ok" if not problems else "FAILED", f"({time.monotonic() - t0:.1f}s)")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(_selftest())
