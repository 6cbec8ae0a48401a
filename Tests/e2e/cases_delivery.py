"""Publish, partitioning, fan-out and resume cases."""
from __future__ import annotations

import asyncio
import base64
import collections
import json
import random
import time
import urllib.parse

import kafkatools
from checks import (Pub, ack_order_checks, b64, check_stream, make_pub, publish_many,
                    read_partitions, strip, subscribe, verify_acked, wait_delivered)
from harness import CaseError, Ctx

# JSON texts with odd whitespace, escapes and number forms: the record value must be
# these exact bytes (no re-serialisation).
JSON_VARIANTS = [
    lambda i: '{ "a" :  1,"b":"\\u00e9" , "seq":%d}' % i,
    lambda i: '[1, 2.50 ,1e3, -0, 12345678901234567890123, %d]' % i,
    lambda i: '"caf\\u00e9 \\/ é ü 😀 #%d"' % i,
    lambda i: '{\n\t"nested" : {"x":[{"y":null},true,false]},\r\n "seq":%d, "t":"\\t\\n\\"\\\\"}' % i,
    lambda i: '%d.0' % i,
    lambda i: '{"emoji":"\\ud83d\\ude00","zero":0E0,"seq":%d}' % i,
]
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def case_publish_invariants(ctx: Ctx):
    """a: 4 connections x 5 channels x 250 pipelined publishes; invariants 1 and 6,
    byte-exact values, PROTOCOL section 2 headers, no record stored twice."""
    srv = await ctx.server("main")
    channels = [f"e2e.a.ch{i}" for i in range(5)]
    conns = [await ctx.connect(srv, name=f"pub{i}") for i in range(4)]
    per_conn = []
    for ci, c in enumerate(conns):
        pubs, seq = [], collections.Counter()
        for _ in range(250):
            for ch in channels:
                n = len(pubs)
                s = seq[ch]
                seq[ch] += 1
                msg_id = f"a-{ci}-{ch}-{s}" if n % 3 else None
                tp = TRACEPARENT if n % 7 == 0 else None
                if n % 10 == 9:
                    data = random.Random(n * 31 + ci).randbytes(1 + n % 64)
                    pubs.append(make_pub(c, ch, data_bytes=data, msg_id=msg_id, traceparent=tp, seq=s))
                else:
                    pubs.append(make_pub(c, ch, data_text=JSON_VARIANTS[n % len(JSON_VARIANTS)](n),
                                         msg_id=msg_id, traceparent=tp, seq=s))
        per_conn.append(pubs)
    all_pubs = [p for ps in per_conn for p in ps]
    t0 = time.monotonic()
    await asyncio.gather(*(publish_many(c, ps, window=64) for c, ps in zip(conns, per_conn)))
    dt = time.monotonic() - t0
    ctx.notes.append(f"publish_invariants: {len(all_pubs)} publishes acked in {dt:.1f}s")
    ack_order_checks(ctx, all_pubs, "publish")
    parts = {ch: sorted({p.reply["partition"] for p in all_pubs if p.acked and p.channel == ch})
             for ch in channels}
    ctx.expect(all(len(v) == 1 for v in parts.values()), f"a channel's acks name several partitions: {parts}")
    recs = await verify_acked(ctx, all_pubs, srv.node_id, label="publish")
    # nothing stored twice / nothing stored that was not acked
    acked_at = {(p.reply["partition"], p.reply["offset"]) for p in all_pubs if p.acked}
    ours = {ch.encode() for ch in channels}
    stray = sorted(k for k, r in recs.items() if r.key in ours and k not in acked_at)
    ctx.count("duplicates", len(stray))
    ctx.expect(not stray, f"{len(stray)} records of the test channels in Kafka were never acked "
                          f"(stored twice?): {stray[:5]}")
    # second, independent reader: kcat must see the same bytes and headers
    kmismatch = 0
    first = None
    for part in sorted({k[0] for k in acked_at}):
        start = min(o for p_, o in acked_at if p_ == part)
        krecs = await asyncio.to_thread(kafkatools.kcat_read, ctx.bootstrap, ctx.topic, part, start, 40.0)
        kmap = {r.offset: r for r in krecs}
        for (p_, o) in acked_at:
            if p_ != part:
                continue
            a, b = recs.get((p_, o)), kmap.get(o)
            if a is None or b is None or a.key != b.key or a.value != b.value or a.ts != b.ts or \
                    sorted(a.header_map().items()) != sorted(b.header_map().items()):
                kmismatch += 1
                first = first or (p_, o, b and (b.key, b.value[:40] if b.value else None))
    ctx.expect(kmismatch == 0, f"kcat read differs from confluent-kafka for {kmismatch} acked records; first {first}")
    ctx.shared["a"] = {
        "channels": channels,
        "acked": {ch: sorted((p.reply["partition"], p.reply["offset"]) for p in all_pubs
                             if p.acked and p.channel == ch) for ch in channels},
    }


