"""Flow-control cases: connections that stop reading give back their descriptors, slow but
steady readers always finish their catch-up, and a subscriber that keeps re-reading a
partition from its start does not starve another one's catch-up. Each case runs its own
`serve` on the shared dev Kafka, with topics of its own (auto-created on first write).

E2E_BASELINE=1 drops the flags an older gateway does not know (it would exit at start),
so that the defect itself can be shown on such a build."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import time

import kafkatools
from checks import (ack_order_checks, check_stream, make_pub, publish_many, read_partitions, strip,
                    subscribe, wait_delivered)
from harness import SUBPROTOCOL, CaseError, Client, Ctx, WsTransport, ws_connect

# namespace -> topic; one topic per case, used by nobody else in the suite
FLOW_TOPICS = {"fpin": "e2e.flow.pin", "fcu": "e2e.flow.catchup", "fsw": "e2e.flow.sweep"}
LIMIT = 65536  # --slow-consumer-bytes of these cases


def baseline_mode() -> bool:
    return os.environ.get("E2E_BASELINE", "") not in ("", "0")


def flow_config(ctx: Ctx):
    path = ctx.workdir / "flow-namespaces.json"
    if not path.exists():
        ns = {k: {"topic": t, "mode": "fanout"} for k, t in FLOW_TOPICS.items()}
        ns[""] = {"topic": ctx.topic, "mode": "fanout"}
        path.write_text(json.dumps({"namespaces": ns}, indent=2))
    return path


async def topic_partitions(ctx: Ctx, topic: str) -> int:
    """Creates `topic` (the dev Kafka creates a topic on its first write) and returns its
    partition count."""
    await asyncio.to_thread(kafkatools.produce, ctx.bootstrap, topic,
                            [{"key": "flow.init", "value": b'{"init":true}'}], 30.0)
    return await asyncio.to_thread(kafkatools.partition_count, ctx.bootstrap, topic, 15.0)


def channels_in(prefix: str, partitions: int, want: list[int]) -> list[str]:
    """One channel name per entry of `want` (a partition number), distinct names."""
    out, i = [], 0
    used = set()
    for p in want:
        while True:
            n = f"{prefix}{i}"
            i += 1
            if n not in used and kafkatools.partition_for(n, partitions) == p:
                used.add(n)
                out.append(n)
                break
    return out


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def conn_sockets(pid: int, port: int) -> int:
    """Descriptors of process `pid` that are accepted TCP connections of its listening
    `port` (from /proc: the socket inodes of its fd table matched against /proc/net/tcp*)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) < 10 or f[3] == "0A":  # 0A: LISTEN
                continue
            if int(f[1].rsplit(":", 1)[1], 16) == port and f[9] in inodes:
                n += 1
    return n


def pad_record(i: int, size: int, tag: str) -> bytes:
    head = '{"n":%d,"tag":"%s","pad":"' % (i, tag)
    return (head + "p" * max(0, size - len(head) - 2) + '"}').encode()


async def produce(ctx: Ctx, topic: str, records: list[dict]) -> list[tuple[int, int]]:
    return await asyncio.to_thread(kafkatools.produce, ctx.bootstrap, topic, records, 60.0)


async def channel_offsets(ctx: Ctx, topic: str, partition: int, start: int) -> tuple[dict, dict]:
    """What an independent confluent-kafka reader sees in one partition from `start` on:
    ({channel: [offsets]}, {(partition, offset): Rec})."""
    recs = await read_partitions(ctx, topic, {partition: (start, None)})
    per = {}
    for (p, o), r in sorted(recs.items()):
        per.setdefault((r.key or b"").decode(errors="replace"), []).append(o)
    return per, recs


class ThrottledTransport:
    """Wraps a client transport so that frames are taken from it at about `rate` bytes/s
    (a small token bucket: at most `burst` seconds of credit)."""

    def __init__(self, inner, rate: float, burst: float = 0.05):
        self.inner = inner
        self.kind = inner.kind
        self.rate = rate
        self.burst = burst
        self.free_at = 0.0
        self.nbytes = 0
        self.first = None
        self.last = None

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def recv(self):
        raw = await self.inner.recv()
        now = time.monotonic()
        if self.first is None:
            self.first = now
        self.nbytes += len(raw)
        self.free_at = max(self.free_at, now - self.burst) + len(raw) / self.rate
        if self.free_at > now:
            await asyncio.sleep(self.free_at - now)
        self.last = time.monotonic()
        return raw

    async def send(self, data, text=None):
        await self.inner.send(data, text=text)

    async def close(self):
        await self.inner.close()


