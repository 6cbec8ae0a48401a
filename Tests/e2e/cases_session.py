"""Session regressions: subscribe/unsubscribe storms, publish field limits, drain edges on
plain HTTP connections, start-by-time on a pruned partition, and `latest` after the
gateway stopped following a partition."""
from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.parse

import kafkatools
from checks import (Pub, check_stream, make_pub, publish_many, read_partitions, rfc3339, send_tracked, strip,
                    subscribe, verify_acked, wait_delivered)
from harness import REPLY_TYPES, CaseError, Ctx, now_ms, settle

REPLY_WAIT = 10.0


# --- 1. subscribe / unsubscribe / subscribe ... back to back --------------------------------------

async def case_unsub_resub_order(ctx: Ctx):
    """30 subscribe/unsubscribe rounds for one channel sent without waiting, while another
    client publishes to it: replies in request order (never already_subscribed/not_subscribed),
    no message outside a subscription, each subscription period strictly increasing from its
    subscribed offset without gap or duplicate."""
    srv = await ctx.server("main")
    ch = "e2e.s.resub"
    rounds = 30
    pc = await ctx.connect(srv, name="resub-pub")
    pubs: list[Pub] = []
    stop = asyncio.Event()
    seq = 0

    async def pump():
        nonlocal seq
        while not stop.is_set():
            batch = []
            for _ in range(8):
                batch.append(make_pub(pc, ch, data_text='{"r":%d}' % seq, msg_id=f"resub-{seq}", seq=seq))
                seq += 1
            pubs.extend(batch)
            await publish_many(pc, batch, window=8, reply_timeout=15, pace=0.002)

    task = asyncio.create_task(pump())
    try:
        ok = await pc.wait_until(lambda: any(p.acked for p in pubs), 10)
        if not ok:
            raise CaseError(f"publisher got no ack on {ch} within 10s: {[strip(p.reply) for p in pubs[:2]]}")
        base = next(p.reply["offset"] for p in pubs if p.acked)
        await asyncio.sleep(0.3)  # some history behind the head for the offset starts
        c = await ctx.connect(srv, name="resub-sub")
        sent = []  # (id, kind)
        futs = []
        rid = 0
        for i in range(rounds):
            frm = "latest" if i % 2 == 0 else {"offset": base}
            for kind, req in (("subscribe", {"type": "subscribe", "channel": ch, "from": frm}),
                              ("unsubscribe", {"type": "unsubscribe", "channel": ch})):
                rid += 1
                futs.append(await c.submit(dict(req, id=rid)))
                sent.append((rid, kind))
        rid += 1
        futs.append(await c.submit({"type": "subscribe", "id": rid, "channel": ch, "from": {"offset": base}}))
        sent.append((rid, "subscribe"))
        await asyncio.wait(futs, timeout=REPLY_WAIT)
        settle(futs)
        await asyncio.sleep(0.5)  # live records into the last subscription
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    acked = [p for p in pubs if p.acked]
    if not acked:
        raise CaseError("no publish acked")
    last = max(p.reply["offset"] for p in acked)
    left = await wait_delivered([(c, ch)], last, 15)
    P = acked[0].reply["partition"]
    lo = min([base] + [f["offset"] for f in c.frames if f.get("type") == "subscribed" and isinstance(f.get("offset"), int)])
    recs = await read_partitions(ctx, ctx.topic, {P: (lo, None)})
    chan = sorted(o for (p, o), r in recs.items() if r.key == ch.encode())

    # replies: one per request, in request order, of the request's kind
    kinds = dict(sent)
    want_type = {"subscribe": "subscribed", "unsubscribe": "unsubscribed"}
    replies = [f for f in c.frames if f.get("type") in REPLY_TYPES and f.get("id") in kinds]
    got_ids = [f["id"] for f in replies]
    order = [i for i, _ in sent]
    pos = {i: n for n, i in enumerate(order)}
    inversions = sum(1 for a, b in zip(got_ids, got_ids[1:]) if pos[b] < pos[a])
    ctx.count("reordered", inversions)
    unanswered = [i for i in order if i not in set(got_ids)]
    ctx.count("unanswered", len(unanswered))
    ctx.expect(not unanswered, f"{len(unanswered)}/{len(order)} requests unanswered within {REPLY_WAIT}s "
                               f"(ids {unanswered[:6]})")
    ctx.expect(got_ids == [i for i in order if i in set(got_ids)] and len(got_ids) == len(set(got_ids)),
               f"replies not in request order ({inversions} inversions): ids {got_ids[:16]}... "
               f"(sent {order[:16]}...)")
    wrong = [(f["id"], kinds[f["id"]], strip(f)) for f in replies if f.get("type") != want_type[kinds[f["id"]]]]
    ctx.expect(not wrong, f"{len(wrong)} replies of the wrong kind, first {wrong[:3]}")

    # delivery: periods between 'subscribed' and the next 'unsubscribed', in arrival order
    periods = []  # [subscribed frame, [message frames], ended]
    outside = []
    active = None
    for f in c.frames:
        t = f.get("type")
        if t == "subscribed" and f.get("channel") == ch:
            active = [f, [], False]
            periods.append(active)
        elif t == "unsubscribed" and f.get("channel") == ch:
            if active is not None:
                active[2] = True
            active = None
        elif t == "message" and f.get("channel") == ch:
            if active is None:
                outside.append(f.get("offset"))
            else:
                active[1].append(f)
    ctx.expect(not outside, f"{len(outside)} message frames of {ch} outside any subscription (after an "
                            f"'unsubscribed', before the next 'subscribed'): offsets {outside[:8]}")
    dups = back = silent = below = 0
    problems = []
    for n, (sf, msgs, ended) in enumerate(periods):
        got = [m.get("offset") for m in msgs]
        start = sf.get("offset")
        d = len(got) - len(set(got))
        b = sum(1 for x, y in zip(got, got[1:]) if not y > x)
        lowmsg = [o for o in got if isinstance(start, int) and o < start]
        exp = [o for o in chan if isinstance(start, int) and o >= start]
        if ended:
            exp = exp[:len(got)]
        miss = sum(1 for x, y in zip(got, exp) if x != y) + max(0, len(exp) - len(got))
        dups += d
        back += b
        below += len(lowmsg)
        silent += miss
        if (d or b or lowmsg or miss) and len(problems) < 3:
            problems.append(f"period {n} (subscribed id {sf.get('id')} offset {start}{', last' if not ended else ''}): "
                            f"got {got[:6]}..{got[-3:]} expected {exp[:6]}..{exp[-3:]} dups={d} steps_back={b} "
                            f"below_start={len(lowmsg)}")
    ctx.count("duplicates", dups)
    ctx.count("reordered", back)
    ctx.count("silent_gaps", silent)
    ctx.expect(not (dups or back or silent or below),
               f"subscription periods: duplicates={dups} steps_back={back} silent_gaps={silent} "
               f"before_subscribed_offset={below}; {problems}")
    ctx.expect(len(periods) == rounds + 1, f"{len(periods)} 'subscribed' frames for {rounds + 1} subscribes")
    ctx.expect(periods and not periods[-1][2], "the last subscribe is not the active subscription")
    ctx.expect(not left, f"the last subscription did not reach offset {last} within 15s")
    ctx.notes.append(f"unsub_resub_order: {len(acked)} publishes during {rounds} rounds, "
                     f"{sum(len(m) for _, m, _ in periods)} messages in {len(periods)} periods")


