"""Placement of affinity channels (PROTOCOL §3, §9): the 302 seed flow, one node per
entity, the peer cap, locate and moved, a browser using locate, a node joining, and a
duplicate node id."""
from __future__ import annotations

import asyncio
import json
import random
import time

import kafkatools
from clusterlab import (BASE_NODES, DOCS_PARTITIONS, DOCS_TOPIC, DOMAIN, EXTRA_NODE, LOOPBACK, SOLO_PARTITIONS,
                        SOLO_TOPIC, CaseError, ClusterCtx, HandshakeRefused, free_ports, partition_of)
from edgetools import http_exchange, upgrade_request
from harness import _idkey
from streams import Load, count_invariants


def tag() -> str:
    return f"{int(time.time() * 1000) % 10_000_000:x}{random.randrange(1 << 16):04x}"


async def request_any(c, obj: dict, timeout: float = 10.0) -> dict:
    """Sends a request and returns the first frame carrying its id (moved included)."""
    rid = obj.setdefault("id", c.next_id())
    fut = c.expect_reply(rid)
    start = len(c.other)
    await c.send_json(obj)

    def found():
        if fut.done():
            return True
        return any(f.get("id") == rid for f in c.other[start:])

    ok = await c.wait_until(found, timeout)
    c.pending.pop(_idkey(rid), None)
    if fut.done():
        if fut.exception() is None:
            return fut.result()
        raise CaseError(f"{c.name}: connection closed waiting for the reply to {obj}")
    fut.cancel()
    for f in c.other[start:]:
        if f.get("id") == rid:
            return f
    raise CaseError(f"{c.name}: no reply within {timeout}s to {json.dumps(obj)[:160]}" if not ok else "?")


def strip(f):
    return {k: v for k, v in f.items() if not str(k).startswith("_")} if isinstance(f, dict) else f


async def owner_of(ctx: ClusterCtx, channel: str, topic: str = DOCS_TOPIC, partitions: int = DOCS_PARTITIONS) -> str:
    owners = await ctx.etcd_owners(topic)
    p = partition_of(channel, partitions)
    if p not in owners:
        raise CaseError(f"{topic}/{p} has no owner in etcd")
    return owners[p][0]


async def raw_upgrade(ctx: ClusterCtx, sni: str, path: str):
    """One upgrade request through HAProxy with SNI `sni`; the raw response."""
    req, _ = upgrade_request(path, host=f"{sni}:{ctx.lb_port}")
    return await http_exchange(LOOPBACK, ctx.lb_port, req, ssl_ctx=ctx.client_ssl, server_hostname=sni, timeout=8)


# --- 1 -------------------------------------------------------------------------------------------

