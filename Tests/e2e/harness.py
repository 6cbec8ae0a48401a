"""Process control, WebSocket clients and bookkeeping for the end-to-end suite."""
from __future__ import annotations

import asyncio
import collections
import ctypes
import itertools
import json
import multiprocessing
import os
import pathlib
import signal
import subprocess
import shutil
import tempfile
import threading
import time
import socket
import traceback
import urllib.parse
from concurrent.futures import ProcessPoolExecutor

import aiohttp
import websockets
from websockets.asyncio.client import connect as ws_connect

import schemacheck

SUBPROTOCOL = "streamgate.v1"

try:
    _libc = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:  # pragma: no cover - non-glibc systems
    _libc = None


def child_setup():
    # Children die with the suite even if it is killed hard (PR_SET_PDEATHSIG).
    if _libc is not None:
        _libc.prctl(1, signal.SIGKILL)


class CaseError(Exception):
    """A case cannot continue: it fails with this message."""


def settle(futures) -> None:
    """Cancels futures still pending and marks the exceptions of finished ones as retrieved."""
    for f in futures:
        if not f.done():
            f.cancel()
        elif not f.cancelled():
            f.exception()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# --- processes ----------------------------------------------------------------------

class Proc:
    def __init__(self, name: str, argv: list[str], workdir: pathlib.Path):
        self.name = name
        self.argv = argv
        self.stderr_path = workdir / f"{name}.stderr"
        self.stdout_path = workdir / f"{name}.stdout"
        self.lines: list[str] = []
        self.eof = False
        self._changed = asyncio.Event()
        self.p: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task | None = None

    async def start(self):
        self._err = open(self.stderr_path, "wb")
        self.p = await asyncio.create_subprocess_exec(
            *self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._err,
            start_new_session=True, preexec_fn=child_setup)
        self._reader = asyncio.create_task(self._read_stdout())

    @property
    def pid(self) -> int | None:
        return self.p.pid if self.p else None

    @property
    def alive(self) -> bool:
        return self.p is not None and self.p.returncode is None

    async def _read_stdout(self):
        with open(self.stdout_path, "wb") as out:
            while True:
                line = await self.p.stdout.readline()
                if not line:
                    break
                out.write(line)
                out.flush()
                self.lines.append(line.decode(errors="replace").rstrip("\r\n"))
                self._changed.set()
                self._changed = asyncio.Event()
        self.eof = True
        self._changed.set()

    async def wait_line(self, pred, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for line in self.lines[seen:]:
                if pred(line):
                    return line
            seen = len(self.lines)
            if self.eof:
                await asyncio.sleep(0.2)
                raise CaseError(f"{self.name} exited (rc={self.p.returncode}) before printing the "
                                f"expected line; stdout={self.lines[-3:]!r}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise CaseError(f"{self.name}: expected stdout line not seen within {timeout}s; "
                                f"stdout={self.lines[-3:]!r}")
            ev = self._changed
            try:
                await asyncio.wait_for(ev.wait(), left)
            except asyncio.TimeoutError:
                pass

    def send_signal(self, sig):
        if self.alive:
            try:
                os.kill(self.p.pid, sig)
            except ProcessLookupError:
                pass

    async def wait_exit(self, timeout: float) -> int | None:
        if self.p is None:
            return None
        try:
            return await asyncio.wait_for(self.p.wait(), timeout)
        except asyncio.TimeoutError:
            return None

    async def stop(self, sig=signal.SIGTERM, timeout: float = 5.0) -> int | None:
        if self.p is None:
            return None
        if self.alive:
            self.send_signal(sig)
            rc = await self.wait_exit(timeout)
            if rc is None:
                self.send_signal(signal.SIGKILL)
                await self.wait_exit(5)
        if self._reader:
            try:
                await asyncio.wait_for(self._reader, 2)
            except (asyncio.TimeoutError, Exception):
                self._reader.cancel()
        try:
            self._err.close()
        except Exception:
            pass
        return self.p.returncode

    def kill_now(self):
        self.send_signal(signal.SIGKILL)

    def tail(self, n: int = 15) -> list[str]:
        try:
            data = self.stderr_path.read_bytes()
        except OSError:
            return []
        return data.decode(errors="replace").splitlines()[-n:]


class Procs:
    def __init__(self, workdir: pathlib.Path):
        self.workdir = workdir
        self.all: list[Proc] = []
        self._n = itertools.count(1)

    async def start(self, name: str, argv: list[str]) -> Proc:
        proc = Proc(f"{next(self._n):02d}-{name}", argv, self.workdir)
        self.all.append(proc)
        await proc.start()
        return proc

    async def stop_all(self):
        live = [p for p in reversed(self.all) if p.alive]
        # gateways first, then the dev Kafka processes
        gateways = [p for p in live if "dev-kafka" not in p.argv]
        kafkas = [p for p in live if "dev-kafka" in p.argv]
        await asyncio.gather(*(p.stop() for p in gateways), return_exceptions=True)
        await asyncio.gather(*(p.stop() for p in kafkas), return_exceptions=True)

    def kill_all_now(self):
        for p in self.all:
            p.kill_now()


# --- schema validation -----------------------------------------------------------------

class SchemaChecker:
    """Validates every server frame and every gateway-written header map against
    schemas/ in a worker process; violations are attributed to the case (tag)."""

    BATCH = 400

    def __init__(self):
        ctx = multiprocessing.get_context("spawn")
        self.pool = ProcessPoolExecutor(1, mp_context=ctx)
        self.buf: dict[str, list] = collections.defaultdict(list)
        self.futs: dict[str, list] = collections.defaultdict(list)
        self.direct: dict[str, list] = collections.defaultdict(list)
        self.checked = collections.Counter()
        self.violations_total = 0

    def warm_up(self):
        self.pool.submit(schemacheck.validate_batch, []).result(timeout=60)

    def submit(self, tag: str, kind: str, payload: str):
        self.checked[kind] += 1
        b = self.buf[tag]
        b.append((kind, payload))
        if len(b) >= self.BATCH:
            self._flush(tag)

    def violation(self, tag: str, kind: str, payload, problem: str):
        self.checked[kind] += 1
        self.direct[tag].append((kind, repr(payload)[:200], problem))

    def _flush(self, tag: str):
        batch = self.buf.pop(tag, None)
        if batch:
            fut = asyncio.get_running_loop().run_in_executor(self.pool, schemacheck.validate_batch, batch)
            self.futs[tag].append((batch, fut))

    async def collect(self, tag: str, timeout: float = 120) -> list:
        self._flush(tag)
        out = list(self.direct.pop(tag, []))
        futs = self.futs.pop(tag, [])
        if futs:
            done = await asyncio.wait_for(asyncio.gather(*(f for _, f in futs)), timeout)
            for (batch, _), res in zip(futs, done):
                for i, problem in res:
                    kind, payload = batch[i]
                    out.append((kind, payload[:300], problem))
        self.violations_total += len(out)
        return out

    def close(self):
        self.pool.shutdown(wait=False, cancel_futures=True)


# --- WebSocket transports ----------------------------------------------------------------

class Closed(Exception):
    def __init__(self, code, reason=""):
        super().__init__(f"closed {code} {reason}")
        self.code = code
        self.reason = reason


class HandshakeRefused(Exception):
    def __init__(self, status, body="", headers=None):
        super().__init__(f"handshake refused with HTTP {status}")
        self.status = status
        self.body = body
        self.headers = headers or {}  # lower-case name -> value


class WsTransport:
    """websockets (asyncio API)."""
    kind = "websockets"

    def __init__(self, ws):
        self.ws = ws

    @classmethod
    async def open(cls, url, subprotocols, headers, timeout, max_queue=4096, rcvbuf=None, ssl=None):
        extra = {}
        if ssl is not None:
            extra["ssl"] = ssl
        if rcvbuf:
            # a small receive window, set before connecting, so a client that stops
            # reading pushes back on the gateway almost at once
            u = urllib.parse.urlsplit(url)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setblocking(False)
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (u.hostname, u.port)), timeout)
            extra["sock"] = sock
            if ssl is not None:
                extra["server_hostname"] = u.hostname
        try:
            ws = await ws_connect(url, subprotocols=subprotocols, additional_headers=headers,
                                  proxy=None, compression=None, max_size=None, max_queue=max_queue,
                                  ping_interval=None, open_timeout=timeout, close_timeout=5, **extra)
        except websockets.exceptions.InvalidStatus as e:
            raise HandshakeRefused(e.response.status_code,
                                   (e.response.body or b"").decode(errors="replace"),
                                   {k.lower(): v for k, v in e.response.headers.raw_items()}) from None
        return cls(ws)

    @property
    def subprotocol(self):
        return self.ws.subprotocol

    async def recv(self):
        try:
            return await self.ws.recv()
        except websockets.exceptions.ConnectionClosed as e:
            if e.rcvd is not None:
                raise Closed(e.rcvd.code, e.rcvd.reason) from None
            raise Closed(1006, "no close frame") from None

    async def send(self, data, text=None):
        try:
            await self.ws.send(data, text=text)
        except websockets.exceptions.ConnectionClosed as e:
            raise Closed(e.rcvd.code if e.rcvd else 1006) from None

    async def close(self):
        try:
            await asyncio.wait_for(self.ws.close(), 6)
        except Exception:
            pass


