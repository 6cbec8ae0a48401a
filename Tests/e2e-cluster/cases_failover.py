"""Faults under load: a node killed (-9), drained (SIGTERM) or paused (SIGSTOP past its
lease), and etcd going away. The TESTING.md invariants are counted over every stream
(lost acked, duplicates, reordered, silent gaps: all 0) and the time until every client
is live again is printed and bounded."""
from __future__ import annotations

import asyncio
import signal
import time

from cases_placement import raw_upgrade, strip, tag
from checks import check_stream, make_pub, read_partitions, send_tracked, subscribe
from clusterlab import (BASE_NODES, CHAT_PARTITIONS, CHAT_TOPIC, ClusterCtx, HandshakeRefused, node_of_url,
                        now_ms, partition_of)
from harness import settle
from streams import Load, count_invariants, pick_channels

VICTIM = "server2"


async def start_load(ctx: ClusterCtx, label: str) -> tuple[Load, dict]:
    owners = await ctx.wait_settled(BASE_NODES, timeout=30, quiet=0.6)
    chans = pick_channels(f"doc:{label}-{tag()}-", owners, 10, BASE_NODES)
    load = Load(ctx, chans, subs_per_channel=2, rate=4.0)
    dt = await load.start()
    await asyncio.sleep(2.0)  # steady state
    ctx.notes.append(f"{label}: {len(load.streams)} streams on {dict(load.nodes_of())} live after {dt:.1f}s")
    return load, owners


async def wait_owned_elsewhere(ctx: ClusterCtx, victim: str, parts, timeout: float) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            owners = await ctx.etcd_owners()
            if all(p in owners and owners[p][0] != victim for p in parts):
                return time.monotonic() - t0
        except Exception:
            pass
        await asyncio.sleep(0.1)
    return None


def victim_segments(load: Load, victim: str, t0: float):
    """(stream, its connection to the victim that was open at t0)."""
    out = []
    for s in load.streams:
        for seg in s.segs:
            if seg.node == victim and seg.opened <= t0 and (seg.end_t is None or seg.end_t >= t0):
                out.append((s, seg))
    return out


async def case_failover_kill9(ctx: ClusterCtx):
    """kill -9 the owner of 10 of 30 loaded channels: its clients reconnect through the
    round-robin name with ?from=last+1 and are live on the new owners within 3 x TTL;
    nothing acked is lost, nothing duplicated, reordered or skipped."""
    load, owners = await start_load(ctx, "kill9")
    ttl = ctx.lease_ttl
    parts = sorted({p for p, o in owners.items() if o == VICTIM})
    affected = load.on_node(VICTIM)
    ctx.expect(len(affected) >= 20, f"only {len(affected)} streams on {VICTIM}")
    t0 = time.monotonic()
    ctx.node(VICTIM).proc.kill_now()
    claim = await wait_owned_elsewhere(ctx, VICTIM, parts, 4 * ttl)
    rec = await load.wait_recovered(t0, affected, 3 * ttl + 10)
    ctx.expect(claim is not None, f"{VICTIM}'s partitions {parts} not owned by others within {4 * ttl:g}s")
    ctx.expect(rec is not None and rec <= 3 * ttl,
               f"streams of the killed node live again after {rec if rec is None else round(rec, 2)}s (bound 3 x TTL = {3 * ttl:g}s)")
    ctx.notes.append(f"failover_kill9: partitions {parts} re-owned after {claim if claim is None else round(claim, 2)}s, "
                     f"all {len(affected)} clients live again after {rec if rec is None else round(rec, 2)}s "
                     f"(TTL {ttl:g}s)")
    segs = victim_segments(load, VICTIM, t0)
    odd = [(s.name, seg.close) for s, seg in segs if seg.moved is not None]
    ctx.expect(not odd, f"a killed node sent moved?? {odd[:3]}")
    await asyncio.sleep(2.0)
    recs = await load.finish()
    count_invariants(ctx, load.streams, recs, "kill9", load.watch)
    await ctx.ensure_cluster()


