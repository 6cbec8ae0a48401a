"""The cluster itself (etcd, dev Kafka, nodes, HAProxy, TLS, names, Chromium) and fanout
channels across nodes: the cases that need no placement."""
from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
import time

import kafkatools
from browser import Chromium
from checks import check_stream, make_pub, publish_many, read_partitions, subscribe, verify_acked
from clusterlab import (BASE_NODES, CHAT_PARTITIONS, CHAT_TOPIC, DOCS_PARTITIONS, DOCS_TOPIC, DOMAIN, LOOPBACK,
                        SOLO_PARTITIONS, SOLO_TOPIC, CaseError, ClusterCtx, partition_of)


async def get_browser(ctx: ClusterCtx) -> Chromium:
    if ctx.chromium is None or ctx.chromium.proc is None or not ctx.chromium.proc.alive:
        b = Chromium(ctx, ctx.leaf_spki_b64())
        ctx.chromium = b
        await b.start()
    return ctx.chromium


async def case_cluster_start(ctx: ClusterCtx):
    """etcd (JSON gateway), dev Kafka (docs:12, chat:6), three TLS nodes and HAProxy come up;
    SNI serverN reaches node N, the round-robin name reaches all; names resolve in-process only;
    Chromium is driven over DevTools through HAProxy."""
    await ctx.detect_placement()
    if not ctx.placement:
        ctx.notes.append("binary without --etcd/--public-url: nodes run fanout only; placement cases cannot run")
    # names without DNS
    got = {ai[4][0] for ai in socket.getaddrinfo(f"server7.{DOMAIN}", 443, type=socket.SOCK_STREAM)}
    ctx.expect(got == {LOOPBACK}, f"resolver override: server7.{DOMAIN} -> {got}")
    got = {ai[4][0] for ai in socket.getaddrinfo(DOMAIN, 443, type=socket.SOCK_STREAM)}
    ctx.expect(got == {LOOPBACK}, f"resolver override: {DOMAIN} -> {got}")
    await ctx.make_certs()
    ctx.write_configs()
    # etcd, and its JSON gateway answering a put / range / delete of our own
    await ctx.start_etcd()
    key = base64.b64encode(b"/e2e-cluster/probe").decode()
    await ctx.etcd_call("/v3/kv/put", {"key": key, "value": base64.b64encode(b"x").decode()})
    got = await ctx.etcd_range("/e2e-cluster/")
    ctx.expect(got.get("/e2e-cluster/probe", ("",))[0] == "x", f"etcd JSON gateway round trip: {got}")
    await ctx.etcd_call("/v3/kv/deleterange", {"key": key})
    await ctx.start_kafka()
    for topic, want in ((DOCS_TOPIC, DOCS_PARTITIONS), (CHAT_TOPIC, CHAT_PARTITIONS), (SOLO_TOPIC, SOLO_PARTITIONS)):
        n = await asyncio.to_thread(kafkatools.partition_count, ctx.bootstrap, topic, 15.0)
        ctx.expect(n == want, f"dev-kafka --topic {topic}:{want} made {n} partitions")
    await asyncio.gather(*(ctx.start_node(n) for n in BASE_NODES))
    await ctx.start_haproxy()
    if not await ctx.wait_haproxy(set(BASE_NODES), 20):
        raise CaseError(f"HAProxy round robin does not see the nodes up: {await ctx.haproxy_states()}")
    # TLS end to end through HAProxy: the node's certificate, verified against the test CA
    for name in (DOMAIN, f"server1.{DOMAIN}", f"server3.{DOMAIN}"):
        r, w = await asyncio.open_connection(LOOPBACK, ctx.lb_port, ssl=ctx.client_ssl, server_hostname=name)
        cert = w.get_extra_info("ssl_object").getpeercert()
        sans = sorted(v for k, v in cert.get("subjectAltName", ()) if k == "DNS")
        ctx.expect(f"*.{DOMAIN}" in sans and DOMAIN in sans, f"certificate names {sans}")
        w.close()
    try:
        r, w = await asyncio.open_connection(LOOPBACK, ctx.lb_port, ssl=ctx.client_ssl,
                                             server_hostname="server1.other.invalid")
        w.close()
        ctx.fails.append("a name outside the certificate verified")
    except ssl.SSLCertVerificationError:
        pass
    # SNI routing: serverN.example.test reaches node N (the record's sg-node says who wrote it)
    for name in BASE_NODES:
        c = await ctx.open_ws(f"wss://{name}.{DOMAIN}:{ctx.lb_port}/v1/ws", name=f"sni-{name}")
        ctx.expect(c.sni == f"{name}.{DOMAIN}", f"SNI sent {c.sni}")
        who = await ctx.served_by(c, "chat:sni-probe", CHAT_TOPIC)
        ctx.expect(who == name, f"wss://{name}.{DOMAIN}:LB reached {who}")
        await c.close()
    # round robin over all nodes for the plain name
    seen = set()
    for i in range(6):
        c = await ctx.open_ws(f"{ctx.rr_wss}/v1/ws", name=f"rr-{i}")
        seen.add(await ctx.served_by(c, "chat:rr-probe", CHAT_TOPIC))
        await c.close()
    ctx.expect(seen == set(BASE_NODES), f"round robin reached {sorted(map(str, seen))}")
    if ctx.placement:
        owners = await ctx.wait_settled(BASE_NODES, timeout=40)
        per = {}
        for p, o in owners.items():
            per.setdefault(o, []).append(p)
        ctx.notes.append(f"cluster_start: docs partitions per node {dict(sorted(per.items()))}")
        # /metrics of every node agrees with the placement: its share served, nothing unowned
        for name in BASE_NODES:
            st, _, text = await ctx.http("GET", ctx.nodes[name].direct_https + "/metrics")
            gauges = {}
            for line in text.splitlines():
                if line.startswith("streamgate_") and " " in line and "{" not in line:
                    key, val = line.rsplit(" ", 1)
                    gauges[key] = float(val)
            ctx.expect(st == 200 and gauges.get("streamgate_affinity_partitions_served") == len(per.get(name, []))
                       and gauges.get("streamgate_affinity_partitions_unowned") == 0
                       and gauges.get("streamgate_cluster_nodes") == len(BASE_NODES),
                       f"{name} /metrics: HTTP {st}, placement gauges {({k: v for k, v in gauges.items() if 'affinity' in k or 'cluster' in k})}, owns {len(per.get(name, []))}")
    # Chromium over DevTools: a page on one node's name, a WebSocket to another's
    b = await get_browser(ctx)
    page = await b.open_page(f"https://server1.{DOMAIN}:{ctx.lb_port}/healthz")
    try:
        text = await page.evaluate("document.body.innerText")
        ctx.expect("ok" in str(text).lower(), f"chromium read /healthz as {text!r}")
        js = """new Promise((resolve, reject) => {
          const ws = new WebSocket('wss://server2.%s:%d/v1/ws/chat:browser-smoke', 'streamgate.v1');
          const t = setTimeout(() => reject(new Error('no frame in 10s')), 10000);
          ws.onmessage = (e) => { clearTimeout(t); resolve({proto: ws.protocol, frame: JSON.parse(e.data)}); ws.close(); };
          ws.onerror = () => { clearTimeout(t); reject(new Error('websocket error')); };
        })""" % (DOMAIN, ctx.lb_port)
        res = await page.evaluate(js, 20)
        ctx.expect(isinstance(res, dict) and res.get("proto") == "streamgate.v1"
                   and res.get("frame", {}).get("type") == "subscribed",
                   f"chromium WebSocket through HAProxy: {res}")
    finally:
        await page.close()