class AioTransport:
    """aiohttp client WebSocket."""
    kind = "aiohttp"

    def __init__(self, session, ws):
        self.session = session
        self.ws = ws

    @classmethod
    async def open(cls, url, subprotocols, headers, timeout, ssl=None):
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, connect=timeout))
        extra = {"ssl": ssl} if ssl is not None else {}
        try:
            ws = await asyncio.wait_for(session.ws_connect(
                url, protocols=tuple(subprotocols or ()), headers=headers, max_msg_size=0,
                autoping=True, heartbeat=None, **extra), timeout)
        except aiohttp.WSServerHandshakeError as e:
            await session.close()
            raise HandshakeRefused(e.status, e.message,
                                   {k.lower(): v for k, v in (e.headers or {}).items()}) from None
        except BaseException:
            await session.close()
            raise
        return cls(session, ws)

    @property
    def subprotocol(self):
        return self.ws.protocol

    async def recv(self):
        msg = await self.ws.receive()
        if msg.type == aiohttp.WSMsgType.TEXT:
            return msg.data
        if msg.type == aiohttp.WSMsgType.BINARY:
            return msg.data
        code = self.ws.close_code
        if msg.type == aiohttp.WSMsgType.CLOSE:
            code = msg.data
        raise Closed(code if code is not None else 1006, str(msg.extra or ""))

    async def send(self, data, text=None):
        if self.ws.closed:
            raise Closed(self.ws.close_code or 1006)
        if isinstance(data, str):
            await self.ws.send_str(data)
        else:
            await self.ws.send_bytes(data)

    async def close(self):
        try:
            await asyncio.wait_for(self.ws.close(), 6)
        except Exception:
            pass
        await self.session.close()