# --- 2. msgId / traceparent limits -----------------------------------------------------------------

TP_OK = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _printable_id(n: int) -> str:
    chars = "".join(chr(c) for c in range(0x20, 0x7F))
    return (chars * (n // len(chars) + 1))[:n]


async def case_publish_field_limits(ctx: Ctx):
    """msgId must be 1-256 bytes of printable ASCII and traceparent a W3C traceparent
    (lower-case hex, version not ff, ids not all zeros): violations get bad_request with
    the request id, nothing is stored, the connection stays open; valid values are stored
    exactly."""
    srv = await ctx.server("main")
    ch = "e2e.s.fields"
    P = kafkatools.partition_for(ch, ctx.partitions)
    _, hw0 = await asyncio.to_thread(kafkatools.watermarks, ctx.bootstrap, ctx.topic, P)
    sub = await ctx.connect(srv, name="fields-sub", transport="aiohttp")
    await subscribe(ctx, sub, ch, "latest")
    c = await ctx.connect(srv, name="fields")
    bad = [
        ("msgId of 257 bytes", {"msgId": "m" * 257}),
        ("msgId of 257 printable bytes", {"msgId": _printable_id(257)}),
        ("msgId with \\n", {"msgId": "line\nbreak"}),
        ("msgId with \\t", {"msgId": "tab\there"}),
        ("msgId with DEL", {"msgId": "del\u007f"}),
        ("msgId with a C1 control char", {"msgId": "caf\u0085"}),
        ("msgId empty", {"msgId": ""}),
        ("traceparent garbage", {"traceparent": "garbage"}),
        ("traceparent empty", {"traceparent": ""}),
        ("traceparent upper-case hex", {"traceparent": TP_OK.upper()}),
        ("traceparent all-zero trace id", {"traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"}),
        ("traceparent all-zero parent id", {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01"}),
        ("traceparent version ff", {"traceparent": "ff" + TP_OK[2:]}),
        ("traceparent short trace id", {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01"}),
        ("traceparent with a trailing newline", {"traceparent": TP_OK + "\n"}),
        ("traceparent of 10 KB", {"traceparent": TP_OK + "-" + "0" * 10240}),
    ]
    marks = {}
    results = []
    for n, (label, fields) in enumerate(bad):
        if c.closed.done():
            ctx.fails.append(f"connection closed {c.closed.result()} before '{label}'")
            c = await ctx.connect(srv, name=f"fields-reopened{n}")
        rid = f"bad-{n}"
        frame = {"type": "publish", "id": rid, "channel": ch, "data": {"neg": n}}
        if "msgId" not in fields:
            frame["msgId"] = f"neg-{n}"
        frame.update(fields)
        marks[n] = label
        fut = await c.submit(frame)
        try:
            reply = await asyncio.wait_for(fut, REPLY_WAIT)
        except asyncio.TimeoutError:
            reply = None
        except Exception as e:
            reply = {"type": f"connection failed: {e}"}
        results.append((label, reply))
        ok = (reply is not None and reply.get("type") == "error" and reply.get("code") == "bad_request"
              and reply.get("id") == rid)
        ctx.expect(ok, f"{label}: got {strip(reply)}, expected error bad_request with id {rid!r}")
        await asyncio.sleep(0.02)
        ctx.expect(not c.closed.done(),
                   f"{label}: connection closed {c.closed.result() if c.closed.done() else ''}; must stay open")
    # valid values on the same connection: acked and stored exactly
    good = [
        make_pub(c, ch, data_text='{"pos":0}', msg_id="ok-after-limits", traceparent=TP_OK),
        make_pub(c, ch, data_text='{"pos":1}', msg_id=_printable_id(256),
                 traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"),
        make_pub(c, ch, data_text='{"pos":2}', msg_id="x"),
        make_pub(c, ch, data_text='{"pos":3}', msg_id=" ~"),
    ]
    await publish_many(c, good, window=1, reply_timeout=REPLY_WAIT)
    for p in good:
        ctx.expect(p.acked, f"valid publish (msgId {p.msg_id[:20]!r}, {len(p.msg_id)} bytes, traceparent "
                            f"{p.traceparent}) after the refused ones: {strip(p.reply)}")
    await verify_acked(ctx, good, srv.node_id, label="valid msgId/traceparent")
    # an independent reader: nothing of the refused publishes is in the partition
    _, hw1 = await asyncio.to_thread(kafkatools.watermarks, ctx.bootstrap, ctx.topic, P)
    recs = await read_partitions(ctx, ctx.topic, {P: (hw0, hw1)})
    good_offs = {p.reply["offset"] for p in good if p.acked}
    stored = []
    for (_, o), r in sorted(recs.items()):
        if r.key != ch.encode() or o in good_offs:
            continue
        try:
            n = json.loads(r.value).get("neg")
        except Exception:
            n = None
        stored.append((o, marks.get(n, repr(r.value[:40]))))
    refused_stored = [s for s in stored if any(lbl == s[1] and rep and rep.get("type") == "error"
                                               for lbl, rep in results)]
    ctx.count("nacked_seen", len(refused_stored))
    ctx.expect(not stored, f"{len(stored)} records of invalid publishes are in Kafka "
                           f"({len(refused_stored)} of them answered with an error): {stored[:4]}")
    # the subscriber sees exactly the valid ones
    if good_offs:
        await wait_delivered([(sub, ch)], max(good_offs), 10)
    await asyncio.sleep(0.3)
    check_stream(ctx, "subscriber of the field-limit channel", sub, ch, sorted(good_offs), recs, P)


# --- 3. drain with plain HTTP connections ---------------------------------------------------------

UPGRADE_REQ = ("GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
               "Sec-WebSocket-Protocol: streamgate.v1\r\n\r\n").encode()


def _get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


class RawHTTP:
    """One TCP connection speaking HTTP/1.1 by hand (keep-alive, pipelining, partial requests)."""

    def __init__(self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.name = name
        self.r = reader
        self.w = writer

    @classmethod
    async def open(cls, name: str, port: int) -> "RawHTTP":
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
        return cls(name, r, w)

    async def send(self, data: bytes) -> bool:
        try:
            self.w.write(data)
            await self.w.drain()
            return True
        except (ConnectionError, OSError):
            return False

    async def response(self, timeout: float = 5.0):
        """(status, headers, body) of the next response; None when the connection ends first."""
        try:
            head = await asyncio.wait_for(self.r.readuntil(b"\r\n\r\n"), timeout)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            return None
        except asyncio.TimeoutError:
            return "timeout"
        lines = head.decode("latin-1").split("\r\n")
        try:
            status = int(lines[0].split(" ")[1])
        except (IndexError, ValueError):
            return (-1, {}, head)
        headers = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            if k:
                headers[k.strip().lower()] = v.strip()
        body = b""
        n = int(headers.get("content-length", "0") or 0) if status != 101 else 0
        if n:
            try:
                body = await asyncio.wait_for(self.r.readexactly(n), timeout)
            except Exception:
                pass
        return (status, headers, body)

    def close(self):
        try:
            self.w.close()
        except Exception:
            pass


def _proc_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"


async def case_drain_edges(ctx: Ctx):
    """SIGTERM with publishes in flight and plain HTTP connections open: /readyz on an open
    connection answers 503, an upgrade on an already-open connection (after a keep-alive
    request, as its first request, or completing a half-sent head) is refused (503 or close,
    never 101), an idle keep-alive connection is closed by the gateway before it exits, every
    publish gets ack or nack, exit status 0."""
    srv = await ctx.start_serve("drain-edges", ctx.bootstrap, "e2e-drain-edges", ["--linger-ms", "1000"])
    pid, port = srv.proc.pid, srv.port
    conns = {}
    for name in ("ka-ready", "ka-upgrade", "ka-idle", "ctl"):
        k = await RawHTTP.open(name, port)
        await k.send(_get("/healthz"))
        res = await k.response()
        if not isinstance(res, tuple) or res[0] != 200:
            raise CaseError(f"{name}: GET /healthz before the drain: {res}")
        conns[name] = k
    # control: before the drain, an upgrade that follows another request on a keep-alive connection
    # is not taken (the upgrade must be a connection's first request) and is answered 400, not 503:
    # the 503 below is the drain's own answer
    ctl = conns.pop("ctl")
    await ctl.send(UPGRADE_REQ)
    res = await ctl.response()
    ctl.close()
    if not isinstance(res, tuple) or res[0] in (101, 503):
        raise CaseError(f"control: upgrade on a keep-alive connection before the drain answered {res}, "
                        f"expected 400")
    # connections in the middle of a request: head sent, body still to come
    inreq = {}
    for name, path in (("req-ready", "/readyz"), ("req-ready-upgrade", "/readyz")):
        k = await RawHTTP.open(name, port)
        await k.send(_get(path, "Content-Length: 4\r\n"))
        inreq[name] = k
    # connections whose first request is the upgrade: opened with nothing sent, and with
    # half of the upgrade head sent (the rest follows during the drain)
    first = {"open-upgrade": await RawHTTP.open("open-upgrade", port),
             "partial-upgrade": await RawHTTP.open("partial-upgrade", port)}
    half = len(UPGRADE_REQ) // 2
    await first["partial-upgrade"].send(UPGRADE_REQ[:half])
    idle = conns["ka-idle"]
    idle_closed = asyncio.get_running_loop().create_future()

    async def watch_idle():
        try:
            data = await idle.r.read(1)
        except (ConnectionError, OSError):
            data = b""
        state = _proc_state(pid)
        if not idle_closed.done():
            idle_closed.set_result((time.monotonic(), state, data))

    idle_task = asyncio.create_task(watch_idle())
    # a WebSocket client with publishes in flight (linger 1 s keeps them in the producer)
    ch = "e2e.s.drain"
    wc = await ctx.connect(srv, name="drain-edges-pub")
    pubs: list[Pub] = []
    futs = []
    for k in range(200):
        p = make_pub(wc, ch, data_text='{"d":%d}' % k, msg_id=f"de-{k}", seq=k)
        fut = await send_tracked(wc, p)
        pubs.append(p)
        futs.append(fut)
    await asyncio.sleep(0.1)
    answered_before = sum(1 for p in pubs if p.reply is not None)
    t_term = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)

    # wait until the drain has visibly begun: listener closed, idle keep-alive closed, or a
    # fresh /readyz answering 503
    started = None
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline and started is None:
        if idle_closed.done():
            started = "idle keep-alive connection closed"
            break
        try:
            f = await RawHTTP.open("probe", port)
        except (ConnectionRefusedError, OSError, asyncio.TimeoutError):
            started = "listening socket closed"
            break
        await f.send(_get("/readyz", "Connection: close\r\n"))
        res = await f.response(2.0)
        f.close()
        if isinstance(res, tuple) and res[0] == 503:
            started = "fresh /readyz answered 503"
            break
        await asyncio.sleep(0.01)
    t_started = time.monotonic()
    alive_at_probe = srv.proc.alive

    async def probe(k: RawHTTP, data: bytes, n_resp: int):
        if not await k.send(data):
            return ["send failed"]
        out = []
        for _ in range(n_resp):
            res = await k.response(5.0)
            out.append(res)
            if not isinstance(res, tuple) or res[0] == 101:
                break
        return out

    results = await asyncio.gather(
        probe(conns["ka-ready"], _get("/readyz"), 1),
        probe(conns["ka-upgrade"], UPGRADE_REQ, 1),
        probe(inreq["req-ready"], b"abcd", 1),
        probe(inreq["req-ready-upgrade"], b"abcd" + UPGRADE_REQ, 2),
        probe(first["open-upgrade"], UPGRADE_REQ, 1),
        probe(first["partial-upgrade"], UPGRADE_REQ[half:], 1),
    )
    names = ["keep-alive GET /readyz", "keep-alive upgrade", "in-request /readyz",
             "in-request /readyz + pipelined upgrade", "open connection, first request upgrade",
             "half-sent upgrade completed"]
    show = {n: [(r[0] if isinstance(r, tuple) else r) for r in res] for n, res in zip(names, results)}
    await asyncio.wait(futs, timeout=30)
    cl = await wc.wait_closed(30)
    rc = await srv.proc.wait_exit(30)
    try:
        t_idle, idle_state, idle_data = await asyncio.wait_for(asyncio.shield(idle_closed), 2)
    except asyncio.TimeoutError:
        t_idle, idle_state, idle_data = None, None, None
    idle_task.cancel()
    settle(futs)
    for k in list(conns.values()) + list(inreq.values()) + list(first.values()):
        k.close()

    ctx.expect(started is not None, f"no sign of a drain within 3s of SIGTERM (listener open, idle keep-alive "
                                    f"open, /readyz not 503); probes sent anyway: {show}")
    ctx.expect(alive_at_probe, f"the gateway exited before the probes ({started} after "
                               f"{t_started - t_term:.2f}s): drain too short to test")
    # readiness on already-open connections while draining
    ready_status = [r[0] for res in (results[0], results[2], results[3][:1]) for r in res if isinstance(r, tuple)]
    ctx.expect(all(s == 503 for s in ready_status),
               f"/readyz on an open connection during the drain answered {ready_status}, expected 503 ({show})")
    ctx.expect(ready_status, f"no /readyz probe on an open connection got an answer during the drain "
                             f"(all closed): cannot see 503 ({show})")
    # upgrades on already-open connections while draining
    up = [r for r in results[1] + results[3][1:] + results[4] + results[5] if isinstance(r, tuple)]
    ctx.expect(not [r for r in up if r[0] != 503],
               f"WebSocket upgrade on an open HTTP connection during the drain answered "
               f"{[r[0] for r in up]}, expected 503 or close ({show})")
    # the idle keep-alive connection: closed by the gateway (while it still ran), not by its exit
    ctx.expect(t_idle is not None, "idle keep-alive connection still open after the gateway exited")
    if t_idle is not None:
        ctx.expect(idle_state not in ("Z", "X", "gone"),
                   f"idle keep-alive connection was only closed by the process exit (state {idle_state} at EOF, "
                   f"{t_idle - t_term:.2f}s after SIGTERM); expected the drain to close it")
        ctx.expect(idle_data == b"", f"idle keep-alive connection received {idle_data!r} instead of a close")
    # publishes and exit
    unanswered = [p for p in pubs if p.reply is None]
    ctx.count("unanswered", len(unanswered))
    ctx.expect(not unanswered, f"{len(unanswered)}/{len(pubs)} publishes got neither ack nor nack")
    odd = [strip(p.reply) for p in pubs if p.reply and p.reply.get("type") not in ("ack", "nack")]
    ctx.expect(not odd, f"publishes answered with neither ack nor nack: {odd[:2]}")
    ctx.expect(len(pubs) - answered_before > 0, "no publish in flight at SIGTERM: drain not exercised")
    ctx.expect(cl is not None and cl[0] == 1001, f"WebSocket client: close {cl}, expected 1001")
    ctx.expect(rc == 0, f"serve exit status after SIGTERM: {rc} (expected 0 within 30s)")
    await verify_acked(ctx, pubs, srv.node_id, label="drain_edges")
    ctx.notes.append(f"drain_edges: drain seen as '{started}' {t_started - t_term:.2f}s after SIGTERM; probes {show}; "
                     f"idle keep-alive EOF {None if t_idle is None else round(t_idle - t_term, 2)}s (state {idle_state})")


# --- 4. start by time on a pruned partition ---------------------------------------------------------

RET_TOPIC = "e2e.retention"


async def case_time_start_pruned(ctx: Ctx):
    """from {"time": T} with T before every retained record of a partition whose log start
    was pruned past 0: recovered:false, gap {from:0, to:log start, reason:retention},
    offset = log start, then delivery from there."""
    srv = await ctx.server("cfg")
    ch = "ret:big"  # the only key of e2e.retention (retention_gap prunes it first in a full run)
    pad = "r" * 1900
    low = high = 0
    produced = 0
    P = kafkatools.partition_for(ch, 1)
    low, high = await asyncio.to_thread(kafkatools.watermarks, ctx.bootstrap, RET_TOPIC, P)
    while low == 0 and produced < 12000:
        recs = [{"key": ch, "value": json.dumps({"tp": produced + i, "pad": pad}).encode()} for i in range(2000)]
        await asyncio.to_thread(kafkatools.produce, ctx.bootstrap, RET_TOPIC, recs, 60.0, {"linger.ms": 20})
        produced += 2000
        low, high = await asyncio.to_thread(kafkatools.watermarks, ctx.bootstrap, RET_TOPIC, P)
    if low == 0:
        raise CaseError(f"dev Kafka did not prune {RET_TOPIC}/{P} (high={high}); cannot test")
    first = await asyncio.to_thread(kafkatools.read_range, ctx.bootstrap, RET_TOPIC, P, low, low + 1, 20.0)
    T = now_ms() - 86_400_000
    if not first or first[0].ts <= T:
        raise CaseError(f"first retained record {first[:1]} is not after the start time")
    t = rfc3339(T)
    want = {"from": 0, "to": low, "reason": "retention"}
    c = await ctx.connect(srv, name="tprune")
    r = await subscribe(ctx, c, ch, {"time": t})
    ctx.expect(r.get("recovered") is False and r.get("gap") == want and r.get("offset") == low,
               f"from time {t} (before every retained record, log start {low}): {strip(r)}; expected "
               f"recovered false, gap {want}, offset {low}")
    b = await ctx.connect(srv, f"/v1/ws/{ch}?from={urllib.parse.quote(t, safe='')}", name="tprune-bound",
                          transport="aiohttp")
    try:
        br = await asyncio.wait_for(asyncio.shield(b.bound_subscribed), 10)
        ctx.expect(br.get("recovered") is False and br.get("gap") == want and br.get("offset") == low,
                   f"bound ?from={t}: {strip(br)}; expected recovered false, gap {want}, offset {low}")
    except asyncio.TimeoutError:
        ctx.fails.append("bound ?from=<time>: no subscribed frame")
    await b.close()
    left = await wait_delivered([(c, ch)], high - 1, 60)
    ctx.expect(not left, f"delivery from the log start did not reach {high - 1} within 60s")
    start = r.get("offset") if isinstance(r.get("offset"), int) else low
    check_stream(ctx, "time before the pruned log start", c, ch, list(range(max(start, low), high)))
    ctx.notes.append(f"time_start_pruned: log start {low}, head {high} ({produced} records produced here)")


# --- 5. latest after the gateway stopped following the partition -----------------------------------

async def case_latest_after_restart(ctx: Ctx):
    """subscribe latest, unsubscribe (the gateway stops following the partition), K records
    written, subscribe latest again: subscribed.offset >= the partition's high watermark and
    none of the K records is delivered; a later record is."""
    srv = await ctx.start_serve("latest", ctx.bootstrap, "e2e-latest")
    ch = "e2e.s.latest"
    P = kafkatools.partition_for(ch, ctx.partitions)
    K = 25
    plans = [("kafka producer, at once", "kafka", 0.0), ("gateway publish, at once", "gateway", 0.0),
             ("kafka producer, after pauses", "kafka", 1.5)]
    pc = await ctx.connect(srv, name="latest-pub")
    for n, (label, writer, pause) in enumerate(plans):
        c = await ctx.connect(srv, name=f"latest-{n}")
        await subscribe(ctx, c, ch, "latest")
        warm = make_pub(pc, ch, data_text='{"warm":%d}' % n, msg_id=f"warm-{n}")
        await publish_many(pc, [warm], window=1)
        if not warm.acked:
            raise CaseError(f"{label}: warm-up publish {strip(warm.reply)}")
        if await wait_delivered([(c, ch)], warm.reply["offset"], 10):
            ctx.fails.append(f"{label}: first subscription did not get the warm-up record")
        u = await c.request({"type": "unsubscribe", "channel": ch})
        ctx.expect(u.get("type") == "unsubscribed", f"{label}: unsubscribe {strip(u)}")
        await asyncio.sleep(pause)
        if writer == "kafka":
            res = await asyncio.to_thread(kafkatools.produce, ctx.bootstrap, ctx.topic,
                                          [{"key": ch, "value": json.dumps({"k": n, "i": i}).encode()}
                                           for i in range(K)], 30.0)
            written = [o for _, o in res]
        else:
            ps = [make_pub(pc, ch, data_text='{"k":%d,"i":%d}' % (n, i), msg_id=f"k-{n}-{i}") for i in range(K)]
            await publish_many(pc, ps, window=8)
            if not all(p.acked for p in ps):
                raise CaseError(f"{label}: publishes not acked: {[strip(p.reply) for p in ps if not p.acked][:2]}")
            written = [p.reply["offset"] for p in ps]
        _, hw = await asyncio.to_thread(kafkatools.watermarks, ctx.bootstrap, ctx.topic, P)
        await asyncio.sleep(pause)
        c2 = await ctx.connect(srv, name=f"latest-{n}-again")
        r = await subscribe(ctx, c2, ch, "latest")
        ctx.expect(isinstance(r.get("offset"), int) and r["offset"] >= hw,
                   f"{label}: subscribe latest after {K} records written while nobody followed the "
                   f"partition: {strip(r)}; expected offset >= high watermark {hw} (records at {written[0]}..{written[-1]})")
        live = make_pub(pc, ch, data_text='{"live":%d}' % n, msg_id=f"live-{n}")
        await publish_many(pc, [live], window=1)
        if not live.acked:
            raise CaseError(f"{label}: live publish {strip(live.reply)}")
        await wait_delivered([(c2, ch)], live.reply["offset"], 10)
        await asyncio.sleep(0.2)
        old = [f.get("offset") for f in c2.msgs.get(ch, []) if f.get("offset") in set(written)]
        ctx.expect(not old, f"{label}: the new 'latest' subscriber got {len(old)} of the {K} older records: {old[:5]}")
        recs = await read_partitions(ctx, ctx.topic, {P: (live.reply["offset"], live.reply["offset"] + 1)})
        check_stream(ctx, f"{label}: latest again", c2, ch, [live.reply["offset"]], recs, P)
        check_stream(ctx, f"{label}: first subscription", c, ch, [warm.reply["offset"]])
        await c.close()
        await c2.close()


# --- traceparent back on delivery ------------------------------------------------------------------

async def case_traceparent_delivery(ctx: Ctx):
    """A publish with a traceparent is delivered with it; one without, without; a record written by
    another producer with a valid traceparent header carries it, one with a malformed header does not."""
    srv = await ctx.server("main")
    ch = "e2e.s.trace"
    c = await ctx.connect(srv, name="trace")
    with_tp = await c.request({"type": "publish", "channel": ch, "data": {"t": 1}, "traceparent": TP_OK})
    without = await c.request({"type": "publish", "channel": ch, "data": {"t": 2}})
    if with_tp.get("type") != "ack" or without.get("type") != "ack":
        raise CaseError(f"publishes answered {with_tp}, {without}")
    other_tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
    await asyncio.to_thread(kafkatools.produce, ctx.bootstrap, ctx.topic, [
        {"key": ch, "value": b'{"t":3}', "headers": [("content-type", b"application/json"), ("traceparent", other_tp.encode())]},
        {"key": ch, "value": b'{"t":4}', "headers": [("content-type", b"application/json"), ("traceparent", b"garbage")]},
    ])
    await subscribe(ctx, c, ch, {"offset": with_tp["offset"]})
    if await wait_delivered([(c, ch)], with_tp["offset"] + 3, 15):
        raise CaseError(f"4 records not delivered: {[strip(m) for m in c.msgs.get(ch, [])]}")
    got = [(m["data"]["t"], m.get("traceparent")) for m in c.msgs[ch][:4]]
    want = [(1, TP_OK), (2, None), (3, other_tp), (4, None)]
    if got != want:
        raise CaseError(f"traceparent on delivery: {got}, expected {want}")


async def case_tracing_log(ctx: Ctx):
    """`--tracing log`: a publish with a traceparent is a `publish` span, child of the client's span; its
    record (in Kafka and on delivery) carries the gateway span's context in the same trace; its delivery
    is a `deliver` span, child of the publish span; a publish without a traceparent starts a new trace."""
    srv = await ctx.start_serve("tracing", ctx.bootstrap, "e2e-tracing", ["--tracing", "log"])
    ch = "e2e.s.tracing"
    c = await ctx.connect(srv, name="tracing")
    sub = await subscribe(ctx, c, ch, "latest")
    if sub.get("type") != "subscribed":
        raise CaseError(f"subscribe answered {sub}")
    with_tp = await c.request({"type": "publish", "channel": ch, "data": {"t": 1}, "traceparent": TP_OK})
    without = await c.request({"type": "publish", "channel": ch, "data": {"t": 2}})
    if with_tp.get("type") != "ack" or without.get("type") != "ack":
        raise CaseError(f"publishes answered {with_tp}, {without}")
    if await wait_delivered([(c, ch)], without["offset"], 15):
        raise CaseError("records not delivered")
    delivered = {m["data"]["t"]: m.get("traceparent") for m in c.msgs[ch]}
    _, client_trace, client_span, _ = TP_OK.split("-")
    tp1 = delivered.get(1) or ""
    parts1 = tp1.split("-")
    if len(parts1) != 4 or parts1[1] != client_trace or parts1[2] == client_span:
        raise CaseError(f"the record of a traced publish carries {tp1!r}: expected trace {client_trace} under the gateway's span")
    tp2 = delivered.get(2) or ""
    if len(tp2.split("-")) != 4 or client_trace in tp2:
        raise CaseError(f"a publish without traceparent should start a new trace, its record carries {tp2!r}")
    recs = await read_partitions(ctx, ctx.topic, {with_tp["partition"]: (with_tp["offset"], with_tp["offset"] + 1)})
    header = recs[(with_tp["partition"], with_tp["offset"])].header_map().get("traceparent")
    header = header.decode() if isinstance(header, bytes) else header
    if header != tp1:
        raise CaseError(f"Kafka header traceparent {header!r} differs from the delivered {tp1!r}")
    gateway_span = parts1[2]
    deadline = time.monotonic() + 5
    lines = []
    while time.monotonic() < deadline:
        lines = srv.proc.stderr_path.read_text(errors="replace").splitlines()
        publish = [l for l in lines if "span publish" in l and f"trace.id={client_trace}" in l]
        deliver = [l for l in lines if "span deliver" in l and f"trace.id={client_trace}" in l]
        if publish and deliver:
            break
        await asyncio.sleep(0.1)
    else:
        raise CaseError(f"no publish and deliver span lines for trace {client_trace}: {[l for l in lines if 'span ' in l][:4]}")
    if f"span.parent={client_span}" not in publish[0] or f"span.id={gateway_span}" not in publish[0]:
        raise CaseError(f"publish span {publish[0][:300]} is not the client's span's child {gateway_span}")
    if f"span.parent={gateway_span}" not in deliver[0] or "attr.streamgate.subscribers=1" not in deliver[0]:
        raise CaseError(f"deliver span {deliver[0][:300]} is not the publish span's child")