async def case_publish_values(ctx: Ctx):
    """Edge JSON values and binary payloads stored byte for byte; string ids echoed."""
    srv = await ctx.server("main")
    ch = "e2e.values"
    c = await ctx.connect(srv, name="values")
    sub = await ctx.connect(srv, name="values-sub", transport="aiohttp")
    sreply = await subscribe(ctx, sub, ch, "latest")
    texts = ["null", "true", "false", "0", "-1.5e-7", '""', "[]", "{}", " [ ] ".strip(),
             "[" * 60 + "]" * 60, '"\\ud83d\\ude00 \\" \\\\ \\u0000"',
             '{"big":"' + "x" * 100_000 + '"}', '{"a":{"b":{"c":[1,{"d":"é"}]}}}']
    blobs = [b"", bytes(range(256)), b"\x00", b"\xff\xfe\xfd", "é".encode()]
    pubs: list[Pub] = []
    for i, t in enumerate(texts):
        pubs.append(make_pub(c, ch, data_text=t, msg_id=f"v-{i}", seq=len(pubs)))
    for i, b in enumerate(blobs):
        pubs.append(make_pub(c, ch, data_bytes=b, seq=len(pubs)))
    # string ids are echoed exactly
    sid_text = ('{"type":"publish","id":"req-α-1","channel":%s,"msgId":"ü-msg-id","data":{"sid":1}}'
                % json.dumps(ch))
    sid = Pub(c, ch, "req-α-1", sid_text, b'{"sid":1}', "application/json", "ü-msg-id", None, len(pubs))
    pubs.append(sid)
    await publish_many(c, pubs, window=1)
    ack_order_checks(ctx, pubs, "values")
    ctx.expect(sid.reply is not None and sid.reply.get("id") == "req-α-1",
               f"string id not echoed: {strip(sid.reply)}")
    recs = await verify_acked(ctx, pubs, srv.node_id, label="values")
    last = max((p.reply["offset"] for p in pubs if p.acked), default=-1)
    left = await wait_delivered([(sub, ch)], last, 15)
    ctx.expect(not left, "subscriber did not receive every value")
    part = sreply["partition"]
    expected = sorted(o for (p_, o), r in recs.items() if p_ == part and r.key == ch.encode()
                      and o >= sreply["offset"])
    check_stream(ctx, "values subscriber", sub, ch, expected, recs, part)