async def case_seed_flow(ctx: ClusterCtx):
    """GET wss://example.test/v1/ws/doc:42 through HAProxy: a non-owner answers 302 to
    wss://serverN.example.test/v1/ws/doc:42 (query kept), websockets follows it with SNI
    serverN, node N answers 101; /v1/cluster and etcd say serverN owns murmur2(doc:42) % 12,
    and the connection's record carries sg-node serverN."""
    ch = "doc:42"
    part = partition_of(ch)
    owner = await owner_of(ctx, ch)
    onode = ctx.node(owner)
    want = f"{onode.public_url}/v1/ws/{ch}"
    statuses = []
    for _ in range(6):
        r = await raw_upgrade(ctx, DOMAIN, f"/v1/ws/{ch}")
        statuses.append(r.status if r else None)
        if r and r.status == 302:
            ctx.expect(r.header("location") == want, f"302 Location {r.header('location')!r}, expected {want!r}")
        elif not (r and r.status == 101):
            ctx.fails.append(f"round-robin upgrade of {ch}: {r!r}")
    ctx.expect(statuses.count(302) >= 2 and statuses.count(101) >= 1,
               f"6 round-robin upgrades answered {statuses} (expected 302 from the two other nodes, 101 from the owner)")
    # a non-owner keeps the query
    other = next(n for n in BASE_NODES if n != owner)
    r = await raw_upgrade(ctx, f"{other}.{DOMAIN}", f"/v1/ws/{ch}?from=earliest")
    ctx.expect(r is not None and r.status == 302 and r.header("location") == want + "?from=earliest",
               f"{other}: /v1/ws/{ch}?from=earliest answered {r!r}")
    # the real client follows the 302 (the round robin may also hand it to the owner at once)
    direct = 0
    for i in range(4):
        c, sub = await ctx.open_bound(f"{ctx.rr_wss}/v1/ws/{ch}", name=f"seed{i}")
        if c.sni != DOMAIN:
            break
        direct += 1
        who = await ctx.served_by(c, None, DOCS_TOPIC)
        ctx.expect(who == owner, f"a 101 through the round robin came from {who}, not the owner {owner}")
        await c.close()
    ctx.expect(c.sni == onode.host and c.final_path == f"/v1/ws/{ch}",
               f"websockets ended at SNI {c.sni} path {c.final_path} after {direct} direct hits, expected {onode.host}")
    ctx.expect(sub.get("partition") == part and sub.get("channel") == ch,
               f"subscribed {strip(sub)}, murmur2 partition {part}")
    view = await ctx.cluster_view(owner)
    me = [n for n in view.get("nodes", []) if n.get("self")]
    ctx.expect(view.get("node") == owner and len(me) == 1 and me[0].get("id") == owner
               and f"{DOCS_TOPIC}/{part}" in me[0].get("partitions", []) and me[0].get("url") == onode.public_url,
               f"/v1/cluster of {owner}: {json.dumps(view)[:400]}")
    view2 = await ctx.cluster_view(other)
    ent = [n for n in view2.get("nodes", []) if n.get("id") == owner]
    ctx.expect(ent and f"{DOCS_TOPIC}/{part}" in ent[0].get("partitions", []),
               f"/v1/cluster of {other} does not list {DOCS_TOPIC}/{part} under {owner}")
    who = await ctx.served_by(c, None, DOCS_TOPIC)
    ctx.expect(who == owner, f"the bound connection's record was written by {who}, expected {owner}")
    ctx.notes.append(f"seed_flow: doc:42 -> docs/{part} owned by {owner}; round robin answered {statuses}")


# --- 2 -------------------------------------------------------------------------------------------

async def case_same_node(ctx: ClusterCtx):
    """30 peers of one entity connecting through the round-robin name all end on its owner;
    what one publishes reaches all (itself included: a bound connection is subscribed)."""
    ch = f"doc:same-{tag()}"
    owner = await owner_of(ctx, ch)
    before = await ctx.cluster_view(owner)
    res = await asyncio.gather(*(ctx.open_bound(f"{ctx.rr_wss}/v1/ws/{ch}", name=f"peer{i}") for i in range(30)))
    peers = [c for c, _ in res]
    nodes = {c.node for c in peers}
    ctx.expect(nodes == {owner}, f"30 peers of {ch} ended on {sorted(map(str, nodes))}, owner {owner}")
    redirected = sum(1 for c in peers if c.sni != DOMAIN)
    ctx.notes.append(f"same_node: 30 peers on {owner} ({redirected} via the SNI of the owner after a 302)")

    def conns(view):
        return next((n.get("connections") for n in view.get("nodes", []) if n.get("id") == owner), None)
    n0 = conns(before) or 0
    deadline = time.monotonic() + 8
    n1 = None
    while time.monotonic() < deadline:
        n1 = conns(await ctx.cluster_view(owner))
        if isinstance(n1, int) and n1 >= n0 + 30:
            break
        await asyncio.sleep(0.5)
    ctx.expect(isinstance(n1, int) and n1 >= n0 + 30, f"/v1/cluster connections of {owner}: {n0} -> {n1}")
    pub = peers[0]
    offs = []
    for k in range(5):
        r = await pub.request({"type": "publish", "data": {"k": k}}, timeout=10)
        ctx.expect(r.get("type") == "ack", f"publish answered {strip(r)}")
        if r.get("type") == "ack":
            offs.append(r["offset"])
    for c in peers:
        ok = await c.wait_until(lambda c=c: [f.get("offset") for f in c.msgs.get(ch, [])] == offs, 10)
        if not ok:
            ctx.fails.append(f"{c.name} received {[f.get('offset') for f in c.msgs.get(ch, [])]}, expected {offs}")
            break
    recs = await asyncio.to_thread(kafkatools.read_range, ctx.bootstrap, DOCS_TOPIC, partition_of(ch),
                                   offs[0], offs[-1] + 1, 20.0) if offs else []
    nodes = {r.header_map().get("sg-node") for r in recs if r.key == ch.encode()}
    ctx.expect(nodes == {owner}, f"records of {ch} written by {nodes}")