async def case_drain_sigterm(ctx: ClusterCtx):
    """SIGTERM the owner of 10 of 30 loaded channels: it hands each connection off (moved
    with the offset to resume from, close 4302), answers every publish in flight, exits 0;
    the clients are live on the new owners quickly; invariants all 0."""
    load, owners = await start_load(ctx, "drain")
    ttl = ctx.lease_ttl
    parts = sorted({p for p, o in owners.items() if o == VICTIM})
    affected = load.on_node(VICTIM)
    t0 = time.monotonic()
    ctx.node(VICTIM).proc.send_signal(signal.SIGTERM)
    rec = await load.wait_recovered(t0, affected, 3 * ttl + 10)
    rc = await ctx.node(VICTIM).proc.wait_exit(30)
    t_exit = time.monotonic() - t0
    claim = await wait_owned_elsewhere(ctx, VICTIM, parts, 5)
    ctx.expect(rc == 0, f"{VICTIM} exit status after SIGTERM: {rc}")
    ctx.expect(rec is not None and rec <= 3 * ttl,
               f"streams of the drained node live again after {rec if rec is None else round(rec, 2)}s (bound {3 * ttl:g}s)")
    segs = victim_segments(load, VICTIM, t0)
    handed = [(s, seg) for s, seg in segs if seg.moved is not None and seg.close and seg.close[0] == 4302]
    ctx.expect(len(handed) == len(segs),
               f"{len(segs) - len(handed)} of {len(segs)} connections of the drained node were not handed off with "
               f"moved + 4302: {[(s.name, seg.close, strip(seg.moved)) for s, seg in segs if (s, seg) not in handed][:3]}")
    bad_target = [(s.name, seg.moved.get("url")) for s, seg in handed if node_of_url(seg.moved.get("url", "")) == VICTIM]
    ctx.expect(not bad_target, f"moved pointed back at the drained node: {bad_target[:3]}")
    # what was sent before SIGTERM is answered; what was sent after the node stopped reading
    # is never read (the client sees moved and 4302 instead)
    drained_pubs = [p for s, seg in segs for p in s.pubs if p.seg is seg]
    unanswered = [p for p in drained_pubs if p.reply is None and p.send_t < t0]
    late = [p for p in drained_pubs if p.reply is None and p.send_t >= t0]
    ctx.count("unanswered", len(unanswered))
    ctx.expect(not unanswered, f"{len(unanswered)} publishes sent before SIGTERM on drained connections got neither "
                               f"ack nor nack")
    ctx.notes.append(f"drain_sigterm: {len(handed)}/{len(segs)} connections handed off, all live again after "
                     f"{rec if rec is None else round(rec, 2)}s, exit {rc} after {t_exit:.1f}s, "
                     f"{len(late)} publishes sent after SIGTERM left unanswered, "
                     f"partitions re-owned {'yes' if claim is not None else 'no'}")
    await asyncio.sleep(1.5)
    recs = await load.finish()
    count_invariants(ctx, load.streams, recs, "drain", load.watch)
    await ctx.ensure_cluster()