async def case_partitioner(ctx: Ctx):
    """b: the ack partition equals what a murmur2_random producer picks for key=channel."""
    srv = await ctx.server("main")
    names = ["a", "b", "doc:42", "x.y~z@w/v-1", "UPPER:lower", "0", "ns:with/slash", "@~._-:",
             "e2e.b." + "x" * 194] + [f"e2e.b.k{i}" for i in range(40)]
    assert len(names[8]) == 200
    c = await ctx.connect(srv, name="partitioner")
    pubs = [make_pub(c, n, data_text='{"b":%d}' % i, seq=0) for i, n in enumerate(names)]
    await publish_many(c, pubs, window=16)
    ack_order_checks(ctx, pubs, "partitioner")
    produced = await asyncio.to_thread(
        kafkatools.produce, ctx.bootstrap, ctx.topic,
        [{"key": n, "value": b'{"from":"backend"}'} for n in names], 30.0)
    wrong = []
    model_disagrees = []
    for n, p, (kp, _) in zip(names, pubs, produced):
        if p.acked and p.reply.get("partition") != kp:
            wrong.append((n[:20], p.reply.get("partition"), kp))
        if kafkatools.partition_for(n, ctx.partitions) != kp:
            model_disagrees.append(n)
    ctx.expect(not wrong, f"{len(wrong)} channels acked on another partition than confluent-kafka "
                          f"murmur2_random picks (channel, gateway, producer): {wrong[:5]}")
    if model_disagrees:
        ctx.fails.append(f"test's own murmur2 model disagrees with confluent-kafka for {model_disagrees[:3]}")
    await verify_acked(ctx, pubs, srv.node_id, label="partitioner")


async def case_subscribers(ctx: Ctx):
    """c: several subscribers on several channels see every record exactly once in
    offset order, including records of backend producers (confluent-kafka, kcat)."""
    srv = await ctx.server("main")
    chans = [f"e2e.c.k{i}" for i in range(4)]
    subs = {
        "s0": (await ctx.connect(srv, name="s0"), chans, None),
        "s1": (await ctx.connect(srv, name="s1", transport="aiohttp"), chans[:2], "latest"),
        "s2": (await ctx.connect(srv, name="s2"), chans[2:], "latest"),
    }
    starts = {}
    for sname, (cl, chs, frm) in subs.items():
        for ch in chs:
            r = await subscribe(ctx, cl, ch, frm)
            ctx.expect(r.get("recovered") is True and r.get("offset") == r.get("head"),
                       f"{sname} subscribe {ch} from latest: {strip(r)}")
            starts[(sname, ch)] = (r["partition"], r["offset"])
    bound = await ctx.connect(srv, f"/v1/ws/{chans[1]}", name="s3-bound", transport="aiohttp")
    try:
        b = await asyncio.wait_for(asyncio.shield(bound.bound_subscribed), 10)
    except asyncio.TimeoutError:
        raise CaseError("bound connection /v1/ws/{channel}: no 'subscribed' frame after open") from None
    ctx.expect(b.get("channel") == chans[1] and "id" not in b, f"bound subscribed frame: {strip(b)}")
    starts[("s3", chans[1])] = (b["partition"], b["offset"])
    clients = {k: v[0] for k, v in subs.items()}
    clients["s3"] = bound

    # producers: two gateway connections, confluent-kafka and kcat, concurrently
    pubc = [await ctx.connect(srv, name=f"cpub{i}") for i in range(2)]
    gw_pubs = []

    async def gateway_pub(c, i):
        ps = []
        for k in range(60):
            for ch in chans:
                ps.append(make_pub(c, ch, data_text='{"c":%d,"k":%d}' % (i, k), msg_id=f"c{i}-{ch}-{k}",
                                   seq=k))
        gw_pubs.extend(ps)
        await publish_many(c, ps, window=32)

    def backend_records():
        recs = []
        for ch in chans:
            for k in range(20):
                recs.append({"key": ch, "value": json.dumps({"backend": k}).encode()})
            for v in [b"\xff\xfebinary", b"plain text", b"{broken", b"NaN", b"", b'  {"ws": true}  ',
                      b'"just a string"', b"123"]:
                recs.append({"key": ch, "value": v})
            recs.append({"key": ch, "value": b'{"typed":"octets"}',
                         "headers": [("content-type", b"application/octet-stream")]})
            recs.append({"key": ch, "value": b'{"typed":"json"}',
                         "headers": [("content-type", b"application/json")]})
        return recs

    def kcat_all():
        for ch in chans:
            kafkatools.kcat_produce(ctx.bootstrap, ctx.topic, ch,
                                    [b'{"kcat":%d}' % i for i in range(5)] +
                                    [b"kcat plain line %d" % i for i in range(5)])

    await asyncio.gather(gateway_pub(pubc[0], 0), gateway_pub(pubc[1], 1),
                         asyncio.to_thread(kafkatools.produce, ctx.bootstrap, ctx.topic, backend_records(), 30.0),
                         asyncio.to_thread(kcat_all))
    ack_order_checks(ctx, gw_pubs, "gateway publishers")
    # what Kafka holds for each channel from the subscription start on
    parts = {ch: kafkatools.partition_for(ch, ctx.partitions) for ch in chans}
    ranges = {}
    for (sname, ch), (p, off) in starts.items():
        ctx.expect(p == parts[ch], f"{sname}: subscribed partition {p} for {ch}, murmur2 says {parts[ch]}")
        s, _ = ranges.get(p, (off, None))
        ranges[p] = (min(s, off), None)
    recs = await read_partitions(ctx, ctx.topic, ranges)
    per_ch = {ch: sorted(o for (p, o), r in recs.items() if p == parts[ch] and r.key == ch.encode())
              for ch in chans}
    # the kcat records must have landed in the channel's partition
    for ch in chans:
        n_kcat = sum(1 for (p, o), r in recs.items() if r.key == ch.encode() and r.value and r.value.startswith(b'{"kcat"'))
        ctx.expect(n_kcat == 5, f"kcat -P -k {ch}: {n_kcat}/5 JSON records found in partition {parts[ch]} "
                                f"(partitioner not murmur2?)")
    last = {ch: per_ch[ch][-1] for ch in chans if per_ch[ch]}
    waits = [(clients[s], ch) for (s, ch) in starts]
    left = [x for res in await asyncio.gather(*(wait_delivered([(c, ch)], last.get(ch, 0), 20)
                                                 for c, ch in waits)) for x in res]
    ctx.expect(not left, f"subscribers still missing records after 20s: {[(c.name, ch) for c, ch in left]}")
    total = 0
    for (sname, ch), (p, off) in starts.items():
        expected = [o for o in per_ch[ch] if o >= off]
        total += len(expected)
        check_stream(ctx, f"{sname}/{ch}", clients[sname], ch, expected, recs, p)
    ctx.notes.append(f"subscribers: {total} deliveries checked")