# --- 3 -------------------------------------------------------------------------------------------

async def case_peer_cap(ctx: ClusterCtx):
    """max_peers 5: the 6th upgrade gets 429 with Retry-After (directly and after the 302);
    after one peer closes a new one gets in, and the cap holds again."""
    ch = f"capped:cap-{tag()}"
    owner = await owner_of(ctx, ch)
    url = f"{ctx.node(owner).public_url}/v1/ws/{ch}"
    peers = []
    for i in range(5):
        c, _ = await ctx.open_bound(url, name=f"cap{i}")
        peers.append(c)

    async def expect_429(u, label):
        try:
            c = await ctx.open_ws(u, name=label)
            ctx.fails.append(f"{label}: upgrade {u} accepted beyond max_peers 5")
            await c.close()
        except HandshakeRefused as e:
            ctx.expect(e.status == 429 and e.headers.get("retry-after"),
                       f"{label}: refused {e.status} Retry-After={e.headers.get('retry-after')!r}, expected 429 with Retry-After")
    await expect_429(url, "cap6-direct")
    await expect_429(f"{ctx.rr_wss}/v1/ws/{ch}", "cap6-roundrobin")
    # another channel of the same namespace is not affected
    c2, _ = await ctx.open_bound(f"{ctx.rr_wss}/v1/ws/{ch}-other", name="cap-other")
    await c2.close()
    await peers.pop(0).close()
    t0 = time.monotonic()
    c, _ = await ctx.open_bound(url, name="cap-again", retry_429=True, deadline=time.monotonic() + 8)
    ctx.notes.append(f"peer_cap: a freed slot was usable after {time.monotonic() - t0:.2f}s "
                     f"({c.attempts} attempts, refusals {dict(c.refusals)})")
    peers.append(c)
    await expect_429(url, "cap6-again")
    # the peers still talk to each other
    r = await peers[0].request({"type": "publish", "data": {"cap": 1}})
    ctx.expect(r.get("type") == "ack", f"publish in a full channel: {strip(r)}")
    for p in peers:
        if not await p.wait_until(lambda p=p: bool(p.msgs.get(ch)), 5):
            ctx.fails.append(f"{p.name} did not receive the message of its channel")


# --- 5 -------------------------------------------------------------------------------------------

async def start_solo_node(ctx: ClusterCtx) -> dict:
    """server4 with one more affinity namespace (`solo`) that only it knows: partitions of
    it that rendezvous gives to server1..3 are never claimed (no owner)."""
    await ctx.start_node(EXTRA_NODE, config=ctx.solo_config_path)
    owners = await ctx.wait_settled((*BASE_NODES, EXTRA_NODE), timeout=40)
    if not await ctx.wait_haproxy({*BASE_NODES, EXTRA_NODE}, 15):
        raise CaseError(f"HAProxy does not route to {EXTRA_NODE}: {await ctx.haproxy_states()}")
    return owners