async def case_pause_sigstop(ctx: ClusterCtx):
    """SIGSTOP the owner of 10 of 30 loaded channels for 2 x TTL: others take its partitions
    after the lease expires; publishers that get no acks reconnect; after SIGCONT the node
    serves nothing of what it lost: its upgrades are redirected, its clients moved/closed,
    and no publish it read after its deadline is acked or stored; invariants all 0."""
    load, owners = await start_load(ctx, "pause")
    ttl = ctx.lease_ttl
    pause = 2 * ttl
    parts = sorted({p for p, o in owners.items() if o == VICTIM})
    affected = load.on_node(VICTIM)
    old_owner_leases = {p: lease for p, (o, lease) in (await ctx.etcd_owners()).items() if o == VICTIM}
    vnode = ctx.node(VICTIM)
    t0 = time.monotonic()
    vnode.proc.send_signal(signal.SIGSTOP)
    ctx.membership_changed = True
    claim = await wait_owned_elsewhere(ctx, VICTIM, parts, pause)
    await asyncio.sleep(max(0.0, pause - (time.monotonic() - t0)))
    vnode.proc.send_signal(signal.SIGCONT)
    t1 = time.monotonic()
    # right after waking: an upgrade for a channel it owned goes to the new owner
    ch = next(s.channel for s in affected)
    r = await raw_upgrade(ctx, vnode.host, f"/v1/ws/{ch}")
    now_owner = (await ctx.etcd_owners()).get(partition_of(ch))
    if r is not None and r.status == 101:
        ok = now_owner is not None and now_owner[0] == VICTIM and now_owner[1] != old_owner_leases.get(partition_of(ch))
        ctx.expect(ok, f"the woken node accepted {ch} without a new claim (etcd: {now_owner})")
        woke = "101 under a new claim"
    else:
        loc = r.header("location") if r else None
        ctx.expect(r is not None and r.status in (302, 503) and (r.status == 503 or node_of_url(loc or "") != VICTIM),
                   f"the woken node answered {r!r} for {ch} (owner now {now_owner})")
        woke = f"{r.status if r else None} -> {node_of_url(loc or '') if r else None}"
    rec = await load.wait_recovered(t0, affected, pause + 3 * ttl + 10)
    ctx.expect(claim is not None, f"{VICTIM}'s partitions not owned by others during the {pause:g}s pause")
    ctx.expect(rec is not None and rec <= pause + 3 * ttl,
               f"streams of the paused node live again {rec if rec is None else round(rec, 2)}s after SIGSTOP "
               f"(bound pause + 3 x TTL = {pause + 3 * ttl:g}s)")
    segs = victim_segments(load, VICTIM, t0)
    await asyncio.sleep(0.5)
    lingering = [(s.name, seg.close, None if seg.end_t is None else round(seg.end_t - t1, 2))
                 for s, seg in segs if not seg.abandoned and (seg.end_t is None or seg.end_t - t1 > ttl)]
    ctx.expect(not lingering, f"connections of the paused node still open {ttl:g}s after it woke: {lingering[:4]}")
    # publishes the paused node read after its deadline (sent after SIGSTOP on old connections)
    late = [p for s, seg in segs for p in s.pubs if p.seg is seg and p.send_t > t0 + 0.05]
    late_acked = [p for p in late if p.acked]
    ctx.count("acked_after_deadline", len(late_acked))
    ctx.expect(not late_acked, f"{len(late_acked)} publishes sent to the paused node after SIGSTOP were acked "
                               f"after it woke ({min((p.reply_t - t1 for p in late_acked), default=0):.2f}s to "
                               f"{max((p.reply_t - t1 for p in late_acked), default=0):.2f}s after SIGCONT), e.g. "
                               f"{[strip(p.reply) for p in late_acked[:2]]}")
    await asyncio.sleep(1.5)
    recs = await load.finish()
    values = {p.value: p for p in late}
    stored = [r for rs in recs.values() for r in rs if r.value in values]
    ctx.count("acked_after_deadline", len(stored))
    ctx.expect(not stored, f"{len(stored)} publishes the paused node read after its deadline are in Kafka "
                           f"(sg-node {[r.header_map().get('sg-node') for r in stored[:3]]})")
    ctx.notes.append(f"pause_sigstop: paused {pause:g}s; partitions {parts} re-owned after "
                     f"{claim if claim is None else round(claim, 2)}s; woken node answered {woke}; all {len(affected)} "
                     f"clients live again {rec if rec is None else round(rec, 2)}s after SIGSTOP; "
                     f"{len(late)} publishes sent into the pause, {len(late_acked)} acked, {len(stored)} stored; "
                     f"{VICTIM} {'alive' if vnode.alive else f'exited {vnode.proc.p.returncode}'} after waking")
    count_invariants(ctx, load.streams, recs, "pause", load.watch)
    # the woken node: back in the cluster by itself, or restarted
    deadline = time.monotonic() + 3 * ttl
    while time.monotonic() < deadline and vnode.alive and VICTIM not in await ctx.etcd_nodes():
        await asyncio.sleep(0.3)
    if vnode.alive and VICTIM not in await ctx.etcd_nodes():
        ctx.notes.append(f"pause_sigstop: {VICTIM} alive but not registered {3 * ttl:g}s after waking: restarted")
        await ctx.stop_node(VICTIM)
    await ctx.ensure_cluster()


