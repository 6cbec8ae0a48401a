"""Bad input, limits, handshake and HTTP endpoints."""
from __future__ import annotations

import asyncio
import base64
import json

from checks import make_pub, publish_many, strip, subscribe, verify_acked, wait_delivered
from harness import CaseError, Client, Ctx, HandshakeRefused, _idkey

ERROR_TIMEOUT = 5.0


async def expect_error(ctx: Ctx, c: Client, label: str, code: str, *, obj=None, text=None,
                       binary: bytes | None = None, rid=None):
    """Sends one bad request and expects {"type":"error","code":code} (with the id
    echoed when the request had a readable one)."""
    if obj is not None and "id" in obj:
        rid = obj["id"]
    if rid is not None:
        fut = c.expect_reply(rid)
        if obj is not None:
            await c.send_json(obj)
        else:
            await c.send_text(text)
        try:
            reply = await asyncio.wait_for(fut, ERROR_TIMEOUT)
        except asyncio.TimeoutError:
            c.pending.pop(_idkey(rid), None)
            late = [strip(f) for f in c.other[-2:]]
            ctx.fails.append(f"{label}: no reply with id {rid!r} within {ERROR_TIMEOUT}s (other frames: {late})")
            return None
        except Exception as e:
            ctx.fails.append(f"{label}: connection failed: {e}")
            return None
    else:
        n = len(c.other)
        if binary is not None:
            await c.send_bytes(binary)
        elif obj is not None:
            await c.send_json(obj)
        else:
            await c.send_text(text)
        reply = await c.wait_next_other(n, ERROR_TIMEOUT)
        if reply is None:
            cl = c.closed.result() if c.closed.done() else None
            ctx.fails.append(f"{label}: no error frame within {ERROR_TIMEOUT}s (connection close: {cl})")
            return None
    ok = reply.get("type") == "error" and reply.get("code") == code
    ctx.expect(ok, f"{label}: got {strip(reply)}, expected error {code}")
    return reply


async def still_works(ctx: Ctx, c: Client, label: str, channel: str = "e2e.h.alive") -> bool:
    p = make_pub(c, channel, data_text='{"alive":true}')
    try:
        await publish_many(c, [p], window=1, reply_timeout=10)
    except Exception as e:
        ctx.fails.append(f"after {label}: connection unusable ({e})")
        return False
    if not p.acked:
        cl = c.closed.result() if c.closed.done() else None
        ctx.fails.append(f"after {label}: publish on the same connection answered {strip(p.reply)} "
                         f"(close: {cl})")
        return False
    return True