async def case_locate_and_moved(ctx: ClusterCtx):
    """/v1/locate from every node agrees (affinity: the owner's URL and partition; fanout:
    the asking node's URL), answers CORS; on /v1/ws a subscribe or publish of an affinity
    channel answers moved with the owner's URL and does nothing; no owner: 503 Retry-After
    for locate and for the upgrade."""
    t = tag()
    aff = [f"doc:loc-{t}-{i}" for i in range(8)] + [f"capped:loc-{t}"]
    fan = [f"chat:loc-{t}-{i}" for i in range(3)]
    owners = {p: v[0] for p, v in (await ctx.etcd_owners()).items()}
    for ch in aff + fan:
        answers = {}
        for via in (*BASE_NODES, None):
            st, hd, body = await ctx.locate(via, ch)
            answers[via or "rr"] = body
            if st != 200 or not isinstance(body, dict):
                ctx.fails.append(f"locate {ch} via {via or 'round robin'}: HTTP {st} {body}")
                continue
            if ch in fan:
                if via:
                    want = f"{ctx.node(via).public_url}/v1/ws/{ch}"
                    ctx.expect(body.get("url") == want, f"locate {ch} (fanout) via {via}: url {body.get('url')}, expected {want}")
                continue
            p = partition_of(ch)
            o = owners.get(p)
            want = f"{ctx.node(o).public_url}/v1/ws/{ch}" if o else None
            ctx.expect(body.get("channel") == ch and body.get("partition") == p and body.get("node") == o
                       and body.get("url") == want,
                       f"locate {ch} via {via or 'round robin'}: {body}, expected node {o} partition {p} url {want}")
    # CORS for browsers on other origins
    st, hd, body = await ctx.locate("server1", aff[0], headers={"Origin": f"https://app.{DOMAIN}"})
    ctx.expect(st == 200 and hd.get("access-control-allow-origin") in (f"https://app.{DOMAIN}", "*"),
               f"locate with Origin: {st}, Access-Control-Allow-Origin={hd.get('access-control-allow-origin')!r}")
    st, _, _ = await ctx.locate("server2", f"nope:{t}")
    ctx.expect(st != 200, f"locate of an unknown namespace answered {st}")
    # moved on the multiplexed endpoint, on every node (the owner too)
    ch = aff[0]
    o = owners[partition_of(ch)]
    want = f"{ctx.node(o).public_url}/v1/ws/{ch}"
    marks = []
    muxes = []
    for name in BASE_NODES:
        m = await ctx.open_ws(f"{ctx.node(name).public_url}/v1/ws", name=f"mux-{name}")
        muxes.append(m)
        r = await request_any(m, {"type": "subscribe", "id": f"s-{name}", "channel": ch})
        ctx.expect(r.get("type") == "moved" and r.get("id") == f"s-{name}" and r.get("channel") == ch
                   and r.get("url") == want, f"{name}: subscribe {ch} on /v1/ws answered {strip(r)}, expected moved to {want}")
        mark = f"mux-{t}-{name}"
        marks.append(mark)
        r = await request_any(m, {"type": "publish", "id": 77, "channel": ch, "data": {"mark": mark}})
        ctx.expect(r.get("type") == "moved" and r.get("id") == 77 and r.get("url") == want,
                   f"{name}: publish {ch} on /v1/ws answered {strip(r)}")
        r = await request_any(m, {"type": "subscribe", "channel": fan[0]})
        ctx.expect(r.get("type") == "subscribed", f"{name}: a fanout subscribe on the same connection: {strip(r)}")
    b, sub = await ctx.open_bound(f"{ctx.rr_wss}/v1/ws/{ch}", name="loc-bound")
    r = await b.request({"type": "publish", "data": {"bound": t}})
    ctx.expect(r.get("type") == "ack", f"bound publish {strip(r)}")
    await asyncio.sleep(1.0)
    for m in muxes:
        ctx.expect(not m.msgs.get(ch), f"{m.name} received messages of {ch} although it got moved")
    recs = await asyncio.to_thread(kafkatools.read_range, ctx.bootstrap, DOCS_TOPIC, partition_of(ch),
                                   sub["offset"], None, 20.0)
    leaked = [r.value for r in recs if any(mk.encode() in (r.value or b"") for mk in marks)]
    ctx.expect(not leaked, f"publishes answered moved reached Kafka: {leaked[:2]}")
    # no owner: 503
    await start_solo_node(ctx)
    solo = await ctx.etcd_owners(SOLO_TOPIC)
    unowned = [p for p in range(SOLO_PARTITIONS) if p not in solo]
    ctx.notes.append(f"locate_and_moved: solo partitions owned {sorted(solo)} unowned {unowned}")
    if not unowned:
        raise CaseError("server4 claimed every solo partition: no unowned partition to check 503 with")
    ch503 = next(f"solo:x{i}" for i in range(10000) if partition_of(f"solo:x{i}", SOLO_PARTITIONS) in unowned)
    st, hd, body = await ctx.locate(EXTRA_NODE, ch503)
    ctx.expect(st == 503 and hd.get("retry-after"), f"locate {ch503} (no owner): {st} Retry-After={hd.get('retry-after')!r} {body}")
    r = await raw_upgrade(ctx, f"{EXTRA_NODE}.{DOMAIN}", f"/v1/ws/{ch503}")
    ctx.expect(r is not None and r.status == 503 and r.header("retry-after"), f"upgrade {ch503} (no owner): {r!r}")
    view = await ctx.cluster_view(EXTRA_NODE)
    ctx.expect(f"{SOLO_TOPIC}/{partition_of(ch503, SOLO_PARTITIONS)}" in view.get("unowned", []),
               f"/v1/cluster of {EXTRA_NODE}: unowned {view.get('unowned')}")
    if solo:
        p_own = next(iter(solo))
        chok = next(f"solo:y{i}" for i in range(10000) if partition_of(f"solo:y{i}", SOLO_PARTITIONS) == p_own)
        st, _, body = await ctx.locate(EXTRA_NODE, chok)
        ctx.expect(st == 200 and isinstance(body, dict) and body.get("node") == solo[p_own][0],
                   f"locate {chok} (owned by {solo[p_own][0]}): {st} {body}")
    rc = await ctx.stop_node(EXTRA_NODE)
    ctx.expect(rc == 0, f"{EXTRA_NODE} exit status after SIGTERM: {rc}")