async def connect_narrow(ctx: Ctx, srv, name: str, *, rcvbuf: int = 16384, mss: int = 1460,
                         max_queue: int = 4) -> Client:
    """A websockets client whose TCP connection looks like one over the Internet rather
    than loopback: a small receive buffer and an MSS of `mss` (loopback's is ~64 kB, which
    lets the gateway's kernel send buffer grow to several MB and hide a slow reader)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", srv.port)), 10)
        ws = await ws_connect(srv.ws + "/v1/ws", subprotocols=[SUBPROTOCOL], proxy=None, compression=None,
                              max_size=None, max_queue=max_queue, ping_interval=None, open_timeout=10,
                              close_timeout=5, sock=sock)
    except BaseException:
        sock.close()
        raise
    c = Client(ctx, WsTransport(ws), name, ctx.tag)
    ctx.clients.append(c)
    return c


def close_of(c: Client):
    return c.closed.result() if c.closed.done() else None


# --- 1. a connection closed by the gateway gives back its descriptor ------------------------------

async def case_pinned_close(ctx: Ctx):
    """20 subscribers stop reading for good while their channel is flooded: within
    slow-consumer-seconds + close-timeout (+ margin) the gateway holds no more descriptors
    than before they connected, although the clients keep their sockets open and unread."""
    S, CT, MARGIN = 2.0, 2.0, 4.0
    base = baseline_mode()
    topic = FLOW_TOPICS["fpin"]
    n_part = await topic_partitions(ctx, topic)
    extra = ["--config", str(flow_config(ctx)), "--slow-consumer-bytes", str(LIMIT)]
    if not base:
        extra += ["--slow-consumer-seconds", str(int(S)), "--close-timeout-seconds", str(int(CT))]
    srv = await ctx.start_serve("pinned", ctx.bootstrap, "e2e-pinned", extra)
    pid = srv.proc.pid
    ch = "fpin:busy"
    part = kafkatools.partition_for(ch, n_part)
    # a fast reader and the publisher first, so that the Kafka readers and the producer
    # (and their descriptors) exist before the baseline is taken
    witness = await ctx.connect(srv, name="pin-witness", transport="aiohttp")
    w_sub = await subscribe(ctx, witness, ch, "latest")
    pc = await ctx.connect(srv, name="pin-pub")
    warm = [make_pub(pc, ch, data_text='{"warm":%d}' % k, seq=k) for k in range(5)]
    await publish_many(pc, warm, window=5)
    if not all(p.acked for p in warm):
        raise CaseError(f"warm-up publishes not acked: {[strip(p.reply) for p in warm][:2]}")
    if await wait_delivered([(witness, ch)], warm[-1].reply["offset"], 10):
        raise CaseError("the witness subscriber did not receive the warm-up records")
    await asyncio.sleep(0.5)
    fd0, cs0 = min(open_fds(pid) for _ in range(3)), conn_sockets(pid, srv.port)

    stuck: list[Client] = []
    starts = {}
    for i in range(20):
        c = await ctx.connect(srv, name=f"pin-stuck{i}", max_queue=4, rcvbuf=4096)
        r = await subscribe(ctx, c, ch, "latest")
        starts[c.name] = r["offset"]
        c.pause()  # stops reading the socket, for good (until the end of the case)
        stuck.append(c)
    fd1, cs1 = open_fds(pid), conn_sockets(pid, srv.port)
    if cs1 != cs0 + 20:
        raise CaseError(f"setup: the gateway's connection sockets went {cs0} -> {cs1} with 20 more "
                        f"connections (descriptors {fd0} -> {fd1}); cannot measure their release")
    pad = json.dumps("f" * 6000)
    pubs = [make_pub(pc, ch, data_text='{"n":%d,"pad":%s}' % (k, pad), seq=5 + k) for k in range(500)]
    t_flood = time.monotonic()
    await publish_many(pc, pubs, window=64)
    t_flooded = time.monotonic()
    ack_order_checks(ctx, warm + pubs, "pinned_close flood")
    last = max((p.reply["offset"] for p in pubs if p.acked), default=None)
    if last is None:
        raise CaseError("flood publishes not acked")
    fd2, cs2 = open_fds(pid), conn_sockets(pid, srv.port)
    # the gateway must give the descriptors back on its own
    wait_for = 20.0 if base else S + CT + MARGIN
    deadline = t_flooded + wait_for
    fd3, cs3, released_at = fd2, cs2, None
    while time.monotonic() < deadline:
        fd3, cs3 = open_fds(pid), conn_sockets(pid, srv.port)
        if cs3 <= cs0 and fd3 <= fd0 + 6:
            released_at = time.monotonic()
            break
        await asyncio.sleep(0.1)
    still_open = sum(1 for c in stuck if not c.t.ws.transport.is_closing())
    ctx.expect(still_open == len(stuck), f"setup: only {still_open}/20 stopped clients still hold their socket")
    how = ("no --slow-consumer-seconds/--close-timeout-seconds (E2E_BASELINE)" if base else
           f"--slow-consumer-seconds {S:.0f} --close-timeout-seconds {CT:.0f}")
    ctx.expect(released_at is not None,
               f"{wait_for:.0f}s after the flood the gateway still holds {cs3 - cs0} of the 20 connections that "
               f"stopped reading ({how}): connection sockets {cs0} before them, {cs1} with them, {cs2} at the "
               f"flood's end, {cs3} now; descriptors {fd0}, {fd1}, {fd2}, {fd3}")
    # the fast reader was not held back, and it is still served
    left = await wait_delivered([(witness, ch)], last, 20)
    ctx.expect(not left and not witness.closed.done(),
               f"witness subscriber did not get the whole flood (close {close_of(witness)})")
    per, recs = await channel_offsets(ctx, topic, part, w_sub["offset"])
    chan = per.get(ch, [])
    check_stream(ctx, "pinned_close witness", witness, ch, [o for o in chan if o >= w_sub["offset"]], recs, part)
    # what the stopped clients got is a gap-free prefix; once they read again they find the
    # connection gone (or its close frame)
    for c in stuck:
        c.resume()
    closes = await asyncio.gather(*(c.wait_closed(15) for c in stuck))
    codes = {}
    for c, cl in zip(stuck, closes):
        codes[cl[0] if cl else None] = codes.get(cl[0] if cl else None, 0) + 1
        got = [f.get("offset") for f in c.msgs.get(ch, [])]
        prefix = [o for o in chan if o >= starts[c.name]][:len(got)]
        bad = sum(1 for a, b in zip(got, prefix) if a != b) + max(0, len(got) - len(prefix))
        ctx.count("silent_gaps", bad)
        ctx.expect(got == prefix, f"{c.name}: messages are not a gap-free prefix: {got[:3]}..{got[-3:]}")
    ctx.expect(None not in codes, f"{codes.get(None, 0)} stopped clients were still connected 15s after "
                                  f"they read again (close codes {codes})")
    took = f"{released_at - t_flooded:.1f}s after the flood ({released_at - t_flood:.1f}s after its start)" \
        if released_at else "never"
    ctx.notes.append(f"pinned_close: connection sockets {cs0} -> {cs1} -> {cs2} -> {cs3}, descriptors {fd0} -> "
                     f"{fd1} -> {fd2} -> {fd3} (flood {len(pubs)} x 6 kB in {t_flooded - t_flood:.1f}s); "
                     f"released {took}; closes seen on reading again {codes}")


# --- 2. a slow but steady reader always finishes its catch-up ------------------------------------

async def case_slow_reader_catchup(ctx: Ctx):
    """Readers throttled to ~300 kB/s (small receive buffer) with --slow-consumer-bytes
    65536: one catches up a 2.2 MB channel (~35x the limit), another catches up three
    channels at once while a live burst arrives on a fourth; each receives every record of
    its channels exactly once in offset order (as confluent-kafka reads them), with no gap
    frame and no close (4008)."""
    RATE = 300_000
    SIZE = 3000
    base = baseline_mode()
    topic = FLOW_TOPICS["fcu"]
    n_part = await topic_partitions(ctx, topic)
    if n_part < 4:
        raise CaseError(f"{topic} was created with {n_part} partitions, the case needs 4")
    # big and m3 share partition 0 (two connections on one partition's catch-up), m1 and
    # m2 interleave in partition 1, the live channel has partition 3; < 5 MiB per partition
    big, m3, m1, m2, live = channels_in("fcu:c", n_part, [0, 0, 1, 1, 3])
    recs_in = [{"key": big, "value": pad_record(i, SIZE, "big")} for i in range(700)]
    for i in range(200):
        for ch in (m1, m2, m3):
            recs_in.append({"key": ch, "value": pad_record(i, SIZE, ch)})
    res = await produce(ctx, topic, recs_in)
    first = {}
    for r, (p, o) in zip(recs_in, res):
        first.setdefault(r["key"], (p, o))
    extra = ["--config", str(flow_config(ctx)), "--slow-consumer-bytes", str(LIMIT)]
    if not base:
        extra += ["--slow-consumer-seconds", "5"]
    srv = await ctx.start_serve("catchup", ctx.bootstrap, "e2e-catchup", extra)

    async def throttled(name):
        c = await connect_narrow(ctx, srv, name)
        c.t = ThrottledTransport(c.t, RATE)
        return c

    ca = await throttled("cu-one")
    cb = await throttled("cu-multi")
    t0 = time.monotonic()
    subs = {}  # (client, channel) -> subscribed reply

    async def sub_all(c, plan):
        """Pipelined subscribes; a refusal or a close fails the case but not the other reader."""
        futs = [(ch, await c.submit({"type": "subscribe", "channel": ch, "from": frm})) for ch, frm in plan]
        for ch, fut in futs:
            try:
                r = await asyncio.wait_for(fut, 20)
            except Exception as e:
                ctx.fails.append(f"{c.name}: no subscribed reply for {ch} from {plan[[x for x, _ in plan].index(ch)][1]} "
                                 f"({type(e).__name__}: {e}) after {sum(len(v) for v in c.msgs.values())} records")
                continue
            if r.get("type") != "subscribed":
                ctx.fails.append(f"{c.name}: subscribe {ch}: {strip(r)}")
                continue
            subs[(c, ch)] = r

    await sub_all(ca, [(big, {"offset": first[big][1]})])
    await sub_all(cb, [(live, "latest")] + [(ch, {"offset": first[ch][1]}) for ch in (m1, m2, m3)])
    # a live burst on the fourth channel while cu-multi is catching up, slowly
    await asyncio.sleep(0.5)
    pc = await ctx.connect(srv, name="cu-pub")
    burst = [make_pub(pc, live, data_text=pad_record(k, SIZE, "live").decode(), seq=k) for k in range(150)]
    await publish_many(pc, burst, window=16)
    ack_order_checks(ctx, burst, "live burst")
    # what an independent reader sees per channel, from each subscription's start
    starts = {ch: first[ch] for ch in (big, m1, m2, m3)}
    if (cb, live) in subs:
        starts[live] = (subs[(cb, live)]["partition"], subs[(cb, live)]["offset"])
    expected, recs_all = {}, {}
    for p in sorted({pp for pp, _ in starts.values()}):
        per, recs = await channel_offsets(ctx, topic, p, min(o for pp, o in starts.values() if pp == p))
        recs_all.update(recs)
        for ch, offs in per.items():
            if ch in starts:
                expected[ch] = [o for o in offs if o >= starts[ch][1]]
    if any(not expected.get(ch) for ch in starts):
        raise CaseError(f"confluent-kafka reads no record of some channel: "
                        f"{ {ch: len(expected.get(ch, [])) for ch in starts} }")
    total_bytes = sum(len(r["value"]) for r in recs_in) + SIZE * len(burst)
    budget = 3.0 * total_bytes / 2 / RATE + 15  # two readers, each about half of the bytes
    done_at = {}

    async def finish(c, ch):
        left = await wait_delivered([(c, ch)], expected[ch][-1], max(1.0, budget - (time.monotonic() - t0)))
        done_at[(c.name, ch)] = time.monotonic() - t0 if not left else None

    await asyncio.gather(*(finish(c, ch) for (c, ch) in subs))
    for (c, ch), r in subs.items():
        part = kafkatools.partition_for(ch, n_part)
        ctx.expect(r.get("recovered") is True and r.get("offset") == starts[ch][1] and r.get("partition") == part,
                   f"{c.name}: subscribe {ch}: {strip(r)} (expected offset {starts[ch][1]}, partition {part}, "
                   f"recovered true)")
        exp = expected[ch]
        got = [f.get("offset") for f in c.msgs.get(ch, [])]
        if c.closed.done():
            # announced by the close: what came before it must still be a gap-free prefix
            prefix = exp[:len(got)]
            bad = sum(1 for a, b in zip(got, prefix) if a != b) + max(0, len(got) - len(prefix))
            ctx.count("silent_gaps", bad)
            ctx.expect(got == prefix, f"{c.name} {ch}: records before the close are not a gap-free prefix: "
                                      f"{got[:3]}..{got[-3:]}")
            continue
        ctx.expect(done_at.get((c.name, ch)) is not None,
                   f"{c.name} ({RATE // 1000} kB/s) did not receive all of {ch}: {len(got)}/{len(exp)} records "
                   f"within {budget:.0f}s")
        check_stream(ctx, f"{c.name} {ch} from {starts[ch][1]}", c, ch, exp, recs_all, part)
        gaps = c.gaps.get(ch, [])
        ctx.expect(not gaps, f"{c.name}: gap frames on {ch}: {[strip(g) for _, g in gaps[:2]]}")
    for c in (ca, cb):
        counts = ", ".join(f"{ch} {len(c.msgs.get(ch, []))}/{len(expected[ch])}" for (cc, ch) in subs if cc is c)
        ctx.expect(not c.closed.done(), f"{c.name} reading steadily at {RATE // 1000} kB/s was closed "
                                        f"{close_of(c)} (--slow-consumer-bytes {LIMIT}"
                                        + (", E2E_BASELINE" if base else ", --slow-consumer-seconds 5")
                                        + f"); records received: {counts}")
        if c.t.first and c.t.last:
            rate = c.t.nbytes / max(0.001, c.t.last - c.t.first)
            ctx.notes.append(f"slow_reader_catchup: {c.name} read {c.t.nbytes / 1e6:.1f} MB at "
                             f"{rate / 1000:.0f} kB/s; done {sorted((k[1], round(v, 1) if v else v) for k, v in done_at.items() if k[0] == c.name)}")
    ctx.notes.append(f"slow_reader_catchup: backlog {len(recs_in)} x {SIZE} B ({big}: "
                     f"{700 * SIZE / LIMIT:.0f}x the limit), live burst {len(burst)} x {SIZE} B")


# --- 3. re-reads from the start of a partition do not starve a catch-up ---------------------------

def check_cycles(ctx: Ctx, c: Client, ch: str, offs: list[int], label: str) -> int:
    """c subscribed `ch` from offset 0 and unsubscribed it, repeatedly: each subscription's
    messages (between its `subscribed` and `unsubscribed` replies) must be a gap-free
    prefix of `offs`, and nothing of `ch` may arrive outside a subscription. Returns the
    number of subscriptions seen."""
    cur, n, outside, bad, first_bad = None, 0, 0, 0, None
    for f in c.frames:
        if f.get("channel") != ch:
            continue
        t = f.get("type")
        if t == "subscribed":
            cur, n = [], n + 1
        elif t == "unsubscribed":
            if cur is not None and cur != offs[:len(cur)]:
                bad += 1
                first_bad = first_bad or (n, cur[:4], cur[-3:])
                dup = len(cur) - len(set(cur))
                ctx.count("duplicates", dup)
                ctx.count("silent_gaps", sum(1 for a, b in zip(cur, offs) if a != b) - dup if not dup else 0)
            cur = None
        elif t == "message":
            if cur is None:
                outside += 1
            else:
                cur.append(f.get("offset"))
    ctx.expect(not bad, f"{label}: {bad} subscriptions of {ch} from 0 did not deliver a gap-free prefix of the "
                        f"channel; first (#, first, last) {first_bad}")
    ctx.expect(not outside, f"{label}: {outside} messages of {ch} arrived after 'unsubscribed'")
    return n


async def case_sweep_not_starved(ctx: Ctx):
    """Client A catches up a backlog of channel X while client B subscribes channel Y of
    the same partition from offset 0 and unsubscribes it, again and again, fast: A still
    gets all of X, once each and in order, within 3x the time A alone needs (measured
    first); and after B's last unsubscribe A's catch-up goes on from where it was (the
    shared catch-up reader does not stay rewound at the partition's start)."""
    topic = FLOW_TOPICS["fsw"]
    n_part = await topic_partitions(ctx, topic)
    # partition P: Y, a few records at its start; Z, many small records nobody subscribes
    # to (what a rewound catch-up reader reads again); X, A's backlog; < 5 MiB in all
    X = "fsw:x"
    P = kafkatools.partition_for(X, n_part)
    Y, Z = channels_in("fsw:y", n_part, [P, P])
    recs_in = [{"key": Y, "value": b'{"y":%d}' % i} for i in range(20)]
    recs_in += [{"key": Z, "value": b'{"z":%d}' % i} for i in range(50_000)]
    recs_in += [{"key": X, "value": pad_record(i, 800, "x")} for i in range(2000)]
    res = await produce(ctx, topic, recs_in)
    if {p for p, _ in res} != {P}:
        raise CaseError(f"records landed on partitions {sorted({p for p, _ in res})}, expected {P} only")
    x_offs = [o for r, (_, o) in zip(recs_in, res) if r["key"] == X]
    y_offs = [o for r, (_, o) in zip(recs_in, res) if r["key"] == Y]
    low, _ = await asyncio.to_thread(kafkatools.watermarks, ctx.bootstrap, topic, P)
    if low > 0:
        raise CaseError(f"{topic}/{P} was pruned (low watermark {low}): the case writes too much")
    recs = await read_partitions(ctx, topic, {P: (x_offs[0], x_offs[-1] + 1)})
    srv = await ctx.start_serve("sweep", ctx.bootstrap, "e2e-sweep", ["--config", str(flow_config(ctx))])

    async def alone(name, frm):
        c = await ctx.connect(srv, name=name)
        t0 = time.monotonic()
        await subscribe(ctx, c, X, {"offset": frm})
        left = await wait_delivered([(c, X)], x_offs[-1], 30)
        dt = time.monotonic() - t0
        check_stream(ctx, f"{name} (A alone, from {frm})", c, X, x_offs, recs, P)
        await c.close()
        if left:
            raise CaseError(f"A alone did not catch up {X} within 30s ({len(c.msgs.get(X, []))}/{len(x_offs)})")
        return dt

    # A alone (twice: the first also starts the readers), and from offset 0: the extra time
    # is what reading the partition again from its start costs
    t_alone = min([await alone("sw-alone1", x_offs[0]), await alone("sw-alone2", x_offs[0])])
    t_from0 = await alone("sw-from0", 0)
    rescan = max(0.0, t_from0 - t_alone)
    # Each of B's rewinds makes the shared sweep re-read from 0, so a B cycling hundreds of times a
    # second slows A down several times over; what must never happen is that A stops progressing.
    bound = max(10 * t_alone, 3.0)
    await asyncio.sleep(0.3)

    async def with_b(label, *, sustained: bool):
        """A catches up X while B cycles Y from 0: 50 times, and (sustained) on until A is
        done or the bound has passed. Returns A's times."""
        a = await ctx.connect(srv, name=f"sw-A-{label}")
        b = await ctx.connect(srv, name=f"sw-B-{label}")
        ta = time.monotonic()
        await subscribe(ctx, a, X, {"offset": x_offs[0]})
        n = 0
        done = lambda: bool(a.msgs.get(X)) and a.msgs[X][-1].get("offset", -1) >= x_offs[-1]  # noqa: E731
        while n < 50 or (sustained and not done() and time.monotonic() - ta < bound):
            r = await subscribe(ctx, b, Y, {"offset": 0})
            ctx.expect(n or (r.get("offset") == 0 and r.get("recovered") is True),
                       f"B: subscribe {Y} from 0: {strip(r)}")
            u = await b.request({"type": "unsubscribe", "channel": Y})
            if u.get("type") != "unsubscribed":
                raise CaseError(f"B: unsubscribe {Y}: {strip(u)}")
            n += 1
        t_unsub = time.monotonic()
        at_unsub = len(a.msgs.get(X, []))
        # progress after B's last unsubscribe
        resumed = await a.wait_until(lambda: len(a.msgs.get(X, [])) > at_unsub or done(), max(1.0, bound))
        t_next = time.monotonic()
        left = await wait_delivered([(a, X)], x_offs[-1], bound + 1.0)
        t_done = time.monotonic()
        await asyncio.sleep(0.2)  # anything B might still get after its last unsubscribe
        seen = check_cycles(ctx, b, Y, y_offs, f"B ({label})")
        ctx.expect(seen == n, f"B ({label}): {seen} subscribed replies for {n} subscribes")
        check_stream(ctx, f"A while B re-reads from 0 ({label})", a, X, x_offs, recs, P)
        ctx.expect(not a.closed.done() and not b.closed.done(),
                   f"closed during the cycles: A {close_of(a)}, B {close_of(b)}")
        await a.close()
        await b.close()
        await asyncio.sleep(0.2)
        return (n, t_unsub - ta, at_unsub, (t_next - t_unsub) if resumed else None,
                (t_done - ta) if not left else None, (t_done - t_unsub) if not left else None)

    # 1. B keeps re-reading as long as A is not done (at most until the bound): A must finish
    n, t_cyc, at_unsub, _, t_all, _ = await with_b("sustained", sustained=True)
    ctx.expect(t_all is not None and t_all <= bound,
               f"A did not catch up {X} ({len(x_offs)} records) within {bound:.2f}s (10x {t_alone:.2f}s, the time "
               f"alone) while B subscribed {Y} from offset 0 and unsubscribed it: {at_unsub}/{len(x_offs)} "
               f"after {n} cycles in {t_cyc:.2f}s; done {'never' if t_all is None else f'after {t_all:.2f}s'}")
    ctx.notes.append(f"sweep_not_starved: A alone {t_alone:.2f}s, from 0 {t_from0:.2f}s, bound {bound:.2f}s; "
                     f"sustained: {n} B cycles in {t_cyc:.2f}s, A had {at_unsub}/{len(x_offs)} at B's last "
                     f"unsubscribe, done after {t_all if t_all is None else round(t_all, 2)}s")
    # 2. B stops after 50 quick cycles while A is still catching up: A goes on from where it
    # was at once, not after reading the partition again from its start (3 rounds, median)
    rounds = []
    for i in range(3):
        n, t_cyc, at_unsub, t_next, t_all, t_after = await with_b(f"then-stop{i}", sustained=False)
        rounds.append((at_unsub, t_next, t_after, t_cyc))
        ctx.expect(t_next is not None, f"A got nothing more of {X} within {max(1.0, bound):.2f}s after B's last "
                                       f"unsubscribe ({at_unsub}/{len(x_offs)} so far): the catch-up stalled")
        ctx.expect(t_after is not None and t_after <= bound,
                   f"A needed {'more than ' + format(bound + 1, '.2f') if t_after is None else format(t_after, '.2f')}s "
                   f"after B's last unsubscribe for the rest of {X} ({len(x_offs) - at_unsub} records; bound "
                   f"{bound:.2f}s)")
    lat = sorted(r[1] for r in rounds if r[0] < len(x_offs) and r[1] is not None)
    limit = max(0.1, rescan / 2)
    if lat:
        med = lat[len(lat) // 2]
        ctx.expect(med <= limit, f"after B's last unsubscribe A's next record of {X} came after {med:.3f}s "
                                 f"(median of {[round(x, 3) for x in lat]}), limit {limit:.3f}s = half of what "
                                 f"reading the partition again from offset 0 costs ({rescan:.3f}s): the catch-up "
                                 f"reader stayed where B's subscribe from 0 had put it")
    else:
        ctx.notes.append("sweep_not_starved: A was done before B's 50 cycles ended in every round: "
                         "nothing left to resume")
    ctx.notes.append("sweep_not_starved: then-stop rounds (A's records at B's last unsubscribe, next record after, "
                     "done after, cycling time): " + "; ".join(
                         f"{a}/{len(x_offs)}, {nx if nx is None else round(nx, 3)}s, "
                         f"{af if af is None else round(af, 2)}s, {c:.2f}s" for a, nx, af, c in rounds))