async def case_bad_frames(ctx: Ctx):
    """h: each bad frame gets its documented error and the connection (and others) keep working."""
    srv = await ctx.server("main")
    c = await ctx.connect(srv, name="bad")
    by = await ctx.connect(srv, name="bystander", transport="aiohttp")
    by_ch = "e2e.h.bystander"
    await subscribe(ctx, by, by_ch, "latest")
    long201 = "x" * 201
    cases = [
        ("malformed JSON", dict(text='{"type":"subscribe",')),
        ("JSON array", dict(text='[{"type":"subscribe","channel":"a"}]')),
        ("JSON string", dict(text='"subscribe"')),
        ("JSON number", dict(text="42")),
        ("JSON null", dict(text="null")),
        ("empty text", dict(text="")),
        ("unknown type", dict(obj={"type": "frobnicate", "id": "u1"})),
        ("missing type", dict(obj={"id": "u2", "channel": "a"})),
        ("type not a string", dict(obj={"type": 7, "id": "u3"})),
        ("subscribe missing channel", dict(obj={"type": "subscribe", "id": "m1"})),
        ("publish missing channel", dict(obj={"type": "publish", "id": "m2", "data": 1})),
        ("unsubscribe missing channel", dict(obj={"type": "unsubscribe", "id": "m3"})),
        ("channel with space", dict(obj={"type": "subscribe", "id": "c1", "channel": "a b"})),
        ("channel of 201 bytes", dict(obj={"type": "subscribe", "id": "c2", "channel": long201})),
        ("empty channel", dict(obj={"type": "subscribe", "id": "c3", "channel": ""})),
        ("channel not a string", dict(obj={"type": "subscribe", "id": "c4", "channel": 12})),
        ("channel non-ASCII", dict(obj={"type": "subscribe", "id": "c5", "channel": "caf\u00e9"})),
        ("publish to bad channel", dict(obj={"type": "publish", "id": "c6", "channel": "a b", "data": 1})),
        ("publish to 201-byte channel", dict(obj={"type": "publish", "id": "c7", "channel": long201, "data": 1})),
        ("from: 5", dict(obj={"type": "subscribe", "id": "f1", "channel": "e2e.h.f", "from": 5})),
        ("from offset 'x'", dict(obj={"type": "subscribe", "id": "f2", "channel": "e2e.h.f",
                                      "from": {"offset": "x"}})),
        ("from offset -1", dict(obj={"type": "subscribe", "id": "f3", "channel": "e2e.h.f",
                                     "from": {"offset": -1}})),
        ("from unknown word", dict(obj={"type": "subscribe", "id": "f4", "channel": "e2e.h.f",
                                        "from": "sometime"})),
        ("from bad time", dict(obj={"type": "subscribe", "id": "f5", "channel": "e2e.h.f",
                                    "from": {"time": "yesterday"}})),
        ("from empty object", dict(obj={"type": "subscribe", "id": "f6", "channel": "e2e.h.f", "from": {}})),
        ("publish data and data_b64", dict(obj={"type": "publish", "id": "p1", "channel": "e2e.h.p",
                                                "data": 1, "data_b64": "AA=="})),
        ("publish without payload", dict(obj={"type": "publish", "id": "p2", "channel": "e2e.h.p"})),
        ("publish bad base64", dict(obj={"type": "publish", "id": "p3", "channel": "e2e.h.p",
                                         "data_b64": "!!not base64!!"})),
        ("publish msgId not a string", dict(obj={"type": "publish", "id": "p4", "channel": "e2e.h.p",
                                                 "data": 1, "msgId": {"x": 1}})),
        ("auth while auth is disabled", dict(obj={"type": "auth", "id": "au1", "token": "x.y.z"})),
        ("id of wrong type", dict(obj={"type": "frobnicate", "id": [1]}, rid=None)),
    ]
    for label, kw in cases:
        obj = kw.get("obj")
        if label == "id of wrong type":
            await expect_error(ctx, c, label, "bad_request", text=json.dumps(obj))
        else:
            await expect_error(ctx, c, label, "bad_request", **kw)
        if not await still_works(ctx, c, label):
            c = await ctx.connect(srv, name="bad-reopened")
    # binary frame
    await expect_error(ctx, c, "binary frame", "bad_request", binary=b'{"type":"subscribe","channel":"a"}')
    if not await still_works(ctx, c, "binary frame"):
        c = await ctx.connect(srv, name="bad-reopened2")
    # state errors
    r = await subscribe(ctx, c, "e2e.h.dbl", "latest", rid="d1")
    await expect_error(ctx, c, "double subscribe", "already_subscribed",
                       obj={"type": "subscribe", "id": "d2", "channel": "e2e.h.dbl"})
    await expect_error(ctx, c, "unsubscribe unknown", "not_subscribed",
                       obj={"type": "unsubscribe", "id": "d3", "channel": "e2e.h.never"})
    u = await c.request({"type": "unsubscribe", "id": 99, "channel": "e2e.h.dbl"})
    ctx.expect(u.get("type") == "unsubscribed" and u.get("id") == 99 and u.get("channel") == "e2e.h.dbl",
               f"unsubscribe: {strip(u)}")
    await expect_error(ctx, c, "unsubscribe twice", "not_subscribed",
                       obj={"type": "unsubscribe", "id": "d4", "channel": "e2e.h.dbl"})
    r2 = await c.request({"type": "subscribe", "id": "d5", "channel": "e2e.h.dbl"})
    ctx.expect(r2.get("type") == "subscribed", f"subscribe again after unsubscribe: {strip(r2)}")
    await still_works(ctx, c, "state errors")
    # after 'unsubscribed' no message of that channel follows
    await subscribe(ctx, c, "e2e.h.unsub", "latest", rid="us1")
    u = await c.request({"type": "unsubscribe", "id": "us2", "channel": "e2e.h.unsub"})
    ctx.expect(u.get("type") == "unsubscribed", f"unsubscribe e2e.h.unsub: {strip(u)}")
    await publish_many(by, [make_pub(by, "e2e.h.unsub", data_text='{"after":"unsubscribe"}')], window=1)
    await asyncio.sleep(0.5)
    late = [f for f in c.msgs.get("e2e.h.unsub", []) if f["_n"] > u.get("_n", -1)]
    ctx.expect(not late, f"{len(late)} message frames of a channel after its 'unsubscribed'")

    # bound connection: subscribe/unsubscribe refused, publish without channel accepted
    bch = "e2e.h.bound"
    b = await ctx.connect(srv, f"/v1/ws/{bch}", name="bound")
    try:
        await asyncio.wait_for(asyncio.shield(b.bound_subscribed), 10)
    except asyncio.TimeoutError:
        ctx.fails.append("bound connection: no subscribed frame")
    await expect_error(ctx, b, "subscribe on a bound connection", "bad_request",
                       obj={"type": "subscribe", "id": "b1", "channel": "e2e.h.other"})
    await expect_error(ctx, b, "unsubscribe on a bound connection", "bad_request",
                       obj={"type": "unsubscribe", "id": "b2", "channel": bch})
    bp = make_pub(b, bch, data_text='{"bound":1}', omit_channel=True, msg_id="bound-1")
    await publish_many(b, [bp], window=1, reply_timeout=10)
    ctx.expect(bp.acked and bp.reply.get("channel") == bch,
               f"publish without channel on a bound connection: {strip(bp.reply)}")
    if bp.acked:
        ok = await b.wait_until(lambda: any(f.get("msgId") == "bound-1" for f in b.msgs.get(bch, [])), 10)
        ctx.expect(ok, "bound connection did not receive its own publish")
        await verify_acked(ctx, [bp], srv.node_id, label="bound publish")

    # invalid UTF-8 in a text frame -> close 1007 (only that connection)
    u8 = await ctx.connect(srv, name="utf8")
    try:
        await u8.send_bytes(b'{"type":"publish","channel":"e2e.h.u","data":"\xff\xfe"}', text=True)
    except Exception:
        pass
    cl = await u8.wait_closed(10)
    ctx.expect(cl is not None and cl[0] == 1007, f"invalid UTF-8 text frame: close {cl}, expected 1007")
    await still_works(ctx, c, "invalid UTF-8 on another connection")
    # the bystander saw nothing odd and still works
    bp2 = make_pub(c, by_ch, data_text='{"by":1}', msg_id="by-1")
    await publish_many(c, [bp2], window=1)
    ok = await by.wait_until(lambda: any(f.get("msgId") == "by-1" for f in by.msgs.get(by_ch, [])), 10)
    ctx.expect(ok and not by.closed.done(), "bystander connection stopped receiving")
    ctx.expect(not [f for f in by.other if f.get("type") == "error"], f"bystander got errors: {by.other[:2]}")
    await still_works(ctx, by, "bad input on other connections", channel="e2e.h.by2")


