"""Fault cases: SIGTERM drain and a broker outage. Each uses its own processes."""
from __future__ import annotations

import asyncio
import json
import signal
import time

from checks import (Pub, ack_order_checks, check_stream, make_pub, publish_many, send_tracked, strip, subscribe,
                    verify_acked, wait_delivered)
import kafkatools
from harness import CaseError, Ctx, now_ms, settle


async def case_drain(ctx: Ctx):
    """j: SIGTERM with publishes in flight: every publish sent before gets ack or nack,
    clients are closed with 1001, the process exits 0."""
    srv = await ctx.start_serve("drain", ctx.bootstrap, "e2e-drain", ["--linger-ms", "300"])
    ch = "e2e.j.drain"
    pubcs = [await ctx.connect(srv, name=f"drain-pub{i}") for i in range(2)]
    sub = await ctx.connect(srv, name="drain-sub", transport="aiohttp")
    await subscribe(ctx, sub, ch, "latest")
    pubs: list[Pub] = []
    futs = []
    for c in pubcs:
        for k in range(150):
            p = make_pub(c, ch, data_text='{"drain":%d}' % k, msg_id=f"{c.name}-{k}", seq=k)
            fut = await send_tracked(c, p)
            pubs.append(p)
            futs.append(fut)
    await asyncio.sleep(0.05)
    term_ms = now_ms()
    answered_before = sum(1 for p in pubs if p.reply is not None)
    srv.proc.send_signal(signal.SIGTERM)
    await asyncio.wait(futs, timeout=40)
    closes = await asyncio.gather(*(c.wait_closed(30) for c in pubcs + [sub]))
    rc = await srv.proc.wait_exit(30)
    settle(futs)
    unanswered = [p for p in pubs if p.reply is None]
    ctx.count("unanswered", len(unanswered))
    ctx.expect(not unanswered, f"{len(unanswered)}/{len(pubs)} publishes sent before SIGTERM got neither "
                               f"ack nor nack (first ids {[p.rid for p in unanswered[:5]]})")
    in_flight = len(pubs) - answered_before
    ctx.expect(in_flight > 0, "no publish was in flight at SIGTERM (all answered before): drain not exercised")
    kinds = {}
    for p in pubs:
        if p.reply:
            kinds[p.reply.get("type")] = kinds.get(p.reply.get("type"), 0) + 1
    ctx.notes.append(f"drain: {len(pubs)} publishes, {in_flight} in flight at SIGTERM, replies {kinds}")
    bad = [strip(p.reply) for p in pubs if p.reply and p.reply.get("type") not in ("ack", "nack")]
    ctx.expect(not bad, f"publishes answered with neither ack nor nack: {bad[:2]}")
    for c, cl in zip(pubcs + [sub], closes):
        ctx.expect(cl is not None and cl[0] == 1001, f"{c.name}: close {cl}, expected 1001 (going away)")
    ctx.expect(rc == 0, f"serve exit status after SIGTERM: {rc} (expected 0 within 30s)")
    await verify_acked(ctx, pubs, srv.node_id, label="drain")