async def case_fanout_across_nodes(ctx: ClusterCtx):
    """A fanout channel: subscribers on every node (multiplexed and bound, by serverN name) get
    every record published on node 1 and every record a confluent-kafka producer wrote with
    key = channel, exactly once, in offset order."""
    ch = f"chat:room-{int(time.time() * 1000) % 100000}"
    part = partition_of(ch, CHAT_PARTITIONS)
    subs = []
    starts = {}
    for name in BASE_NODES:
        base = f"wss://{name}.{DOMAIN}:{ctx.lb_port}"
        m = await ctx.open_ws(f"{base}/v1/ws", name=f"fan-mux-{name}")
        r = await subscribe(ctx, m, ch, "latest")
        ctx.expect(r.get("partition") == part, f"{name}: subscribed partition {r.get('partition')}, murmur2 says {part}")
        starts[m.name] = r["offset"]
        b, sub = await ctx.open_bound(f"{base}/v1/ws/{ch}", name=f"fan-bound-{name}")
        ctx.expect(b.node == name, f"bound fanout connection via {name} ended on {b.node} (fanout is never redirected)")
        starts[b.name] = sub["offset"]
        subs += [m, b]
    pub = await ctx.open_ws(f"wss://server1.{DOMAIN}:{ctx.lb_port}/v1/ws", name="fan-pub")
    pubs = [make_pub(pub, ch, data_text='{"n":%d}' % k, msg_id=f"fan-{k}", seq=k) for k in range(40)]
    backend = [{"key": ch, "value": json.dumps({"backend": k}).encode(),
                "headers": [("content-type", b"application/json")]} for k in range(15)]
    res = await asyncio.gather(publish_many(pub, pubs, window=8),
                               asyncio.to_thread(kafkatools.produce, ctx.bootstrap, CHAT_TOPIC, backend, 30.0))
    placed = res[1]
    ctx.expect(all(p == part for p, _ in placed), f"confluent-kafka put key {ch} in {set(p for p, _ in placed)}")
    await verify_acked(ctx, pubs, "server1", topic=CHAT_TOPIC, label="fanout publishes")
    offs = sorted([p.reply["offset"] for p in pubs if p.acked] + [o for _, o in placed])
    last = offs[-1]
    for c in subs:
        await c.wait_until(lambda c=c: bool(c.msgs.get(ch)) and c.msgs[ch][-1].get("offset", -1) >= last, 15)
    lo = min(starts.values())
    recs = await read_partitions(ctx, CHAT_TOPIC, {part: (lo, None)})
    for c in subs:
        expected = sorted(o for (p, o), r in recs.items() if r.key == ch.encode() and o >= starts[c.name])
        ctx.expect(len(expected) == 55, f"{c.name}: {len(expected)} records of {ch} in Kafka, expected 55")
        check_stream(ctx, c.name, c, ch, expected, recs, part)