# --- 6 -------------------------------------------------------------------------------------------

BROWSER_JS = """(async () => {
  const r = await fetch('https://%(domain)s:%(port)d/v1/locate/%(ch)s');
  const loc = await r.json();
  window.sg = {frames: [], closes: []};
  const ws = new WebSocket(loc.url, 'streamgate.v1');
  window.sgws = ws;
  ws.onmessage = (e) => window.sg.frames.push(JSON.parse(e.data));
  ws.onclose = (e) => window.sg.closes.push(e.code);
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no subscribed frame in 10s')), 10000);
    const poll = setInterval(() => {
      if (window.sg.frames.some(f => f.type === 'subscribed')) { clearTimeout(t); clearInterval(poll); resolve(); }
      if (window.sg.closes.length) { clearTimeout(t); clearInterval(poll); reject(new Error('closed ' + window.sg.closes)); }
    }, 20);
  });
  return {status: r.status, loc, proto: ws.protocol,
          origin: location.origin, subscribed: window.sg.frames.find(f => f.type === 'subscribed')};
})()"""

BROWSER_WAIT_JS = """new Promise((resolve, reject) => {
  const t = setTimeout(() => reject(new Error('message not received in 10s: ' + JSON.stringify(window.sg.frames))), 10000);
  const poll = setInterval(() => {
    const m = window.sg.frames.find(f => f.type === 'message' && f.offset === %(off)d);
    if (m) { clearTimeout(t); clearInterval(poll); resolve(m); }
  }, 20);
})"""