async def case_etcd_outage(ctx: ClusterCtx):
    """etcd killed for 2 x TTL and restarted on its data dir: fanout publish/subscribe across
    nodes keeps working throughout; affinity upgrades get 503 (Retry-After) once the leases
    cannot be renewed; after etcd returns all partitions are owned again and clients connect."""
    ttl = ctx.lease_ttl
    owners = await ctx.wait_settled(BASE_NODES, timeout=20, quiet=0.6)
    t = tag()
    fan = f"chat:outage-{t}"
    fpart = partition_of(fan, CHAT_PARTITIONS)
    subs, starts = [], {}
    for name in BASE_NODES:
        m = await ctx.open_ws(f"{ctx.node(name).public_url}/v1/ws", name=f"out-sub-{name}")
        r = await subscribe(ctx, m, fan, "latest")
        starts[m.name] = r["offset"]
        subs.append(m)
    pub = await ctx.open_ws(f"{ctx.node('server1').public_url}/v1/ws", name="out-pub")
    pubs, futs = [], []
    stop = asyncio.Event()

    async def publisher():
        k = 0
        while not stop.is_set():
            p = make_pub(pub, fan, data_text='{"k":%d}' % k, seq=k)
            futs.append(await send_tracked(pub, p))
            pubs.append(p)
            k += 1
            await asyncio.sleep(0.1)
    ptask = asyncio.create_task(publisher())
    aff = pick_channels(f"doc:outage-{t}-", owners, 1, BASE_NODES)
    before = []
    for ch in aff:
        c, _ = await ctx.open_bound(f"{ctx.rr_wss}/v1/ws/{ch}", name=f"out-aff-{ch}")
        before.append(c)
    await asyncio.sleep(1.0)
    t0 = time.monotonic()
    t0_ms = now_ms()
    ctx.etcd.kill_now()
    await ctx.etcd.wait_exit(10)
    await asyncio.sleep(ttl + 1.0)
    # leases cannot have been renewed for more than 3/4 TTL: no node may serve affinity channels
    # (asked on every node by name, whatever HAProxy's round robin thinks of their readiness)
    refused = {}
    for i, ch in enumerate(aff + [f"doc:outage-new-{t}"]):
        via = BASE_NODES[i % 3]
        key = f"{ch}@{via}"
        try:
            c = await ctx.open_ws(f"{ctx.node(via).public_url}/v1/ws/{ch}", name=f"out-try-{i}", timeout=5)
            refused[key] = f"101 on {c.node}"
            await c.close()
        except HandshakeRefused as e:
            refused[key] = e.status
            ctx.expect(e.status != 503 or e.headers.get("retry-after"), f"503 without Retry-After for {ch}")
        except Exception as e:
            refused[key] = type(e).__name__
    ctx.expect(all(v == 503 for v in refused.values()),
               f"affinity upgrades {ttl + 1:g}s into the etcd outage: {refused} (expected 503)")
    old = [(c.name, c.closed.result() if c.closed.done() else "open",
            [f.get("type") for f in c.other if f.get("type") == "moved"]) for c in before]
    await asyncio.sleep(max(0.0, 2 * ttl - (time.monotonic() - t0)))
    await ctx.start_etcd(fresh=False)
    t_back = time.monotonic()
    back_ms = now_ms()
    ctx.membership_changed = True
    await ctx.wait_settled(BASE_NODES, timeout=40)
    t_settled = time.monotonic() - t_back - ctx.SETTLE_AFTER_CHANGE  # when it stopped changing
    after = []
    for ch in aff:
        c, _ = await ctx.open_bound(f"{ctx.rr_wss}/v1/ws/{ch}", name=f"out-after-{ch}", deadline=time.monotonic() + 15)
        after.append(c)
    t_clients = time.monotonic() - t_back
    ctx.expect(t_settled <= 3 * ttl + 5, f"placement settled {t_settled:.1f}s after etcd returned (bound 3 x TTL + 5 s)")
    stop.set()
    await ptask
    await asyncio.wait(futs, timeout=15)
    settle(futs)
    acked = [p for p in pubs if p.acked]
    unanswered = [p for p in pubs if p.reply is None]
    ctx.expect(not unanswered and len(acked) == len(pubs),
               f"fanout publishes: {len(acked)}/{len(pubs)} acked, {len(unanswered)} unanswered")
    last = max(p.reply["offset"] for p in acked) if acked else -1
    for m in subs:
        await m.wait_until(lambda m=m: bool(m.msgs.get(fan)) and m.msgs[fan][-1].get("offset", -1) >= last, 15)
    recs = await read_partitions(ctx, CHAT_TOPIC, {fpart: (min(starts.values()), None)})
    for m in subs:
        exp = sorted(o for (p, o), r in recs.items() if r.key == fan.encode() and o >= starts[m.name])
        check_stream(ctx, m.name, m, fan, exp, recs, fpart)
    during = [p for p in acked if t0_ms <= p.send_ms <= back_ms]
    ctx.expect(len(during) >= 10 * ttl, f"only {len(during)} fanout publishes acked during the etcd outage")
    # acked during the outage and delivered on every node within a second
    for m in subs:
        got = {f.get("offset"): f.get("_ms") for f in m.msgs.get(fan, [])}
        slow = [p for p in during if got.get(p.reply["offset"]) is None or got[p.reply["offset"]] - p.reply_ms > 1000]
        ctx.expect(not slow, f"{m.name}: {len(slow)} fanout messages of the outage not delivered within 1 s")
    ctx.notes.append(f"etcd_outage: {2 * ttl:g}s outage; fanout {len(acked)} publishes ({len(during)} during the outage) "
                     f"acked and delivered on 3 nodes; affinity upgrades during it {refused}; affinity connections open before: {old}; "
                     f"settled {t_settled:.1f}s and clients connected {t_clients:.1f}s after etcd returned")