async def case_limits(ctx: Ctx):
    """h: payload over --max-message-bytes -> too_large (connection stays open);
    WebSocket message over --max-frame-bytes -> close 1009."""
    srv = await ctx.server("small")  # --max-message-bytes 4096 --max-frame-bytes 65536
    c = await ctx.connect(srv, name="limits")
    other = await ctx.connect(srv, name="limits-other", transport="aiohttp")
    big = json.dumps("y" * 5000)
    await expect_error(ctx, c, "data over max-message-bytes", "too_large",
                       text='{"type":"publish","id":"L1","channel":"e2e.h.lim","data":%s}' % big, rid="L1")
    await expect_error(ctx, c, "data_b64 over max-message-bytes", "too_large",
                       obj={"type": "publish", "id": "L2", "channel": "e2e.h.lim",
                            "data_b64": base64.b64encode(b"z" * 5000).decode()})
    ok1 = make_pub(c, "e2e.h.lim", data_text=json.dumps("y" * 3000))
    ok2 = make_pub(c, "e2e.h.lim", data_bytes=b"z" * 4000)
    await publish_many(c, [ok1, ok2], window=2, reply_timeout=10)
    ctx.expect(ok1.acked and ok2.acked, f"payloads under the limit: {strip(ok1.reply)} {strip(ok2.reply)}")
    await verify_acked(ctx, [ok1, ok2], srv.node_id, label="limits")
    # a single WebSocket message over the frame limit
    f = await ctx.connect(srv, name="frame-limit")
    huge = '{"type":"publish","id":"H1","channel":"e2e.h.lim","data":"%s"}' % ("h" * 70000)
    try:
        await f.send_text(huge)
    except Exception:
        pass
    cl = await f.wait_closed(10)
    ctx.expect(cl is not None and cl[0] == 1009, f"message over --max-frame-bytes: close {cl}, expected 1009")
    await still_works(ctx, c, "oversized message on another connection")
    await still_works(ctx, other, "oversized message on another connection")