async def case_browser_locate(ctx: ClusterCtx):
    """Headless Chromium on a page of server1.example.test: fetch(locate doc:7) across
    origins (CORS), new WebSocket(url, 'streamgate.v1') to the owner, the subscribed frame,
    then a message a Python client published through the round-robin name."""
    from cases_infra import get_browser
    ch = "doc:7"
    owner = await owner_of(ctx, ch)
    b = await get_browser(ctx)
    page = await b.open_page(f"https://server1.{DOMAIN}:{ctx.lb_port}/v1/cluster")
    try:
        res = await page.evaluate(BROWSER_JS % {"domain": DOMAIN, "port": ctx.lb_port, "ch": ch}, 25)
        want = f"{ctx.node(owner).public_url}/v1/ws/{ch}"
        ctx.expect(isinstance(res, dict) and res.get("status") == 200 and res.get("loc", {}).get("url") == want
                   and res.get("proto") == "streamgate.v1", f"browser locate/connect: {res}, expected url {want}")
        sub = (res or {}).get("subscribed") or {}
        ctx.expect(sub.get("channel") == ch and sub.get("partition") == partition_of(ch),
                   f"browser subscribed frame {sub}")
        c, _ = await ctx.open_bound(f"{ctx.rr_wss}/v1/ws/{ch}", name="browser-peer")
        mark = tag()
        r = await c.request({"type": "publish", "data": {"from": "python", "mark": mark}})
        if r.get("type") != "ack":
            raise CaseError(f"publish for the browser answered {strip(r)}")
        m = await page.evaluate(BROWSER_WAIT_JS % {"off": r["offset"]}, 20)
        ctx.expect(isinstance(m, dict) and m.get("data") == {"from": "python", "mark": mark} and m.get("channel") == ch,
                   f"browser received {m}")
        ctx.notes.append(f"browser_locate: cross-origin fetch from {res.get('origin')} answered "
                         f"{res.get('status')}, WebSocket to {res.get('loc', {}).get('url')}")
    finally:
        await page.close()


# --- 8 -------------------------------------------------------------------------------------------

async def case_join_moves_share(ctx: ClusterCtx):
    """A 4th node joins a settled 3-node cluster: only partitions now owned by it change
    owner (about 12/4, at least 1, none between old nodes), clients of those partitions
    follow moved without loss; when it drains away the old assignment comes back."""
    before = await ctx.wait_settled(BASE_NODES, timeout=20, quiet=0.6)
    t = tag()
    # one channel in every partition, so whichever partitions move have clients
    chans = [next(f"doc:join-{t}-{p}-{i}" for i in range(100000) if partition_of(f"doc:join-{t}-{p}-{i}") == p)
             for p in range(DOCS_PARTITIONS)]
    load = Load(ctx, chans, subs_per_channel=1, rate=4.0)
    await load.start()
    await asyncio.sleep(1.0)
    t0 = time.monotonic()
    after = await start_solo_node(ctx)
    dt = time.monotonic() - t0
    changed = [p for p in range(DOCS_PARTITIONS) if before.get(p) != after.get(p)]
    between_old = [p for p in changed if after.get(p) != EXTRA_NODE]
    ctx.expect(len(changed) >= 1, "no partition moved to the new node")
    ctx.expect(not between_old, f"partitions moved between old nodes: {[(p, before[p], after[p]) for p in between_old]}")
    ctx.expect(len(changed) <= 7, f"{len(changed)} of 12 partitions moved for one joining node of four")
    ctx.notes.append(f"join_moves_share: {len(changed)} partitions moved to {EXTRA_NODE} {changed}, settled in {dt:.1f}s")
    moved_streams = [s for s in load.streams if partition_of(s.channel) in changed]
    ctx.expect(moved_streams or not changed, "no client on the moved partitions")
    await asyncio.sleep(1.5)
    for s in moved_streams:
        ctx.expect(s.cur is not None and s.cur.node == EXTRA_NODE,
                   f"{s.name} (partition {s.partition}, moved) is on {s.cur.node if s.cur else None}")
    unmoved_reconnects = [(s.name, s.partition, [(g.node, g.reason, g.close, (g.moved or {}).get("url"))
                                                 for g in s.segs[:-1]])
                          for s in load.streams if partition_of(s.channel) not in changed and len(s.segs) > 1]
    ctx.expect(not unmoved_reconnects, f"streams of unmoved partitions reconnected: {unmoved_reconnects[:4]}")
    recs = await load.finish()
    count_invariants(ctx, load.streams, recs, "join", load.watch)
    rc = await ctx.stop_node(EXTRA_NODE)
    ctx.expect(rc == 0, f"{EXTRA_NODE} exit status after SIGTERM: {rc}")
    back = await ctx.wait_settled(BASE_NODES, timeout=30)
    ctx.expect(back == before, f"after {EXTRA_NODE} left, owners differ from before: "
                               f"{[(p, before[p], back.get(p)) for p in range(DOCS_PARTITIONS) if before[p] != back.get(p)]}")