async def case_outage(ctx: Ctx):
    """i: kill the dev Kafka while a client publishes: every publish gets ack or nack
    (never silence), the gateway stays up, /healthz 200, /readyz 503; nothing
    definitely nacked reaches a subscriber (invariant 2)."""
    kproc, bs = await ctx.start_dev_kafka("dev-kafka-outage")
    srv = await ctx.start_serve("outage", bs, "e2e-outage")
    ch = "e2e.i.outage"
    pc = await ctx.connect(srv, name="outage-pub")
    sub = await ctx.connect(srv, name="outage-sub", transport="aiohttp")
    await subscribe(ctx, sub, ch, "latest")
    pubs: list[Pub] = []
    futs = []
    sem = asyncio.Semaphore(50)
    stop = asyncio.Event()
    seq = 0

    async def producer():
        nonlocal seq
        while not stop.is_set():
            try:
                await asyncio.wait_for(sem.acquire(), 0.5)
            except asyncio.TimeoutError:
                continue
            p = make_pub(pc, ch, data_text='{"o":%d}' % seq, msg_id=f"o-{seq}", seq=seq)
            seq += 1
            fut = pc.expect_reply(p.rid)

            def cb(f, p=p):
                sem.release()
                if not f.cancelled() and f.exception() is None:
                    p.reply = f.result()
                    p.reply_ms = p.reply.get("_ms")
            fut.add_done_callback(cb)
            p.send_ms = now_ms()
            try:
                await pc.send_text(p.text)
            except Exception:
                stop.set()
                break
            pubs.append(p)
            futs.append(fut)
            await asyncio.sleep(0.005)

    task = asyncio.create_task(producer())
    await asyncio.sleep(1.0)
    acked_before = sum(1 for p in pubs if p.acked)
    kill_ms = now_ms()
    kproc.send_signal(signal.SIGKILL)
    await kproc.wait_exit(10)
    await asyncio.sleep(2.0)
    stop.set()
    await asyncio.wait_for(task, 10)
    last_send = max((p.send_ms for p in pubs), default=kill_ms)

    async def readyz_503():
        deadline = time.monotonic() + 40
        last = None
        while time.monotonic() < deadline:
            try:
                last, _ = await ctx.http_get(srv, "/readyz", timeout=3)
                if last == 503:
                    return last
            except Exception as e:
                last = f"{type(e).__name__}"
            await asyncio.sleep(0.5)
        return last

    ready_task = asyncio.create_task(readyz_503())
    pending = [f for f in futs if not f.done()]
    if pending:
        await asyncio.wait(pending, timeout=max(1.0, 60 - (now_ms() - last_send) / 1000))
    ready = await ready_task
    settle(futs)
    unanswered = [p for p in pubs if p.reply is None]
    ctx.count("unanswered", len(unanswered))
    ctx.expect(acked_before > 0, "no publish was acked before the outage (test setup)")
    ctx.expect(not unanswered, f"{len(unanswered)}/{len(pubs)} publishes got neither ack nor nack within 60s "
                               f"of sending (connection close: {pc.closed.result() if pc.closed.done() else None})")
    nacks = [p for p in pubs if p.reply and p.reply.get("type") == "nack"]
    after_kill = [p for p in pubs if p.send_ms > kill_ms]
    ctx.expect(after_kill, "no publish was sent after the brokers died (test setup)")
    fake = [p.rid for p in after_kill if p.acked and p.send_ms > kill_ms + 50]
    ctx.expect(not fake, f"{len(fake)} publishes sent after every broker was killed were acked: {fake[:5]}")
    badn = [strip(p.reply) for p in nacks if p.reply.get("persisted") not in ("no", "unknown")
            or p.reply.get("code") != "kafka_unavailable"]
    ctx.expect(not badn, f"nack frames not {{code: kafka_unavailable, persisted: no|unknown}}: {badn[:2]}")
    slow = [p for p in pubs if p.reply_ms and p.reply_ms - p.send_ms > 60_000]
    ctx.expect(not slow, f"{len(slow)} replies took longer than 60s")
    other = [strip(p.reply) for p in pubs if p.reply and p.reply.get("type") not in ("ack", "nack")]
    ctx.expect(not other, f"publish replies other than ack/nack during the outage: {other[:2]}")
    # invariant 2: a definitely-not-persisted record never reaches a subscriber
    no_ids = {p.msg_id for p in nacks if p.reply.get("persisted") == "no"}
    seen = [f.get("msgId") for f in sub.msgs.get(ch, []) if f.get("msgId") in no_ids]
    ctx.count("nacked_seen", len(seen))
    ctx.expect(not seen, f"{len(seen)} records nacked with persisted:no were delivered: {seen[:3]}")
    # the gateway stays up
    ctx.expect(srv.proc.alive, f"gateway exited during the outage (rc={srv.proc.p.returncode})")
    try:
        st, _ = await ctx.http_get(srv, "/healthz", timeout=5)
    except Exception as e:
        st = f"{type(e).__name__}: {e}"
    ctx.expect(st == 200, f"/healthz during the outage: {st}, expected 200")
    ctx.expect(ready == 503, f"/readyz during the outage: {ready}, expected 503 within 40s")
    kinds = {}
    for p in pubs:
        k = (p.reply or {}).get("type", "none") + ("/" + p.reply.get("persisted", "") if p.reply and p.reply.get("type") == "nack" else "")
        kinds[k] = kinds.get(k, 0) + 1
    ctx.notes.append(f"outage: {len(pubs)} publishes ({len(after_kill)} after the kill), replies {kinds}")