async def case_handshake_http(ctx: Ctx):
    """h: HTTP endpoints, subprotocol negotiation, tokens in URLs, namespaces."""
    srv = await ctx.server("main")
    for path, want in [("/healthz", 200), ("/readyz", 200), ("/nope", 404), ("/v1/nope", 404),
                       ("/v1/ws", 426), ("/v1/ws/e2e.h.x", 426)]:
        try:
            st, body = await ctx.http_get(srv, path)
        except Exception as e:
            ctx.fails.append(f"GET {path}: {e}")
            continue
        ctx.expect(st == want, f"GET {path}: {st}, expected {want}")
        if path == "/healthz":
            ctx.expect(body.strip() == "ok", f"GET /healthz body {body[:40]!r}, expected 'ok'")

    async def refused(label, path, want, transport="websockets", subprotocols=("streamgate.v1",)):
        try:
            c = await ctx.connect(srv, path, name=label, transport=transport, subprotocols=subprotocols)
        except HandshakeRefused as e:
            ctx.expect(e.status == want, f"{label}: refused with {e.status}, expected {want}")
            return
        except Exception as e:
            ctx.fails.append(f"{label}: {type(e).__name__}: {e}")
            return
        ctx.fails.append(f"{label}: upgrade accepted (subprotocol {c.subprotocol!r}), expected HTTP {want}")

    await refused("token in query", "/v1/ws?token=abc", 400)
    await refused("access_token in query", "/v1/ws?access_token=abc", 400, transport="aiohttp")
    await refused("token on bound path", "/v1/ws/e2e.h.t?from=latest&token=abc", 400)
    await refused("wrong subprotocol", "/v1/ws", 400, subprotocols=("chat",))
    await refused("wrong subprotocols (aiohttp)", "/v1/ws", 400, transport="aiohttp",
                  subprotocols=("v2.streamgate", "chat"))
    await refused("space in bound channel", "/v1/ws/a%20b", 400)
    await refused("201-byte bound channel", "/v1/ws/" + "x" * 201, 400)
    await refused("bad from on bound path", "/v1/ws/e2e.h.t?from=sometime", 400)

    for label, protos, transport in [("offered v1", ("streamgate.v1",), "websockets"),
                                     ("offered chat+v1", ("chat", "streamgate.v1"), "websockets"),
                                     ("offered v1 (aiohttp)", ("streamgate.v1",), "aiohttp"),
                                     ("offered none", None, "websockets"),
                                     ("offered none (aiohttp)", (), "aiohttp")]:
        try:
            c = await ctx.connect(srv, name=label, transport=transport, subprotocols=protos)
        except Exception as e:
            ctx.fails.append(f"{label}: handshake failed: {e}")
            continue
        if protos:
            ctx.expect(c.subprotocol == "streamgate.v1", f"{label}: selected {c.subprotocol!r}")
        else:
            ctx.expect(c.subprotocol in (None, ""), f"{label}: selected {c.subprotocol!r} though none offered")
        r = await c.request({"type": "subscribe", "channel": "e2e.h.proto"})
        ctx.expect(r.get("type") == "subscribed", f"{label}: subscribe -> {strip(r)}")

    # namespaces (server with a config file)
    cfg = await ctx.server("cfg")
    c = await ctx.connect(cfg, name="ns")
    await expect_error(ctx, c, "subscribe to an unknown namespace", "unknown_namespace",
                       obj={"type": "subscribe", "id": "n1", "channel": "nope:1"})
    await expect_error(ctx, c, "publish to an unknown namespace", "unknown_namespace",
                       obj={"type": "publish", "id": "n2", "channel": "nope:1", "data": {"x": 1}})
    r = await c.request({"type": "subscribe", "id": "n3", "channel": "doc:1"})
    ctx.expect(r.get("type") == "subscribed", f"configured namespace doc: {strip(r)}")
    r = await c.request({"type": "subscribe", "id": "n4", "channel": "plain"})
    ctx.expect(r.get("type") == "subscribed", f"default namespace with a config: {strip(r)}")
    pd = make_pub(c, "doc:1", data_text='{"doc":1}', msg_id="doc-1")
    pp = make_pub(c, "plain", data_text='{"plain":1}', msg_id="plain-1")
    await publish_many(c, [pd, pp], window=2, reply_timeout=10)
    ctx.expect(pd.acked and pp.acked, f"publish doc:1 / plain: {strip(pd.reply)} {strip(pp.reply)}")
    await verify_acked(ctx, [pd], cfg.node_id, topic="e2e.docs", label="namespace doc -> topic e2e.docs")
    await verify_acked(ctx, [pp], cfg.node_id, topic="streamgate.events", label="default namespace topic")
    ok = await c.wait_until(lambda: c.msgs.get("doc:1") and c.msgs.get("plain"), 10)
    ctx.expect(ok, "subscriber of doc:1 / plain did not receive the publishes")