# --- 9 -------------------------------------------------------------------------------------------

async def case_duplicate_node_id(ctx: ClusterCtx):
    """A second process with --node-id server1 exits non-zero with a clear message within
    TTL + 5 s; server1 keeps its registration and keeps serving."""
    regs = await ctx.etcd_nodes()
    if "server1" not in regs:
        raise CaseError(f"server1 not registered: {sorted(regs)}")
    (port,) = free_ports(1)
    n1 = ctx.node("server1")
    argv = ctx.node_argv(n1, node_id="server1", port=port)
    t0 = time.monotonic()
    proc = await ctx.procs.start("dup-server1", argv)
    ctx.case_procs.append(proc)
    limit = ctx.lease_ttl + 5
    rc = await proc.wait_exit(limit + 10)
    dt = time.monotonic() - t0
    err = "\n".join(proc.tail(30)) + "\n" + "\n".join(proc.lines[-10:])
    ctx.expect(rc is not None and rc != 0, f"the duplicate exited {rc} after {dt:.1f}s (expected non-zero)")
    ctx.expect(dt <= limit, f"the duplicate took {dt:.1f}s to exit (limit TTL+5 = {limit:g}s)")
    clear = "server1" in err and any(w in err.lower() for w in ("already", "in use", "registered", "duplicate",
                                                                  "another", "taken", "running"))
    ctx.expect(clear, f"no clear message naming server1: {err.strip()[-400:]!r}")
    regs2 = await ctx.etcd_nodes()
    ctx.expect("server1" in regs2 and regs2["server1"][1] == regs["server1"][1]
               and regs2["server1"][0].get("url") == n1.public_url,
               f"server1's registration changed: {regs.get('server1')} -> {regs2.get('server1')}")
    owners = await ctx.etcd_owners()
    mine = [p for p, (o, _) in owners.items() if o == "server1"]
    if mine:
        ch = next(f"doc:dup{i}" for i in range(10000) if partition_of(f"doc:dup{i}") == mine[0])
        c, _ = await ctx.open_bound(f"{ctx.rr_wss}/v1/ws/{ch}", name="dup-check")
        ctx.expect(c.node == "server1", f"{ch} served by {c.node}")
    said = [ln for ln in err.splitlines() if "server1" in ln and ("registered" in ln or "already" in ln)]
    ctx.notes.append(f"duplicate_node_id: exit {rc} after {dt:.1f}s: {said[-1][-220:] if said else err.strip()[-200:]}")