async def case_slow_consumer(ctx: Ctx):
    """A subscriber that stops reading (queued output, no write progress for
    --slow-consumer-seconds) is closed with 4008 (never silently skipped); what it got
    is a gap-free prefix per channel, and resuming from last + 1 delivers the rest. A
    fast subscriber of the same channels is unaffected (invariants 3, 5, 7)."""
    cfg = ctx.shared["config_path"]
    srv = await ctx.start_serve("slow", ctx.bootstrap, "e2e-slow",
                                ["--config", str(cfg), "--slow-consumer-bytes", "65536",
                                 "--slow-consumer-seconds", "2", "--close-timeout-seconds", "30"])
    # one channel per partition of e2e.slow (4 partitions, < 5 MiB each: no pruning)
    chans, seen, i = [], set(), 0
    while len(chans) < 4:
        n = f"slow:feed{i}"
        p = kafkatools.partition_for(n, 4)
        if p not in seen:
            seen.add(p)
            chans.append(n)
        i += 1
    slow = await ctx.connect(srv, name="slow-sub", max_queue=4, rcvbuf=4096)
    fast = await ctx.connect(srv, name="fast-sub", transport="aiohttp")
    start = {}
    for ch in chans:
        r = await subscribe(ctx, slow, ch, "latest")
        await subscribe(ctx, fast, ch, "latest")
        start[ch] = r["offset"]
    slow.pause()
    pc = await ctx.connect(srv, name="slow-pub")
    pad = json.dumps("s" * 6000)
    pubs = [make_pub(pc, ch, data_text='{"n":%d,"pad":%s}' % (k, pad), msg_id=f"s-{ch}-{k}", seq=k)
            for k in range(420) for ch in chans]  # ~10 MB, far beyond socket buffers
    await publish_many(pc, pubs, window=64)
    ack_order_checks(ctx, pubs, "slow-consumer publisher")
    acked = {ch: sorted(p.reply["offset"] for p in pubs if p.acked and p.channel == ch) for ch in chans}
    if not all(acked.values()):
        raise CaseError("publishes not acked")
    left = await asyncio.gather(*(wait_delivered([(fast, ch)], acked[ch][-1], 30) for ch in chans))
    ctx.expect(not any(left) and not fast.closed.done(),
               f"fast subscriber did not get every record while another one stalled "
               f"(close {fast.closed.result() if fast.closed.done() else None})")
    for ch in chans:
        check_stream(ctx, f"fast subscriber {ch}", fast, ch, [o for o in acked[ch] if o >= start[ch]])
    # Still not reading: past --slow-consumer-seconds the gateway gives up on it (the close frame
    # waits in the socket behind what was already written; the close timeout is long here).
    await asyncio.sleep(4.0)
    slow.resume()
    cl = await slow.wait_closed(30)
    total = sum(len(slow.msgs.get(ch, [])) for ch in chans)
    ctx.expect(cl is not None and cl[0] == 4008,
               f"subscriber that stopped reading: close {cl} after {total}/{len(pubs)} messages, "
               f"expected 4008 (--slow-consumer-bytes 65536 --slow-consumer-seconds 2)")
    again = await ctx.connect(srv, name="slow-resumed")
    for ch in chans:
        got = [f.get("offset") for f in slow.msgs.get(ch, [])]
        prefix = [o for o in acked[ch] if o >= start[ch]][:len(got)]
        bad = sum(1 for a, b in zip(got, prefix) if a != b)
        ctx.count("silent_gaps", bad)
        ctx.expect(got == prefix, f"slow subscriber's {ch} messages are not a gap-free prefix: "
                                  f"{got[:3]}..{got[-3:]} vs {prefix[:3]}..{prefix[-3:]}")
        nxt = got[-1] + 1 if got else start[ch]
        r2 = await subscribe(ctx, again, ch, {"offset": nxt})
        ctx.expect(r2.get("recovered") is True and r2.get("offset") == nxt, f"resume {ch} at {nxt}: {strip(r2)}")
        left = await wait_delivered([(again, ch)], acked[ch][-1], 30)
        ctx.expect(not left, f"resumed subscriber did not reach the last record of {ch}")
        check_stream(ctx, f"resume {ch} after 4008 from {nxt}", again, ch, [o for o in acked[ch] if o >= nxt])
    ctx.notes.append(f"slow_consumer: closed {cl} after {total} of {len(pubs)} messages")