# --- protocol client ------------------------------------------------------------------------

REPLY_TYPES = {"ack", "nack", "error", "subscribed", "unsubscribed", "authed"}


class Client:
    def __init__(self, ctx: "Ctx", transport, name: str, tag: str):
        self.ctx = ctx
        self.t = transport
        self.name = name
        self.tag = tag
        self.frames: list[dict] = []
        self.pending: dict = {}
        self.msgs: dict[str, list] = collections.defaultdict(list)
        self.gaps: dict[str, list] = collections.defaultdict(list)  # (index in msgs, frame)
        self.other: list[dict] = []
        loop = asyncio.get_running_loop()
        self.bound_subscribed = loop.create_future()
        self.closed = loop.create_future()
        self._wake = asyncio.Event()
        self._go = asyncio.Event()
        self._go.set()
        self._ids = itertools.count(1)
        self._n = itertools.count()
        self.reader = asyncio.create_task(self._run())

    def pause(self):
        """Stop reading frames (the transport then stops reading the socket)."""
        self._go.clear()

    def resume(self):
        self._go.set()

    @property
    def subprotocol(self):
        return self.t.subprotocol

    def _notify(self):
        self._wake.set()
        self._wake = asyncio.Event()

    async def _run(self):
        try:
            while True:
                await self._go.wait()
                raw = await self.t.recv()
                if isinstance(raw, (bytes, bytearray)):
                    self.ctx.checker.violation(self.tag, "frame", raw, "binary frame from the gateway")
                    self._notify()
                    continue
                self.ctx.checker.submit(self.tag, "frame", raw)
                try:
                    f = json.loads(raw)
                except ValueError:
                    self._notify()
                    continue
                if not isinstance(f, dict):
                    self._notify()
                    continue
                self._dispatch(f)
                self._notify()
        except Closed as e:
            if not self.closed.done():
                self.closed.set_result((e.code, e.reason))
        except Exception as e:  # transport failure
            if not self.closed.done():
                self.closed.set_result((1006, f"{type(e).__name__}: {e}"))
        finally:
            for fut in self.pending.values():
                if not fut.done():
                    fut.set_exception(Closed(*(self.closed.result() if self.closed.done() else (1006, ""))))
            self.pending.clear()
            self._notify()

    def _dispatch(self, f: dict):
        f["_n"] = next(self._n)
        f["_t"] = time.monotonic()
        f["_ms"] = now_ms()
        self.frames.append(f)
        t = f.get("type")
        fid = f.get("id")
        if t == "message":
            self.msgs[f.get("channel")].append(f)
        elif t == "gap":
            ch = f.get("channel")
            self.gaps[ch].append((len(self.msgs[ch]), f))
        elif t in REPLY_TYPES and _valid_id(fid) and _idkey(fid) in self.pending:
            fut = self.pending.pop(_idkey(fid))
            if not fut.done():
                fut.set_result(f)
        elif t == "subscribed" and "id" not in f and not self.bound_subscribed.done():
            self.bound_subscribed.set_result(f)
        else:
            self.other.append(f)

    def next_id(self) -> int:
        return next(self._ids)

    def expect_reply(self, rid) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self.pending[_idkey(rid)] = fut
        return fut

    async def send_json(self, obj):
        await self.t.send(json.dumps(obj, separators=(",", ":"), ensure_ascii=False))

    async def send_text(self, text: str):
        await self.t.send(text)

    async def send_bytes(self, data: bytes, text=None):
        await self.t.send(data, text=text)

    async def submit(self, obj: dict | None = None, *, text: str | None = None, rid=None) -> asyncio.Future:
        """Sends a request and returns the future of its reply (pipelining)."""
        if obj is not None:
            if "id" not in obj:
                obj = dict(obj, id=self.next_id())
            rid = obj["id"]
            fut = self.expect_reply(rid)
            await self.send_json(obj)
        else:
            fut = self.expect_reply(rid)
            await self.send_text(text)
        return fut

    async def request(self, obj: dict | None = None, *, text: str | None = None, rid=None,
                      timeout: float = 10.0) -> dict:
        fut = await self.submit(obj, text=text, rid=rid)
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise CaseError(f"{self.name}: no reply within {timeout}s to "
                            f"{(json.dumps(obj) if obj else text)[:200]}") from None
        except Closed as e:
            raise CaseError(f"{self.name}: connection closed ({e.code} {e.reason}) while waiting "
                            f"for the reply to {(json.dumps(obj) if obj else text)[:200]}") from None

    async def wait_until(self, cond, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if cond():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self.closed.done():
                # one more check after the last frames were dispatched
                return bool(cond())
            ev = self._wake
            try:
                await asyncio.wait_for(ev.wait(), min(left, 1.0))
            except asyncio.TimeoutError:
                pass

    async def wait_next_other(self, start_index: int, timeout: float) -> dict | None:
        ok = await self.wait_until(lambda: len(self.other) > start_index, timeout)
        return self.other[start_index] if ok else None

    async def wait_closed(self, timeout: float):
        try:
            return await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        except asyncio.TimeoutError:
            return None

    async def close(self):
        await self.t.close()
        try:
            await asyncio.wait_for(self.reader, 3)
        except (asyncio.TimeoutError, Exception):
            self.reader.cancel()


def _valid_id(rid) -> bool:
    return isinstance(rid, (str, int)) and not isinstance(rid, bool)


def _idkey(rid):
    return (type(rid).__name__, rid)


def strip_meta(frame: dict) -> dict:
    return {k: v for k, v in frame.items() if not k.startswith("_")}


# --- servers ----------------------------------------------------------------------------------

class Server:
    def __init__(self, name, proc: Proc, host: str, port: int, node_id: str, brokers: str,
                 ssl_context=None):
        self.name = name
        self.proc = proc
        self.host = host
        self.port = port
        self.node_id = node_id
        self.brokers = brokers
        # a client-side ssl.SSLContext when the node serves TLS (wss://, https://), else None
        self.ssl_context = ssl_context

    @property
    def scheme(self) -> str:
        return "wss" if self.ssl_context is not None else "ws"

    @property
    def ws(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def http(self) -> str:
        return f"{'https' if self.ssl_context is not None else 'http'}://127.0.0.1:{self.port}"


class Ctx:
    def __init__(self, args, workdir: pathlib.Path, binary: str):
        self.args = args
        self.workdir = workdir
        self.binary = binary
        self.procs = Procs(workdir)
        self.checker = SchemaChecker()
        self.stats = collections.Counter()
        self.tag = "setup"
        self.fails: list[str] = []
        self.notes: list[str] = []
        self.clients: list[Client] = []
        self.case_procs: list[Proc] = []
        self.case_servers: list[Proc] = []
        self.kafka: Proc | None = None
        self.bootstrap: str | None = None
        self.servers: dict[str, Server] = {}
        self.shared: dict = {}  # results cases hand to later cases
        self.topic = "streamgate.events"
        self.partitions = 4

    # -- checks --
    def expect(self, cond, msg: str) -> bool:
        if not cond:
            self.fails.append(msg)
        return bool(cond)

    def count(self, name: str, n: int = 1):
        self.stats[name] += n

    # -- processes --
    async def start_dev_kafka(self, name="dev-kafka", extra=()) -> tuple[Proc, str]:
        argv = [self.binary, "dev-kafka", "--partitions", str(self.partitions), "--broker-count", "3",
                *extra]
        proc = await self.procs.start(name, argv)
        self.case_procs.append(proc)
        line = await proc.wait_line(lambda l: l.strip() != "", 30)
        bootstrap = line.strip()
        if not all(":" in hp for hp in bootstrap.split(",")):
            raise CaseError(f"dev-kafka first stdout line is not a bootstrap list: {line!r}")
        return proc, bootstrap

    async def start_serve(self, name: str, brokers: str, node_id: str, extra=(), ssl_context=None) -> Server:
        argv = [self.binary, "serve", "--brokers", brokers, "--host", "127.0.0.1", "--port", "0",
                "--node-id", node_id, *extra]
        proc = await self.procs.start(name, argv)
        self.case_procs.append(proc)
        line = await proc.wait_line(lambda l: l.startswith("listening on "), 30)
        hostport = line[len("listening on "):].strip()
        host, _, port = hostport.rpartition(":")
        try:
            port_n = int(port)
        except ValueError:
            raise CaseError(f"{name}: cannot parse {line!r}") from None
        srv = Server(name, proc, host, port_n, node_id, brokers, ssl_context)
        # readiness is checked by a case; here only wait (bounded) for it
        await self.wait_ready(srv, 15)
        return srv

    async def wait_ready(self, srv: Server, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                status, _ = await self.http_get(srv, "/readyz", timeout=3)
                if status == 200:
                    return True
            except Exception:
                pass
            await asyncio.sleep(0.2)
        return False

    async def server(self, key: str) -> Server:
        """Shared servers, started on first use (see run.py SERVER_SPECS)."""
        if key in self.servers and self.servers[key].proc.alive:
            self.case_servers.append(self.servers[key].proc)
            return self.servers[key]
        if key in self.servers:
            raise CaseError(f"server {key} is no longer running (rc={self.servers[key].proc.p.returncode})")
        spec = self.server_specs[key]
        srv = await self.start_serve(key, self.bootstrap, spec["node_id"], spec.get("args", ()))
        self.servers[key] = srv
        self.case_servers.append(srv.proc)
        return srv

    # -- clients --
    async def connect(self, srv: Server, path: str = "/v1/ws", *, name: str = "",
                      transport: str = "websockets", subprotocols=(SUBPROTOCOL,), headers=None,
                      timeout: float = 10.0, **transport_opts) -> Client:
        cls = AioTransport if transport == "aiohttp" else WsTransport
        if srv.ssl_context is not None:
            transport_opts.setdefault("ssl", srv.ssl_context)
        t = await cls.open(srv.ws + path, list(subprotocols) if subprotocols is not None else None,
                           headers, timeout, **transport_opts)
        c = Client(self, t, name or f"{transport}-{len(self.clients)}", self.tag)
        self.clients.append(c)
        return c

    async def http_get(self, srv: Server, path: str, headers=None, timeout: float = 5.0):
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as s:
            extra = {"ssl": srv.ssl_context} if srv.ssl_context is not None else {}
            async with s.get(srv.http + path, headers=headers, allow_redirects=False, **extra) as r:
                return r.status, await r.text()

    async def close_clients(self):
        cs, self.clients = self.clients, []
        await asyncio.gather(*(c.close() for c in cs), return_exceptions=True)


def format_exc(e: BaseException) -> str:
    tb = traceback.extract_tb(e.__traceback__)
    where = ""
    for fr in reversed(tb):
        if "e2e" in fr.filename:
            where = f" at {pathlib.Path(fr.filename).name}:{fr.lineno}"
            break
    return f"{type(e).__name__}: {e}{where}"


def run_guarded(main_coro, budget: float, results: dict, holder: list, cleanup=None) -> bool:
    """Runs a suite's `main_coro` under a watchdog that kills everything the suite started (the process
    controllers `ctx.procs` of the contexts in `holder`) and exits 1 once `budget` seconds have passed.
    `cleanup(ctx)` runs for each context before the final kill. Returns whether the run was interrupted;
    an exception that escaped the suite counts as one failure in `results`."""
    def watchdog():
        print(f"FAIL watchdog: the suite exceeded {budget:.0f}s; killing everything", flush=True)
        for c in holder:
            c.procs.kill_all_now()
        print(f"{results['passed']} passed, {results['failed'] + 1} failed", flush=True)
        os._exit(1)

    timer = threading.Timer(budget, watchdog)
    timer.daemon = True
    timer.start()
    interrupted = False
    try:
        asyncio.run(main_coro)
    except (KeyboardInterrupt, asyncio.CancelledError):
        interrupted = True
        print("interrupted", flush=True)
    except Exception as e:
        print(f"FAIL suite: {format_exc(e)}", flush=True)
        results["failed"] += 1
    finally:
        timer.cancel()
        for c in holder:
            if cleanup is not None:
                cleanup(c)
            c.procs.kill_all_now()  # belt and braces: nothing outlives the suite
    if interrupted:
        results["failed"] += 1
    return interrupted


def private_binary(binary: str, repo: pathlib.Path, prefix: str):
    """Copies the gateway binary into a new temp dir (a rebuild during the run does not disturb it, and a
    name-based cleanup elsewhere does not match our processes). Returns (workdir, copy, src); prints the
    failure and returns None when the binary cannot be copied."""
    src = pathlib.Path(binary)
    if not src.is_absolute() and not src.exists() and (repo / src).exists():
        src = repo / src
    workdir = pathlib.Path(tempfile.mkdtemp(prefix=prefix))
    copy = str(workdir / "gw")
    try:
        shutil.copy2(src, copy)
    except OSError as e:
        print(f"FAIL setup: cannot copy the binary {src}: {e}")
        print("0 passed, 1 failed")
        return None
    return workdir, copy, src


async def schema_failure(checker, stats: dict, name: str) -> str | None:
    """Collects the schema checker's violations of case `name`, counts them in `stats`, and returns the
    case's failure message, or None when every frame was valid."""
    try:
        viol = await checker.collect(name)
    except Exception as e:
        viol = [("?", "", f"schema check failed: {e}")]
    if not viol:
        return None
    stats["schema_violations"] += len(viol)
    kinds = sorted({k for k, _, _ in viol})
    return f"{len(viol)} schema violations ({', '.join(kinds)}); first: {viol[0][2]} in {viol[0][1][:160]}"