async def case_fanout_kill9(ctx: ClusterCtx):
    """Fanout channels across a node crash: 10 channels x (2 subscribers + a publisher)
    entering through the round-robin name; kill -9 the node with the most of them; its
    clients reconnect through the round-robin name with ?from=last+1 and lose, repeat and
    reorder nothing."""
    chans = [f"chat:crash-{tag()}-{i}" for i in range(10)]
    load = Load(ctx, chans, subs_per_channel=2, rate=4.0)
    for i, s in enumerate(load.streams):  # spread by name; reconnects go through the round robin
        s.entry = ctx.node(BASE_NODES[i % 3]).public_url
    dt = await load.start()
    await asyncio.sleep(2.0)
    per = load.nodes_of()
    victim = max(BASE_NODES, key=lambda n: per.get(n, 0))
    affected = load.on_node(victim)
    ctx.expect(len(affected) >= 3, f"only {len(affected)} streams on {victim}: {dict(per)}")
    t0 = time.monotonic()
    ctx.node(victim).proc.kill_now()
    rec = await load.wait_recovered(t0, affected, 20)
    ttl = ctx.lease_ttl
    ctx.expect(rec is not None and rec <= 3 * ttl,
               f"fanout clients of the killed node live again after {rec if rec is None else round(rec, 2)}s (bound {3 * ttl:g}s)")
    ctx.notes.append(f"fanout_kill9: {len(load.streams)} streams on {dict(per)} live after {dt:.1f}s; killed {victim}; "
                     f"its {len(affected)} clients live again after {rec if rec is None else round(rec, 2)}s")
    await asyncio.sleep(2.0)
    recs = await load.finish()
    count_invariants(ctx, load.streams, recs, "fanout_kill9")
    await ctx.ensure_cluster()