def colocated(ctx: Ctx, base: str, count: int, prefix: str) -> list[str]:
    p = kafkatools.partition_for(base, ctx.partitions)
    out = []
    i = 0
    while len(out) < count:
        n = f"{prefix}{i}"
        if kafkatools.partition_for(n, ctx.partitions) == p:
            out.append(n)
        i += 1
    return out


async def case_resume(ctx: Ctx):
    """d: subscribe from many offsets (between records, head, earliest, wrong partition,
    beyond head) while publishing continues: each gets exactly the channel's records
    >= its start, then live ones (invariant 4)."""
    srv = await ctx.server("main")
    X = "e2e.d.resume"
    fillers = colocated(ctx, X, 2, "e2e.d.fill")
    P = kafkatools.partition_for(X, ctx.partitions)
    pubc = await ctx.connect(srv, name="d-pub")
    rng = random.Random(7)
    xp: list[Pub] = []
    seq = collections.Counter()

    def batch(n):
        ps = []
        for _ in range(n):
            ps.append(make_pub(pubc, X, data_text='{"x":%d}' % seq[X], msg_id=f"x-{seq[X]}", seq=seq[X]))
            seq[X] += 1
            for _ in range(rng.choice([0, 1, 1, 2])):
                f = rng.choice(fillers)
                ps.append(make_pub(pubc, f, data_text='{"fill":%d}' % seq[f], seq=seq[f]))
                seq[f] += 1
        return ps

    phase1 = batch(40)
    await publish_many(pubc, phase1, window=16)
    xp += phase1
    x1 = sorted(p.reply["offset"] for p in phase1 if p.acked and p.channel == X)
    if len(x1) != 40:
        raise CaseError(f"only {len(x1)}/40 phase-1 publishes acked")
    low, head1 = await asyncio.to_thread(kafkatools.watermarks, ctx.bootstrap, ctx.topic, P)
    between = next((a + 1 for a, b in zip(x1, x1[1:]) if b > a + 1), None)
    if between is None:
        raise CaseError("no filler record between two records of the channel (test setup)")

    subs = []  # (label, client, kind, N)

    async def sub_offset(label, frm, kind, n=None, transport="websockets"):
        c = await ctx.connect(srv, name=label, transport=transport)
        r = await subscribe(ctx, c, X, frm)
        subs.append((label, c, kind, n, r))

    async def sub_bound(label, q, kind, n=None, transport="aiohttp"):
        c = await ctx.connect(srv, f"/v1/ws/{X}?from={urllib.parse.quote(str(q), safe='')}", name=label,
                              transport=transport)
        try:
            r = await asyncio.wait_for(asyncio.shield(c.bound_subscribed), 10)
        except asyncio.TimeoutError:
            raise CaseError(f"{label}: no subscribed frame on the bound connection") from None
        subs.append((label, c, kind, n, r))

    # before live publishing resumes
    await sub_offset("off-low", {"offset": low}, "offset", low)
    await sub_offset("off-first", {"offset": x1[0]}, "offset", x1[0])
    await sub_offset("off-between", {"offset": between}, "offset", between)
    await sub_offset("off-mid", {"offset": x1[20]}, "offset", x1[20], "aiohttp")
    await sub_offset("off-last", {"offset": x1[-1]}, "offset", x1[-1])
    await sub_offset("off-head", {"offset": head1}, "offset", head1)
    await sub_offset("off-part-ok", {"offset": x1[10], "partition": P}, "offset", x1[10])
    await sub_offset("earliest", "earliest", "earliest")
    await sub_bound("bound-offset", x1[3], "offset", x1[3])
    await sub_bound("bound-earliest", "earliest", "earliest", transport="websockets")

    # phase 2: live publishing while more subscribers join
    phase2 = batch(120)
    xp += phase2
    pub_task = asyncio.create_task(publish_many(pubc, phase2, window=4, pace=0.01))
    try:
        await asyncio.sleep(0.3)
        await sub_offset("latest", "latest", "latest")
        await sub_offset("default", None, "latest")
        _, head_now = await asyncio.to_thread(kafkatools.watermarks, ctx.bootstrap, ctx.topic, P)
        await sub_offset("off-head-live", {"offset": head_now}, "offset", head_now)
        acked_now = sorted(p.reply["offset"] for p in phase2 if p.acked and p.channel == X)
        if acked_now:
            await sub_offset("off-live-acked", {"offset": acked_now[-1]}, "offset", acked_now[-1])
        await sub_bound("bound-latest", "latest", "latest")
        await sub_offset("off-part-wrong", {"offset": x1[10], "partition": (P + 1) % ctx.partitions},
                         "repartitioned", None)
        await sub_offset("beyond-head", {"offset": head_now + 100000}, "beyond_head", head_now + 100000)
        await asyncio.sleep(0.5)
        await sub_offset("off-mid-live", {"offset": x1[30]}, "offset", x1[30], "aiohttp")
    finally:
        await asyncio.wait_for(pub_task, 60)
    ack_order_checks(ctx, xp, "resume publisher")
    xall = sorted(p.reply["offset"] for p in xp if p.acked and p.channel == X)
    recs = await read_partitions(ctx, ctx.topic, {P: (low, None)})
    kx = sorted(o for (p, o), r in recs.items() if r.key == X.encode())
    ctx.expect(kx == xall, f"Kafka holds {len(kx)} records of {X}, {len(xall)} were acked")
    left = await wait_delivered([(c, X) for _, c, *_ in subs], xall[-1], 20)
    ctx.expect(not left, f"subscribers that never reached the last record: {[c.name for c, _ in left]}")
    for label, c, kind, n, r in subs:
        ctx.expect(r.get("partition") == P and r.get("channel") == X, f"{label}: subscribed {strip(r)}")
        off = r.get("offset")
        head = r.get("head")
        if kind == "offset":
            ctx.expect(off == n and r.get("recovered") is True and "gap" not in r,
                       f"{label}: from offset {n}: subscribed {strip(r)} (expected offset {n}, recovered true)")
            start = n
        elif kind == "earliest":
            ctx.expect(off == low and r.get("recovered") is True, f"{label}: earliest -> {strip(r)}, low={low}")
            start = low
        elif kind == "latest":
            ctx.expect(isinstance(off, int) and off == head and off >= head1 and r.get("recovered") is True,
                       f"{label}: latest -> {strip(r)} (expected offset == head >= {head1})")
            start = off if isinstance(off, int) else 0
        elif kind == "repartitioned":
            gap = r.get("gap") or {}
            ctx.expect(r.get("recovered") is False and gap.get("reason") == "repartitioned" and off == low
                       and gap.get("to") == off,
                       f"{label}: offset with the wrong partition -> {strip(r)} (expected recovered false, "
                       f"gap reason repartitioned, delivery from earliest {low})")
            start = low
        else:  # beyond_head
            gap = r.get("gap") or {}
            ctx.expect(r.get("recovered") is False and gap.get("reason") == "beyond_head" and off == head
                       and gap.get("to") == off and gap.get("from") == n,
                       f"{label}: offset beyond head -> {strip(r)} (expected recovered false, gap "
                       f"{{from:{n}, to:head, reason:beyond_head}}, offset = head)")
            start = off if isinstance(off, int) else 0
        if isinstance(off, int) and isinstance(head, int):
            ctx.expect(head >= off or kind == "beyond_head", f"{label}: head {head} < offset {off}")
        expected = [o for o in xall if o >= start]
        check_stream(ctx, f"resume {label} (start {start})", c, X, expected, recs, P)
    ctx.notes.append(f"resume: {len(subs)} subscriptions checked against {len(xall)} records")


async def case_catchup_join(ctx: Ctx):
    """Subscribers that join while another subscriber of the same partition is still
    catching up (same or nearby start offsets) each get exactly the records >= their
    own start (invariant 4), then live records. Three rounds over a 3 MB backlog."""
    srv = await ctx.server("cfg")
    ch = "bk:backlog"
    topic = "e2e.backlog"
    pad = "b" * 5000
    res = await asyncio.to_thread(
        kafkatools.produce, ctx.bootstrap, topic,
        [{"key": ch, "value": json.dumps({"n": i, "pad": pad}).encode()} for i in range(600)], 60.0)
    offs = [o for _, o in res]
    pc = await ctx.connect(srv, name="join-pub")
    starts = [offs[0], offs[0], offs[0], offs[60], offs[0], offs[300], offs[0]]
    delays = [0, 0.005, 0.02, 0.03, 0.06, 0.1, 0.2]
    live_all = []
    for rnd in range(3):
        subs = []
        for i in range(len(starts)):
            c = await ctx.connect(srv, name=f"join{rnd}.{i}", transport="aiohttp" if i % 2 else "websockets")
            subs.append(c)
        replies = []
        for c, n, d in zip(subs, starts, delays):
            if d:
                await asyncio.sleep(d)
            replies.append(await subscribe(ctx, c, ch, {"offset": n}))
        live = [make_pub(pc, ch, data_text='{"live":%d}' % i, msg_id=f"join-live-{rnd}-{i}", seq=i)
                for i in range(10)]
        await publish_many(pc, live, window=8)
        live_all += live
        ack_order_checks(ctx, live, "catch-up live publisher")
        allo = offs + sorted(p.reply["offset"] for p in live_all if p.acked)
        left = await wait_delivered([(c, ch) for c in subs], allo[-1], 30)
        ctx.expect(not left, f"subscribers that did not reach the last record: {[c.name for c, _ in left]}")
        for c, n, r in zip(subs, starts, replies):
            ctx.expect(r.get("offset") == n and r.get("recovered") is True, f"{c.name}: subscribed {strip(r)}")
            check_stream(ctx, f"{c.name} from {n} (joined during a catch-up)", c, ch, [o for o in allo if o >= n])
        for c in subs:
            await c.close()
            c.msgs.clear()
