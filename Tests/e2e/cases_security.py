"""Security cases: TLS (chain, versions, ALPN, SIGHUP reload), JWT authentication and
permissions (header tokens, auth frames, refresh, expiry, JWKS over HTTP and from a file),
the Origin allowlist, and the RFC 6455 / RFC 9112 handshake rules, with raw sockets where
a library client would hide what the gateway sent. Each case starts its own `serve`
(except `handshake_rules`, which uses the anonymous main node) on the shared dev Kafka."""
from __future__ import annotations

import asyncio
import base64
import json
import secrets
import signal
import ssl
import time

import kafkatools
from checks import make_pub, publish_many, read_partitions, strip, subscribe, verify_acked
from edgetools import (PKI, JwksServer, RawWS, confusion_token, claims, hmac_by_hand, hs_token,
                       http_exchange, install_leaf, jwks_document, make_key, open_stream, close_writer,
                       unsigned_token, upgrade_request, wait_eof, with_payload_bytes, ws_accept,
                       ws_key, b64url)
from harness import CaseError, Client, Closed, Ctx, HandshakeRefused, Server

ISS = "https://issuer.example.test"
AUD = "streamgate-e2e"
ALL = {"sub": ["*"], "pub": ["*"]}


# --- helpers shared with cases_liveness ------------------------------------------------------------

def short(resp) -> str:
    if resp is None:
        return "no response (connection closed)"
    if isinstance(resp, HandshakeRefused):
        return f"HTTP {resp.status}"
    return f"HTTP {resp.status} {resp.reason!r} headers={dict(resp.headers)} body={resp.body[:100]!r}"


async def upgrade(srv: Server, path: str = "/v1/ws", *, headers=(), timeout: float = 5.0, keep=False, **kw):
    """One raw upgrade request on a new connection; the response (None: closed without one)."""
    req, _ = upgrade_request(path, host=f"127.0.0.1:{srv.port}", extra=headers, **kw)
    return await http_exchange("127.0.0.1", srv.port, req, ssl_ctx=srv.ssl_context, timeout=timeout, keep=keep)


async def raw_request(srv: Server, request: bytes, timeout: float = 5.0):
    return await http_exchange("127.0.0.1", srv.port, request, ssl_ctx=srv.ssl_context, timeout=timeout)


def expect_status(ctx: Ctx, label: str, resp, want) -> bool:
    wants = want if isinstance(want, (tuple, list, set)) else (want,)
    return ctx.expect(resp is not None and resp.status in wants, f"{label}: {short(resp)}, expected {want}")


def bearer(token: str) -> list:
    return [("Authorization", f"Bearer {token}")]


async def raw_ws(srv: Server, path: str = "/v1/ws", **kw) -> RawWS:
    return await RawWS.connect("127.0.0.1", srv.port, path, ssl_ctx=srv.ssl_context, **kw)


async def marks(ctx: Ctx, channels, topic: str | None = None) -> dict:
    """partition -> high watermark now, for the partitions of `channels`."""
    topic = topic or ctx.topic
    parts = {kafkatools.partition_for(ch, ctx.partitions) for ch in channels}
    out = {}
    for p in parts:
        _, hi = await asyncio.to_thread(kafkatools.watermarks, ctx.bootstrap, topic, p, 10.0)
        out[p] = hi
    return out


async def channel_records(ctx: Ctx, channel: str, since: dict, topic: str | None = None) -> list:
    """Records of `channel` written since the marks `since` (read up to the high watermark now)."""
    topic = topic or ctx.topic
    p = kafkatools.partition_for(channel, ctx.partitions)
    recs = await read_partitions(ctx, topic, {p: (since.get(p, 0), None)})
    return sorted((r for r in recs.values() if r.key == channel.encode()), key=lambda r: r.offset)


async def publish_one(c: Client, channel: str | None, data, msg_id: str | None = None, rid=None,
                      timeout: float = 10.0) -> dict:
    req = {"type": "publish", "data": data}
    if channel is not None:
        req["channel"] = channel
    if msg_id:
        req["msgId"] = msg_id
    if rid is not None:
        req["id"] = rid
    return await c.request(req, timeout=timeout)


async def bystander_ok(ctx: Ctx, c: Client, label: str, channel: str) -> bool:
    """A publish on another connection is acked (the node keeps serving)."""
    if c.closed.done():
        ctx.fails.append(f"after {label}: the bystander connection was closed {c.closed.result()}")
        return False
    p = make_pub(c, channel, data_text='{"bystander":%d}' % time.monotonic_ns())
    try:
        await publish_many(c, [p], window=1, reply_timeout=10)
    except Exception as e:
        ctx.fails.append(f"after {label}: bystander publish failed ({e})")
        return False
    return ctx.expect(p.acked, f"after {label}: bystander publish answered {strip(p.reply)}")


def log_leaks(proc, secrets_: list[str]) -> list[str]:
    """Which of the strings appear in a process's stderr/stdout."""
    try:
        text = proc.stderr_path.read_text(errors="replace") + proc.stdout_path.read_text(errors="replace")
    except OSError:
        return []
    return [s for s in secrets_ if s and s in text]


# --- TLS --------------------------------------------------------------------------------------------

async def case_tls(ctx: Ctx):
    """--tls-cert/--tls-key: wss:// and https:// with the full chain (the client trusts only the
    root), TLS 1.2 and 1.3 accepted, 1.1 refused, ALPN http/1.1, plain text refused; SIGHUP
    swaps the certificate for new handshakes without dropping open connections; a broken
    file on reload keeps the node serving; --tls-cert alone is a usage error."""
    pki = PKI(ctx.workdir, "pki-tls")
    leaf1 = pki.leaf("node1", key_type="rsa")
    leaf2 = pki.leaf("node1-rotated", key_type="ec")
    for lf in (leaf1, leaf2):
        out = pki.verify(lf)
        if not out.endswith(": OK"):
            raise CaseError(f"setup: openssl verify {lf.name}: {out}")
    cert_path = ctx.workdir / "tls-cert.pem"
    key_path = ctx.workdir / "tls-key.pem"
    install_leaf(leaf1, cert_path, key_path)
    cctx = pki.client_context()
    srv = await ctx.start_serve("tls", ctx.bootstrap, "e2e-tls",
                                ["--tls-cert", str(cert_path), "--tls-key", str(key_path)], ssl_context=cctx)
    if not await ctx.wait_ready(srv, 10):
        ctx.fails.append("https GET /readyz never answered 200")
    st, body = await ctx.http_get(srv, "/healthz")
    ctx.expect(st == 200 and body.strip() == "ok", f"https GET /healthz: {st} {body[:40]!r}")

    async def handshake(label, *, alpn=("http/1.1",), minimum=None, maximum=None, hostname="127.0.0.1",
                        seclevel0=False):
        c = pki.client_context(alpn=alpn, minimum=minimum, maximum=maximum)
        if seclevel0:
            c.set_ciphers("DEFAULT:@SECLEVEL=0")
        try:
            r, w = await open_stream("127.0.0.1", srv.port, c, hostname, 5)
        except (ssl.SSLError, ConnectionError, OSError, asyncio.TimeoutError) as e:
            return None, f"{type(e).__name__}: {e}"
        obj = w.get_extra_info("ssl_object")
        info = (obj.version(), obj.selected_alpn_protocol(), obj.getpeercert(binary_form=True))
        close_writer(w)
        return info, None

    # chain, hostname (IP SAN and the *.example.test SAN), versions, ALPN
    for label, kw in [("TLS default", {}), ("SNI node1.example.test", {"hostname": "node1.example.test"}),
                      ("TLS 1.2 only", {"minimum": ssl.TLSVersion.TLSv1_2, "maximum": ssl.TLSVersion.TLSv1_2}),
                      ("TLS 1.3 only", {"minimum": ssl.TLSVersion.TLSv1_3, "maximum": ssl.TLSVersion.TLSv1_3}),
                      ("ALPN h2,http/1.1", {"alpn": ("h2", "http/1.1")})]:
        info, err = await handshake(label, **kw)
        if info is None:
            ctx.fails.append(f"{label}: handshake failed with a client trusting only the root: {err}")
            continue
        ver, alpn, der = info
        ctx.expect(der == leaf1.der, f"{label}: the peer certificate is not the configured leaf")
        ctx.expect(ver in ("TLSv1.2", "TLSv1.3"), f"{label}: negotiated {ver}")
        if "maximum" in kw:
            want = "TLSv1.2" if kw["maximum"] == ssl.TLSVersion.TLSv1_2 else "TLSv1.3"
            ctx.expect(ver == want, f"{label}: negotiated {ver}")
        ctx.expect(alpn == "http/1.1", f"{label}: ALPN selected {alpn!r}, expected 'http/1.1'")
    info, err = await handshake("TLS 1.1", minimum=ssl.TLSVersion.TLSv1, maximum=ssl.TLSVersion.TLSv1_1,
                                seclevel0=True)
    ctx.expect(info is None, f"a TLS 1.1 client was accepted ({info[0] if info else ''})")
    info, err = await handshake("no ALPN", alpn=())
    ctx.expect(info is not None, f"a client offering no ALPN was refused: {err}")
    # a hostname the certificate does not name is refused by the client: the check is real
    info, err = await handshake("wrong name", hostname="other.invalid")
    ctx.expect(info is None, "a client accepted the certificate for other.invalid: the hostname check is not real")

    # plain text on the TLS port: no upgrade
    req, _ = upgrade_request(host=f"127.0.0.1:{srv.port}")
    r, w = await open_stream("127.0.0.1", srv.port, None, None, 5)
    w.write(req)
    await w.drain()
    _, data = await wait_eof(r, 5)
    close_writer(w)
    ctx.expect(not data.startswith(b"HTTP/1.1 101"), f"a plain-text upgrade on the TLS port got {data[:40]!r}")

    # wss with two independent clients; publish, subscribe, Kafka read-back
    ch = "e2e.sec.tls.a"
    a = await ctx.connect(srv, name="tls-ws")
    b = await ctx.connect(srv, name="tls-aio", transport="aiohttp")
    await subscribe(ctx, b, ch, "latest")
    p1 = make_pub(a, ch, data_text='{"tls":1}', msg_id="tls-1")
    await publish_many(a, [p1], window=1, reply_timeout=10)
    ctx.expect(p1.acked, f"publish over wss: {strip(p1.reply)}")
    ok = await b.wait_until(lambda: any(f.get("msgId") == "tls-1" for f in b.msgs.get(ch, [])), 10)
    ctx.expect(ok, "the aiohttp wss subscriber did not receive the publish")
    await verify_acked(ctx, [p1], srv.node_id, label="publish over wss")

    # SIGHUP: new certificate for new handshakes, open connections stay
    install_leaf(leaf2, cert_path, key_path)
    srv.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 8
    seen = None
    while time.monotonic() < deadline:
        info, err = await handshake("after SIGHUP")
        if info is not None:
            seen = info[2]
            if seen == leaf2.der:
                break
        await asyncio.sleep(0.25)
    ctx.expect(srv.proc.alive, f"the node exited on SIGHUP (rc={srv.proc.p.returncode})")
    ctx.expect(seen == leaf2.der, "new handshakes did not get the new certificate within 8 s of SIGHUP "
                                  f"({'old one still served' if seen == leaf1.der else 'no handshake'})")
    p2 = make_pub(a, ch, data_text='{"tls":2}', msg_id="tls-2")
    await publish_many(a, [p2], window=1, reply_timeout=10)
    ctx.expect(p2.acked and not a.closed.done(), f"a connection opened before the reload: {strip(p2.reply)} "
                                                 f"{a.closed.result() if a.closed.done() else ''}")
    ok = await b.wait_until(lambda: any(f.get("msgId") == "tls-2" for f in b.msgs.get(ch, [])), 10)
    ctx.expect(ok, "a subscriber connected before the reload stopped receiving")
    c3 = await ctx.connect(srv, name="tls-after-reload")
    r3 = await c3.request({"type": "subscribe", "channel": ch})
    ctx.expect(r3.get("type") == "subscribed", f"wss after the reload: {strip(r3)}")

    # a broken certificate file on SIGHUP: the node keeps serving (with the last good one)
    cert_path.write_text("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
    srv.proc.send_signal(signal.SIGHUP)
    await asyncio.sleep(1.5)
    ctx.expect(srv.proc.alive, f"the node exited on SIGHUP with a broken certificate (rc={srv.proc.p.returncode})")
    info, err = await handshake("after a broken reload")
    ctx.expect(info is not None and info[2] == leaf2.der,
               f"after a SIGHUP with a broken certificate file, handshakes fail or changed: {err}")
    p3 = make_pub(a, ch, data_text='{"tls":3}')
    await publish_many(a, [p3], window=1, reply_timeout=10)
    ctx.expect(p3.acked, f"after a broken reload, the open connection: {strip(p3.reply)}")

    # --tls-cert without --tls-key: refused at start, never plain text
    proc = await ctx.procs.start("tls-half", [ctx.binary, "serve", "--brokers", ctx.bootstrap, "--host", "127.0.0.1",
                                              "--port", "0", "--node-id", "e2e-tls-half", "--tls-cert", str(cert_path)])
    ctx.case_procs.append(proc)
    rc = await proc.wait_exit(15)
    ctx.expect(rc not in (None, 0) and not any(l.startswith("listening on") for l in proc.lines),
               f"serve --tls-cert without --tls-key: rc={rc}, stdout={proc.lines[-2:]}")


# --- JWT with an HMAC secret -----------------------------------------------------------------------

def auth_env(ctx: Ctx) -> dict:
    env = ctx.shared.get("edge_auth")
    if env is None:
        secret = secrets.token_hex(32).encode()  # 64 bytes, ASCII
        path = ctx.workdir / "jwt-secret"
        path.write_bytes(secret + b"\n")  # one trailing newline: not part of the secret
        env = {"secret": secret, "path": path, "sent": []}
        ctx.shared["edge_auth"] = env
    return env


async def hmac_node(ctx: Ctx) -> Server:
    env = auth_env(ctx)
    ctx.server_specs.setdefault("auth-hmac", {"node_id": "e2e-auth", "args": [
        "--jwt-secret-file", str(env["path"]), "--jwt-issuer", ISS, "--jwt-audience", AUD,
        "--auth-timeout", "1.5", "--public-namespace", "pubns"]})
    return await ctx.server("auth-hmac")


def htok(ctx: Ctx, sub: str, channels=ALL, *, alg="HS256", secret=None, headers=None, **kw) -> str:
    env = auth_env(ctx)
    kw.setdefault("iss", ISS)
    kw.setdefault("aud", AUD)
    t = hs_token(env["secret"] if secret is None else secret, claims(sub, channels=channels, **kw), alg, headers)
    env["sent"].append(t)
    return t


def sent(ctx: Ctx, token: str) -> str:
    auth_env(ctx)["sent"].append(token)
    return token


def expect_401(ctx: Ctx, label: str, resp):
    if not expect_status(ctx, label, resp, 401):
        return
    wa = resp.header("www-authenticate") or ""
    ctx.expect(wa.lower().startswith("bearer") and 'error="invalid_token"' in wa,
               f"{label}: WWW-Authenticate {wa!r}, expected Bearer error=\"invalid_token\"")


async def check_senders(ctx: Ctx, label: str, since: dict, want: dict):
    """want: channel -> list of (msgId, sub) that must be in Kafka with sg-sender = sub,
    and nothing else of that channel (an empty list: nothing stored)."""
    for ch, items in want.items():
        recs = await channel_records(ctx, ch, since)
        got = [(r.header_map().get("sg-msg-id"), r.header_map().get("sg-sender")) for r in recs]
        ctx.expect(sorted(got, key=str) == sorted(items, key=str),
                   f"{label}: records of {ch} in Kafka (msgId, sg-sender) = {got}, expected {items}")
        if items == [] and got:
            ctx.count("nacked_seen", len(got))


async def case_jwt_header(ctx: Ctx):
    """HMAC secret file, tokens in the Authorization header: HS256/384/512 accepted (secret
    without its trailing newline, aud lists, nbf within leeway, 6 KiB tokens, case-insensitive
    scheme); expired, nbf ahead, wrong secret, secret with the newline, alg none, RS256,
    wrong/missing iss, wrong aud, missing exp/sub, malformed, oversized -> 401 with
    WWW-Authenticate; a valid token in the query -> 400; channels claim: exact names,
    prefixes, '*', sub/pub apart -> forbidden with the id, connection open; bound path
    without sub -> 403; sg-sender and the delivered sender are the token's sub; no token
    or secret in the node's logs."""
    srv = await hmac_node(ctx)
    env = auth_env(ctx)
    secret = env["secret"]
    base = dict(iss=ISS, aud=AUD)

    # accepted
    pad = {"pad": "p" * 4400}
    accepted = [
        ("HS256", htok(ctx, "h256")),
        ("HS384", htok(ctx, "h384", alg="HS384")),
        ("HS512", htok(ctx, "h512", alg="HS512")),
        ("aud as a list", htok(ctx, "aud-list", aud=["other-service", AUD])),
        ("nbf 5 s ahead (leeway)", htok(ctx, "nbf-near", nbf_in=5)),
        ("6 KiB token", htok(ctx, "big-ok", extra=pad)),
    ]
    for label, t in accepted:
        r = await upgrade(srv, headers=bearer(t))
        expect_status(ctx, f"header token {label}", r, 101)
    r = await upgrade(srv, headers=[("Authorization", "bearer " + htok(ctx, "lower-scheme"))])
    expect_status(ctx, "auth scheme 'bearer' in lower case (RFC 9110 11.1)", r, 101)

    # refused
    rsa_key = make_key("RS256", "rs-on-hmac-node")
    good = claims("mallory", channels=ALL, **base)
    long_claims = claims("mallory", channels=ALL, extra={"pad": "p" * 9000}, **base)
    hdr = {"alg": "HS256", "typ": "JWT"}
    refused = [
        ("expired", htok(ctx, "x-exp", exp_in=-120)),
        ("nbf 120 s ahead", htok(ctx, "x-nbf", nbf_in=120)),
        ("wrong secret", htok(ctx, "x-sig", secret=secrets.token_hex(32).encode())),
        ("secret with its trailing newline", htok(ctx, "x-nl", secret=secret + b"\n")),
        ("alg none", unsigned_token(good)),
        ("alg None", unsigned_token(good, alg="None")),
        ("alg none with the HS256 signature",
         unsigned_token(good, signature=hs_token(secret, good).split(".")[2])),
        ("RS256 on an HMAC node", rsa_key.sign(good, kid=False)),
        ("wrong iss", htok(ctx, "x-iss", iss="https://evil.example.test")),
        ("missing iss", hs_token(secret, claims("x-noiss", channels=ALL, aud=AUD))),
        ("wrong aud", htok(ctx, "x-aud", aud="another-service")),
        ("missing aud", hs_token(secret, claims("x-noaud", channels=ALL, iss=ISS))),
        ("missing exp", htok(ctx, "x-noexp", exp_in=None)),
        ("missing sub", hmac_by_hand(secret, hdr, {k: v for k, v in good.items() if k != "sub"})),
        ("exp not a number", hmac_by_hand(secret, hdr, dict(good, exp="tomorrow"))),
        ("payload a JSON array", with_payload_bytes(hs_token(secret, good), b'["sub","mallory"]', secret)),
        ("payload not JSON", with_payload_bytes(hs_token(secret, good), b"sub=mallory", secret)),
        ("malformed: one part", "abcdef"),
        ("malformed: two parts", "abc.def"),
        ("malformed: bad base64", "!!!.@@@.###"),
        ("malformed: four parts", hs_token(secret, good) + ".x"),
        ("header not JSON", b64url(b"not json") + "." + hs_token(secret, good).split(".", 1)[1]),
        ("oversized (> 8 KiB)", hs_token(secret, long_claims)),
        ("empty token", ""),
    ]
    for label, t in refused:
        sent(ctx, t)
        r = await upgrade(srv, headers=bearer(t))
        expect_401(ctx, f"header token {label}", r)
    # tokens in the query string: refused even when valid, even with a header token too
    qt = htok(ctx, "query")
    expect_status(ctx, "valid token in ?token=", await upgrade(srv, f"/v1/ws?token={qt}"), 400)
    expect_status(ctx, "valid token in ?access_token= beside a header token",
                  await upgrade(srv, f"/v1/ws?access_token={qt}", headers=bearer(htok(ctx, "q2"))), 400)
    expect_status(ctx, "valid token in the query of a bound path",
                  await upgrade(srv, f"/v1/ws/e2e.sec.hs.a?from=latest&token={qt}"), 400)

    # permissions
    A, PFX, W, B = "e2e.sec.hs.a", "e2e.sec.hs.pfx.", "e2e.sec.hs.w.", "e2e.sec.hs.b"
    since = await marks(ctx, [A, PFX + "x", W + "1", B, "e2e.sec.hs.pfx"])
    alice_claims = {"sub": [A, PFX + "*"], "pub": [A, W + "*"]}
    alice = await ctx.connect(srv, name="alice", headers={"Authorization": "Bearer " + htok(ctx, "alice", alice_claims)})
    bob = await ctx.connect(srv, name="bob", transport="aiohttp",
                            headers={"Authorization": "Bearer " + htok(ctx, "bob", ALL)})
    carol = await ctx.connect(srv, name="carol",
                              headers={"Authorization": "Bearer " + htok(ctx, "carol", None)})
    for c, ch, frm, want in [(alice, A, "earliest", "subscribed"), (alice, PFX + "x", "latest", "subscribed"),
                             (alice, "e2e.sec.hs.pfx", None, "forbidden"), (alice, W + "1", None, "forbidden"),
                             (alice, B, None, "forbidden"), (alice, "e2e.sec.hs.a2", None, "forbidden"),
                             (bob, B, "latest", "subscribed"), (bob, A, "latest", "subscribed"),
                             (carol, A, None, "forbidden")]:
        rid = f"s-{c.name}-{ch}"
        req = {"type": "subscribe", "id": rid, "channel": ch}
        if frm:
            req["from"] = frm
        r = await c.request(req)
        got = r.get("type") if r.get("type") != "error" else r.get("code")
        ctx.expect(got == want and r.get("id") == rid,
                   f"{c.name} subscribe {ch}: {strip(r)}, expected {want} with id {rid}")
    pubs = [(alice, A, "subscribed", "ack"), (alice, W + "1", "", "ack"), (alice, PFX + "x", "", "forbidden"),
            (alice, B, "", "forbidden"), (bob, B, "", "ack"), (carol, B, "", "forbidden")]
    for i, (c, ch, _, want) in enumerate(pubs):
        rid = f"p-{c.name}-{i}"
        r = await publish_one(c, ch, {"from": c.name, "i": i}, msg_id=f"hs-{c.name}-{i}", rid=rid)
        got = "ack" if r.get("type") == "ack" else r.get("code")
        ctx.expect(got == want and r.get("id") == rid, f"{c.name} publish {ch}: {strip(r)}, expected {want}")
    for c in (alice, bob, carol):
        r = await publish_one(c, B if c is not alice else A, {"still": "open"}, msg_id=f"hs-{c.name}-open",
                              rid=f"open-{c.name}")
        want = "forbidden" if c is carol else "ack"
        got = "ack" if r.get("type") == "ack" else r.get("code")
        ctx.expect(got == want and not c.closed.done(), f"{c.name} after a forbidden request: {strip(r)}")
    # subscribers see sender = sub
    ok = await alice.wait_until(lambda: {f.get("msgId") for f in alice.msgs.get(A, [])} >= {"hs-alice-0", "hs-alice-open"}, 10)
    ctx.expect(ok, f"alice did not receive her publishes on {A}: {[strip(f) for f in alice.msgs.get(A, [])][:3]}")
    for f in alice.msgs.get(A, []):
        ctx.expect(f.get("sender") == "alice", f"message on {A} with sender {f.get('sender')!r}, expected 'alice'")
    ok = await bob.wait_until(lambda: any(f.get("msgId") == "hs-bob-4" for f in bob.msgs.get(B, [])), 10)
    ctx.expect(ok, "bob did not receive his publish")
    ctx.expect(all(f.get("sender") == "bob" for f in bob.msgs.get(B, [])),
               f"senders on {B}: {[f.get('sender') for f in bob.msgs.get(B, [])]}")
    await check_senders(ctx, "header tokens", since, {
        A: [("hs-alice-0", "alice"), ("hs-alice-open", "alice")],
        W + "1": [("hs-alice-1", "alice")],
        PFX + "x": [], B: [("hs-bob-4", "bob"), ("hs-bob-open", "bob")],
    })
    # bound path with a header token
    try:
        bc = await ctx.connect(srv, f"/v1/ws/{A}", name="alice-bound",
                               headers={"Authorization": "Bearer " + htok(ctx, "alice", alice_claims)})
        try:
            await asyncio.wait_for(asyncio.shield(bc.bound_subscribed), 10)
        except asyncio.TimeoutError:
            ctx.fails.append("bound path with sub permission: no subscribed frame")
    except HandshakeRefused as e:
        ctx.fails.append(f"bound path with sub permission refused with {e.status}")
    r = await upgrade(srv, f"/v1/ws/{W}1", headers=bearer(htok(ctx, "alice", alice_claims)))
    expect_status(ctx, "bound path with only pub permission (header token)", r, 403)
    r = await upgrade(srv, f"/v1/ws/{B}", headers=bearer(htok(ctx, "carol", None)))
    expect_status(ctx, "bound path without permission (header token)", r, 403)
    await asyncio.sleep(0.3)
    leaks = log_leaks(srv.proc, [secret.decode()] + [t for t in env["sent"] if len(t) > 40])
    ctx.expect(not leaks, f"{len(leaks)} tokens/secrets appear in the node's logs, first: {leaks[0][:60] if leaks else ''}…")
    # an anonymous node says so loudly at start; a node with a key does not
    main = await ctx.server("main")

    def anonymous_warning(proc) -> bool:
        try:
            lines = proc.stderr_path.read_text(errors="replace").splitlines()
        except OSError:
            return False
        return any("warn" in ln.lower() and "anonymous" in ln.lower() for ln in lines)
    ctx.expect(anonymous_warning(main.proc), "the anonymous main node logged no warning about anonymous access")
    ctx.expect(not anonymous_warning(srv.proc), "the node with --jwt-secret-file warns about anonymous access")


async def case_jwt_auth_frame(ctx: Ctx):
    """Tokens in an auth frame (no header): authed with id/sub/exp; another first frame or
    nothing within --auth-timeout -> 4001; bad tokens -> error unauthorized then 4001;
    refresh with the same sub keeps the connection past the first exp, another sub -> 4003;
    expiry without refresh (auth frame and header token) -> error unauthorized then 4001
    within ~2 s; bound path: 4003 after auth without sub, subscribed with it; a public
    namespace is subscribable before/without auth, not publishable."""
    srv = await hmac_node(ctx)
    env = auth_env(ctx)
    since = await marks(ctx, ["e2e.sec.af.a", "pubns:news", "pubns:bound"])

    async def open_c(name, path="/v1/ws", **kw):
        return await ctx.connect(srv, path, name=name, **kw)

    async def closed_with(c: Client, want: int, within: float, label: str):
        t0 = time.monotonic()
        cl = await c.wait_closed(within)
        ctx.expect(cl is not None and cl[0] == want, f"{label}: close {cl} within {within}s, expected {want}")
        return time.monotonic() - t0, cl

    async def good_auth():
        c = await open_c("af-good")
        t = htok(ctx, "alice", {"sub": ["e2e.sec.af.a"], "pub": ["e2e.sec.af.a"]}, exp_in=600)
        exp = json.loads(base64.urlsafe_b64decode(t.split(".")[1] + "=="))["exp"]
        r = await c.request({"type": "auth", "id": "a1", "token": t})
        ctx.expect(r.get("type") == "authed" and r.get("id") == "a1" and r.get("sub") == "alice"
                   and r.get("exp") == exp, f"auth frame: {strip(r)}, expected authed a1 alice exp {exp}")
        await subscribe(ctx, c, "e2e.sec.af.a", "latest")
        r = await publish_one(c, "e2e.sec.af.a", {"af": 1}, msg_id="af-alice-1")
        ctx.expect(r.get("type") == "ack", f"publish after an auth frame: {strip(r)}")
        r = await publish_one(c, "e2e.sec.af.other", {"af": 2}, msg_id="af-alice-2", rid="forb")
        ctx.expect(r.get("type") == "error" and r.get("code") == "forbidden" and r.get("id") == "forb",
                   f"publish outside the token's channels after an auth frame: {strip(r)}")
        ok = await c.wait_until(lambda: any(f.get("msgId") == "af-alice-1" and f.get("sender") == "alice"
                                            for f in c.msgs.get("e2e.sec.af.a", [])), 10)
        ctx.expect(ok, "the auth-frame client did not receive its publish with sender alice")

    async def wrong_first(kind):
        c = await open_c(f"af-first-{kind}")
        if kind == "subscribe":
            await c.send_json({"type": "subscribe", "id": 1, "channel": "e2e.sec.af.a"})
        else:
            await c.send_json({"type": "publish", "id": 1, "channel": "e2e.sec.af.a", "data": 1, "msgId": "af-nope"})
        await closed_with(c, 4001, 4, f"first frame {kind} instead of auth")

    async def silent():
        c = await open_c("af-silent")
        dt, cl = await closed_with(c, 4001, 6, "no frame within --auth-timeout 1.5")
        if cl:
            ctx.expect(1.0 <= dt <= 4.5, f"silent client closed after {dt:.1f}s, --auth-timeout is 1.5 s")

    async def bad_auth(label, token):
        sent(ctx, token)
        c = await open_c(f"af-bad-{label}")
        fut = await c.submit({"type": "auth", "id": "bad", "token": token})
        try:
            r = await asyncio.wait_for(fut, 5)
        except Exception:
            r = None
        if r is None:
            errs = [strip(f) for f in c.other if f.get("type") == "error"]
            ctx.fails.append(f"auth frame with {label}: no reply with its id 'bad' "
                             f"(errors without it: {errs[:1]}), expected error unauthorized")
        else:
            ctx.expect(r.get("type") == "error" and r.get("code") == "unauthorized",
                       f"auth frame with {label}: reply {strip(r)}, expected error unauthorized")
        await closed_with(c, 4001, 5, f"auth frame with {label}")

    async def refresh_same():
        c = await open_c("af-refresh")
        t1 = htok(ctx, "rita", ALL, exp_in=3)
        r = await c.request({"type": "auth", "id": "r1", "token": t1})
        ctx.expect(r.get("type") == "authed", f"refresh: first auth {strip(r)}")
        first_exp = r.get("exp") or int(time.time() + 3)
        await asyncio.sleep(0.5)
        t2 = htok(ctx, "rita", ALL, exp_in=120)
        r = await c.request({"type": "auth", "id": "r2", "token": t2})
        ctx.expect(r.get("type") == "authed" and r.get("id") == "r2" and r.get("sub") == "rita"
                   and (r.get("exp") or 0) > first_exp + 60, f"refresh with the same sub: {strip(r)}")
        await asyncio.sleep(max(0.0, first_exp + 3.5 - time.time()))
        ctx.expect(not c.closed.done(), f"refreshed connection closed {c.closed.result() if c.closed.done() else ''}")
        r = await publish_one(c, "e2e.sec.af.r", {"after": "refresh"})
        ctx.expect(r.get("type") == "ack", f"publish after the first token's exp (refreshed): {strip(r)}")

    async def refresh_other():
        c = await open_c("af-refresh-other")
        r = await c.request({"type": "auth", "id": "o1", "token": htok(ctx, "olga", ALL)})
        ctx.expect(r.get("type") == "authed", f"refresh-other: first auth {strip(r)}")
        await c.send_json({"type": "auth", "id": "o2", "token": htok(ctx, "mallory", ALL)})
        await closed_with(c, 4003, 5, "refresh with another sub")

    async def expiry(label, header: bool):
        t = htok(ctx, f"exp-{label}", ALL, exp_in=3)
        exp = json.loads(base64.urlsafe_b64decode(t.split(".")[1] + "=="))["exp"]
        if header:
            c = await open_c(f"af-exp-{label}", headers={"Authorization": "Bearer " + t})
        else:
            c = await open_c(f"af-exp-{label}")
            r = await c.request({"type": "auth", "token": t, "id": "e1"})
            ctx.expect(r.get("type") == "authed", f"expiry {label}: auth {strip(r)}")
        r = await publish_one(c, "e2e.sec.af.e", {"before": "exp"})
        ctx.expect(r.get("type") == "ack", f"expiry {label}: publish before exp {strip(r)}")
        cl = await c.wait_closed(exp - time.time() + 4.5)
        t_close = time.time()
        ctx.expect(cl is not None and cl[0] == 4001, f"token expiry ({label}): close {cl}, expected 4001")
        if cl is not None:
            ctx.expect(exp - 1.0 <= t_close <= exp + 3.0,
                       f"token expiry ({label}): closed {t_close - exp:+.1f}s from exp (slack 2 s)")
        errs = [f for f in c.other if f.get("type") == "error"]
        ctx.expect(any(f.get("code") == "unauthorized" for f in errs),
                   f"token expiry ({label}): no error unauthorized before the close (frames {[strip(f) for f in c.other][-2:]})")

    async def bound_auth():
        c = await open_c("af-bound-no", "/v1/ws/e2e.sec.af.b")
        await c.send_json({"type": "auth", "id": "b1", "token": htok(ctx, "bea", {"sub": ["e2e.sec.af.other"], "pub": []})})
        await closed_with(c, 4003, 5, "bound path, auth frame without sub permission")
        c2 = await open_c("af-bound-yes", "/v1/ws/e2e.sec.af.b")
        r = await c2.request({"type": "auth", "id": "b2", "token": htok(ctx, "bea", {"sub": ["e2e.sec.af.b"], "pub": []})})
        ctx.expect(r.get("type") == "authed", f"bound path auth with permission: {strip(r)}")
        try:
            await asyncio.wait_for(asyncio.shield(c2.bound_subscribed), 10)
        except asyncio.TimeoutError:
            ctx.fails.append(f"bound path: no subscribed frame after a good auth frame (close {c2.closed.result() if c2.closed.done() else None})")

    async def public_ns():
        anon = await open_c("af-public-anon")
        t_anon = time.monotonic()
        r = await anon.request({"type": "subscribe", "id": "pub1", "channel": "pubns:news"})
        ctx.expect(r.get("type") == "subscribed", f"anonymous first-frame subscribe to a public namespace: {strip(r)}")
        bound = None
        try:
            bound = await open_c("af-public-bound", "/v1/ws/pubns:bound")
            await asyncio.wait_for(asyncio.shield(bound.bound_subscribed), 10)
        except (HandshakeRefused, asyncio.TimeoutError) as e:
            ctx.fails.append(f"bound path on a public namespace without a token: {e!r}")
        nochan = await open_c("af-public-nochan", headers={"Authorization": "Bearer " + htok(ctx, "nina", None)})
        r = await nochan.request({"type": "subscribe", "id": "pub2", "channel": "pubns:news"})
        ctx.expect(r.get("type") == "subscribed", f"token without channels, public namespace: {strip(r)}")
        writer = await open_c("af-public-writer",
                              headers={"Authorization": "Bearer " + htok(ctx, "paul", {"sub": [], "pub": ["pubns:*"]})})

        async def round_(n):
            for ch, mid in (("pubns:news", f"pub-news-{n}"), ("pubns:bound", f"pub-bound-{n}")):
                r = await publish_one(writer, ch, {"news": mid}, msg_id=mid)
                ctx.expect(r.get("type") == "ack", f"authorised publish to {ch}: {strip(r)}")
            for c, ch, mid in ((anon, "pubns:news", f"pub-news-{n}"), (nochan, "pubns:news", f"pub-news-{n}"),
                               (bound, "pubns:bound", f"pub-bound-{n}")):
                if c is None:
                    continue
                ok = await c.wait_until(lambda c=c, ch=ch, mid=mid: any(
                    f.get("msgId") == mid and f.get("sender") == "paul" for f in c.msgs.get(ch, [])), 10)
                ctx.expect(ok, f"{c.name} did not receive {mid} (sender paul) on {ch} "
                               f"(close: {c.closed.result() if c.closed.done() else None})")

        await round_(1)
        # "without auth": past the auth timeout the anonymous public subscribers are still served
        await asyncio.sleep(max(0.0, t_anon + 2.5 - time.monotonic()))
        await round_(2)
        # publishing to a public namespace still needs a token and pub permission
        fut = await anon.submit({"type": "publish", "id": "anonpub", "channel": "pubns:news", "data": 1,
                                 "msgId": "pub-anon"})
        try:
            r = await asyncio.wait_for(fut, 5)
        except (asyncio.TimeoutError, Closed):
            r = None
        ctx.expect(r is None or r.get("type") != "ack", f"anonymous publish to a public namespace acked: {strip(r)}")
        r = await publish_one(nochan, "pubns:news", 1, msg_id="pub-nochan", rid="ncp")
        ctx.expect(r.get("type") == "error" and r.get("code") == "forbidden",
                   f"publish to a public namespace without pub permission: {strip(r)}")

    async def header_then_frame():
        t = htok(ctx, "hank", ALL)
        c = await open_c("af-header-refresh", headers={"Authorization": "Bearer " + t})
        r = await c.request({"type": "auth", "id": "h1", "token": htok(ctx, "hank", ALL, exp_in=900)})
        ctx.expect(r.get("type") == "authed" and r.get("sub") == "hank",
                   f"auth frame refreshing a header token: {strip(r)}")

    expired = htok(ctx, "x", ALL, exp_in=-60)
    tasks = [good_auth(), wrong_first("subscribe"), wrong_first("publish"), silent(),
             bad_auth("an expired token", expired),
             bad_auth("a wrong signature", htok(ctx, "x", ALL, secret=b"not-the-secret-" * 4)),
             bad_auth("alg none", unsigned_token(claims("x", channels=ALL, iss=ISS, aud=AUD))),
             bad_auth("a malformed token", "not.a.jwt"),
             bad_auth("an oversized token", htok(ctx, "x", ALL, extra={"pad": "p" * 9000})),
             refresh_same(), refresh_other(), expiry("auth frame", False), expiry("header", True),
             bound_auth(), public_ns(), header_then_frame()]
    res = await asyncio.gather(*tasks, return_exceptions=True)
    for r in res:
        if isinstance(r, BaseException):
            ctx.fails.append(f"{type(r).__name__}: {r}")
    await check_senders(ctx, "auth frames", since, {
        "e2e.sec.af.a": [("af-alice-1", "alice")],
        "pubns:news": [("pub-news-1", "paul"), ("pub-news-2", "paul")],
        "pubns:bound": [("pub-bound-1", "paul"), ("pub-bound-2", "paul")],
    })
    leaks = log_leaks(srv.proc, [env["secret"].decode()] + [t for t in env["sent"] if len(t) > 40])
    ctx.expect(not leaks, f"{len(leaks)} tokens/secrets appear in the node's logs")


# --- JWKS ------------------------------------------------------------------------------------------

async def case_jwks(ctx: Ctx):
    """--jwks URL with --jwks-refresh 1: RS256, PS256, ES256, ES384 and EdDSA keys chosen by kid
    accepted (sg-sender = sub); no kid, unknown kid, wrong signature, alg none, HS256 with the
    RSA public key as secret (algorithm confusion), an alg other than the key's -> 401; a key
    added to the JWKS is accepted after a refresh, a removed one refused; the JWKS server down,
    answering 500 or garbage: the last good keys keep working. --jwks FILE, and a URL with the
    default refresh: SIGHUP reloads."""
    keys = {k.kid: k for k in (make_key("RS256", "rsa-1"), make_key("PS256", "ps-1"), make_key("ES256", "ec-256"),
                               make_key("ES384", "ec-384"), make_key("EdDSA", "ed-1"))}
    rsa2 = make_key("RS256", "rsa-2")
    other_rsa = make_key("RS256", "rsa-1")  # same kid, another key
    js = JwksServer(jwks_document(keys.values())).start()
    try:
        srv = await ctx.start_serve("jwks-url", ctx.bootstrap, "e2e-jwks",
                                    ["--jwks", js.url, "--jwks-refresh", "1", "--jwt-issuer", ISS,
                                     "--jwt-audience", AUD])
        await _jwks_url_checks(ctx, srv, js, keys, rsa2, other_rsa)
    finally:
        js.stop()
    # a JWKS file, reloaded on SIGHUP
    fkey1, fkey2 = make_key("ES256", "file-1"), make_key("EdDSA", "file-2")
    path = ctx.workdir / "jwks.json"
    path.write_text(json.dumps(jwks_document([fkey1])))
    fsrv = await ctx.start_serve("jwks-file", ctx.bootstrap, "e2e-jwks-file", ["--jwks", str(path)])
    c1 = claims("fiona", channels=ALL)
    expect_status(ctx, "JWKS file: ES256 token", await upgrade(fsrv, headers=bearer(fkey1.sign(c1))), 101)
    expect_401(ctx, "JWKS file: a key not in the file yet", await upgrade(fsrv, headers=bearer(fkey2.sign(c1))))
    tmp = path.with_name("jwks.json.tmp")
    tmp.write_text(json.dumps(jwks_document([fkey1, fkey2])))
    tmp.replace(path)
    fsrv.proc.send_signal(signal.SIGHUP)
    ok = False
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        r = await upgrade(fsrv, headers=bearer(fkey2.sign(c1)))
        if r is not None and r.status == 101:
            ok = True
            break
        await asyncio.sleep(0.3)
    ctx.expect(fsrv.proc.alive, f"the node exited on SIGHUP (rc={fsrv.proc.p.returncode})")
    ctx.expect(ok, "JWKS file: a key added to the file is not accepted within 6 s of SIGHUP")
    expect_status(ctx, "JWKS file: the first key after SIGHUP", await upgrade(fsrv, headers=bearer(fkey1.sign(c1))), 101)
    # a JWKS URL with the default refresh (300 s): SIGHUP fetches it again
    ukey1, ukey2 = make_key("ES384", "hup-1"), make_key("PS256", "hup-2")
    js2 = JwksServer(jwks_document([ukey1])).start()
    try:
        hsrv = await ctx.start_serve("jwks-url-hup", ctx.bootstrap, "e2e-jwks-hup", ["--jwks", js2.url])
        expect_status(ctx, "JWKS URL (default refresh): its key", await upgrade(hsrv, headers=bearer(ukey1.sign(c1))), 101)
        js2.set(jwks_document([ukey1, ukey2]))
        await asyncio.sleep(1.0)
        r = await upgrade(hsrv, headers=bearer(ukey2.sign(c1)))
        ctx.expect(r is not None and r.status == 401,
                   f"JWKS URL (default refresh 300 s): a new key accepted before any SIGHUP ({short(r)})")
        h0 = js2.hits_now()
        hsrv.proc.send_signal(signal.SIGHUP)
        ok = False
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            r = await upgrade(hsrv, headers=bearer(ukey2.sign(c1)))
            if r is not None and r.status == 101:
                ok = True
                break
            await asyncio.sleep(0.3)
        ctx.expect(hsrv.proc.alive, f"the node exited on SIGHUP (rc={hsrv.proc.p.returncode})")
        ctx.expect(ok, f"JWKS URL: a key added is not accepted within 6 s of SIGHUP "
                       f"({js2.hits_now() - h0} fetches since the signal)")
    finally:
        js2.stop()


async def _jwks_url_checks(ctx, srv, js: JwksServer, keys: dict, rsa2, other_rsa):
    good = claims("x", channels=ALL, iss=ISS, aud=AUD)
    since = await marks(ctx, ["e2e.sec.jwks"])
    want = []
    # every key type, full round trip
    for kid, k in keys.items():
        sub = f"jwks-{k.alg.lower()}"
        t = k.sign(claims(sub, channels=ALL, iss=ISS, aud=AUD))
        try:
            c = await ctx.connect(srv, name=sub, headers={"Authorization": "Bearer " + t})
        except HandshakeRefused as e:
            ctx.fails.append(f"{k.alg} token (kid {kid}) refused with {e.status}")
            continue
        r = await publish_one(c, "e2e.sec.jwks", {"alg": k.alg}, msg_id=f"jwks-{kid}")
        ctx.expect(r.get("type") == "ack", f"{k.alg} publish: {strip(r)}")
        if r.get("type") == "ack":
            want.append((f"jwks-{kid}", sub))
    await check_senders(ctx, "JWKS tokens", since, {"e2e.sec.jwks": want})
    rs, ec256, ed = keys["rsa-1"], keys["ec-256"], keys["ed-1"]
    refused = [
        ("no kid", rs.sign(good, kid=False)),
        ("unknown kid", rs.sign(good, kid="nope")),
        ("wrong signature (another key, same kid)", other_rsa.sign(good)),
        ("alg none with a JWKS kid", unsigned_token(good, kid="rsa-1")),
        ("HS256 with the RSA public key PEM as secret (algorithm confusion)", confusion_token(rs, good)),
        ("HS256 with the RSA public key PKCS#1 PEM as secret", confusion_token(rs, good, rs.public_pem_pkcs1())),
        ("HS256 with the JWK's n as secret", confusion_token(rs, good, rs.jwk()["n"].encode())),
        ("PS256 with an RS256 key", rs.sign(good, alg="PS256")),
        ("RS384 with an RS256 key", rs.sign(good, alg="RS384")),
        ("ES384 signature with the ES256 key's kid", keys["ec-384"].sign(good, kid="ec-256")),
        ("RS256 signature with the EdDSA key's kid", rs.sign(good, kid="ed-1")),
        ("expired ES256", ec256.sign(claims("x", channels=ALL, iss=ISS, aud=AUD, exp_in=-120))),
        ("EdDSA with the wrong aud", ed.sign(claims("x", channels=ALL, iss=ISS, aud="nope"))),
    ]
    for label, t in refused:
        expect_401(ctx, f"JWKS: {label}", await upgrade(srv, headers=bearer(t)))
    # the node refreshes (every second)
    h0 = js.hits_now()
    await asyncio.sleep(2.5)
    ctx.expect(js.hits_now() >= h0 + 1, f"JWKS fetched {js.hits_now() - h0} times in 2.5 s with --jwks-refresh 1")

    async def until_status(label, token, want, timeout=6.0):
        deadline = time.monotonic() + timeout
        r = None
        while time.monotonic() < deadline:
            r = await upgrade(srv, headers=bearer(token))
            if r is not None and r.status == want:
                return True
            await asyncio.sleep(0.3)
        ctx.fails.append(f"{label}: still {short(r)} after {timeout}s, expected {want}")
        return False

    t_new = rsa2.sign(good)
    expect_401(ctx, "JWKS: a key not yet published", await upgrade(srv, headers=bearer(t_new)))
    js.set(jwks_document(list(keys.values()) + [rsa2]))
    await until_status("JWKS: a key added to the document", t_new, 101)
    # outages: stop, 500, garbage; the last good keys stay
    t_rs, t_ed = rs.sign(good), ed.sign(good)
    for label, act, fetched in [("JWKS server down", lambda: js.stop(), False),
                       ("JWKS answering 500", lambda: (js.start(), js.set(status=500, body=b"boom")), True),
                       ("JWKS answering garbage", lambda: js.set(status=200, body=b"<html>not json</html>"), True),
                       ("JWKS answering {\"keys\": 7}", lambda: js.set(status=200, body=b'{"keys": 7}'), True),
                       ("JWKS answering a truncated document",
                        lambda: js.set(status=200, body=json.dumps(jwks_document(keys.values())).encode()[:50]), True)]:
        act()
        h0 = js.hits_now()
        await asyncio.sleep(2.2)
        if fetched:
            ctx.expect(js.hits_now() > h0, f"{label}: the node did not fetch the JWKS in 2.2 s (refresh 1 s)")
        for kl, t in (("rsa-1", t_rs), ("ed-1", t_ed), ("rsa-2", t_new)):
            expect_status(ctx, f"{label}: a last-good key ({kl})", await upgrade(srv, headers=bearer(t)), 101)
        ctx.expect(srv.proc.alive, f"{label}: the node exited")
    # a good document without ps-1: that key is no longer accepted
    js.set(jwks_document([k for kid, k in keys.items() if kid != "ps-1"] + [rsa2]), status=200)
    await until_status("JWKS: a key removed from the document", keys["ps-1"].sign(good), 401)
    expect_status(ctx, "JWKS: a key still in the document", await upgrade(srv, headers=bearer(t_rs)), 101)


# --- Origin -------------------------------------------------------------------------------------------

async def case_origin(ctx: Ctx):
    """--allowed-origin (twice): listed origins -> 101, others (other host, scheme, port,
    suffix tricks, 'null') -> 403 with no frame after it, no Origin -> 101; '*' allows any;
    a node without the flag checks nothing."""
    srv = await ctx.start_serve("origin", ctx.bootstrap, "e2e-origin",
                                ["--allowed-origin", "https://app.example.test",
                                 "--allowed-origin", "http://localhost:3000"])
    for origin, want in [("https://app.example.test", 101), ("http://localhost:3000", 101), (None, 101),
                         ("https://evil.example.test", 403), ("http://app.example.test", 403),
                         ("https://app.example.test:8443", 403), ("https://app.example.test.evil.test", 403),
                         ("https://evil-app.example.test", 403), ("http://localhost:3001", 403),
                         ("null", 403)]:
        extra = [] if origin is None else [("Origin", origin)]
        res = await upgrade(srv, headers=extra, keep=True)
        resp, reader, writer = res
        label = f"Origin {origin!r}" if origin is not None else "no Origin"
        expect_status(ctx, label, resp, want)
        if want == 403 and resp is not None and resp.status == 403:
            # nothing WebSocket-like follows the refusal
            eof, data = await wait_eof(reader, 2)
            ctx.expect(not data or data.startswith(b"HTTP/"), f"{label}: bytes after the 403: {data[:20]!r}")
        close_writer(writer)
    # a refused origin cannot reach the bound path either
    expect_status(ctx, "Origin not listed on a bound path",
                  await upgrade(srv, "/v1/ws/e2e.sec.origin", headers=[("Origin", "https://evil.example.test")]), 403)
    # the websockets client with an allowed origin works end to end
    c = await ctx.connect(srv, name="origin-ok", headers={"Origin": "https://app.example.test"})
    r = await publish_one(c, "e2e.sec.origin", {"origin": "ok"})
    ctx.expect(r.get("type") == "ack", f"publish with an allowed origin: {strip(r)}")
    star = await ctx.start_serve("origin-star", ctx.bootstrap, "e2e-origin-star", ["--allowed-origin", "*"])
    for origin in ("https://anything.example.test", "null", "http://localhost:1"):
        expect_status(ctx, f"--allowed-origin '*': Origin {origin!r}", await upgrade(star, headers=[("Origin", origin)]), 101)
    main = await ctx.server("main")
    expect_status(ctx, "no allowlist: any Origin", await upgrade(main, headers=[("Origin", "https://evil.example.test")]), 101)


# --- handshake rules ---------------------------------------------------------------------------------

async def case_handshake_rules(ctx: Ctx):
    """Raw upgrade requests (RFC 6455 4.2.1, RFC 9112): HTTP/1.0, missing/duplicate Host,
    Connection without 'upgrade', Upgrade not websocket, bad/short/long/duplicate/missing
    Sec-WebSocket-Key -> 400; version other than 13 -> 426 with Sec-WebSocket-Version: 13;
    non-GET -> 405; foreign subprotocols only -> 400; comma lists and case-insensitive tokens
    accepted; Sec-WebSocket-Accept right; subprotocol echoed only when offered."""
    srv = await ctx.server("main")
    host = f"127.0.0.1:{srv.port}"
    key16 = ws_key(16)

    async def req(label, want, **kw):
        kw.setdefault("host", host)
        r, _ = upgrade_request(**kw)
        resp = await raw_request(srv, r)
        expect_status(ctx, label, resp, want)
        return resp

    await req("HTTP/1.0 upgrade", 400, http_version="HTTP/1.0")
    await req("no Host", 400, host=None)
    await req("two Host lines", 400, extra=[("Host", "other.example.test")])
    await req("Connection: keep-alive (no upgrade token)", 400, connection="keep-alive")
    await req("no Connection", (400, 426), connection=None)
    await req("Connection: upgraded (not the token)", 400, connection="upgraded")
    await req("Upgrade: h2c", (400, 426), upgrade="h2c")
    await req("Sec-WebSocket-Key not base64", 400, key="not base64 at all!!")
    await req("Sec-WebSocket-Key of 15 bytes", 400, key=ws_key(15))
    await req("Sec-WebSocket-Key of 17 bytes", 400, key=ws_key(17))
    await req("Sec-WebSocket-Key empty", 400, key="")
    await req("no Sec-WebSocket-Key", 400, omit=("sec-websocket-key",))
    await req("two Sec-WebSocket-Key lines", 400, key=key16, extra=[("Sec-WebSocket-Key", ws_key(16))])
    await req("the same Sec-WebSocket-Key twice", 400, key=key16, extra=[("Sec-WebSocket-Key", key16)])
    for v in ("8", "12", "14"):
        resp = await req(f"Sec-WebSocket-Version: {v}", 426, version=v)
        if resp is not None and resp.status == 426:
            vals = [x.strip() for x in (resp.header("sec-websocket-version") or "").split(",")]
            ctx.expect("13" in vals, f"426 for version {v}: Sec-WebSocket-Version {resp.header('sec-websocket-version')!r}")
    await req("Sec-WebSocket-Version: abc", (400, 426), version="abc")
    await req("no Sec-WebSocket-Version", (400, 426), omit=("sec-websocket-version",))
    for m in ("POST", "PUT", "DELETE"):
        await req(f"{m} upgrade", 405, method=m)
    await req("subprotocols chat, v2 only", 400, protocols=("chat", "v2.streamgate"))
    await req("subprotocol STREAMGATE.V1 (tokens are case-sensitive)", 400, protocols=("STREAMGATE.V1",))

    async def ok(label, *, want_proto, **kw):
        kw.setdefault("host", host)
        r, key = upgrade_request(**kw)
        resp = await raw_request(srv, r)
        if not expect_status(ctx, label, resp, 101):
            return
        ctx.expect(resp.header("sec-websocket-accept") == ws_accept(key),
                   f"{label}: Sec-WebSocket-Accept {resp.header('sec-websocket-accept')!r}, expected {ws_accept(key)!r}")
        ctx.expect("websocket" in (resp.header("upgrade") or "").lower(), f"{label}: Upgrade {resp.header('upgrade')!r}")
        ctx.expect("upgrade" in (resp.header("connection") or "").lower(), f"{label}: Connection {resp.header('connection')!r}")
        protos = resp.header_lines("sec-websocket-protocol")
        ctx.expect(protos == ([want_proto] if want_proto else []),
                   f"{label}: Sec-WebSocket-Protocol {protos}, expected {want_proto!r}")

    await ok("plain upgrade", want_proto="streamgate.v1")
    await ok("no subprotocol offered", want_proto=None, protocols=())
    await ok("chat, streamgate.v1", want_proto="streamgate.v1", protocols=("chat", "streamgate.v1"))
    await ok("subprotocols on two header lines", want_proto="streamgate.v1", protocols=("chat",),
             extra=[("Sec-WebSocket-Protocol", "streamgate.v1")])
    await ok("Connection: keep-alive, Upgrade", want_proto="streamgate.v1", connection="keep-alive, Upgrade")
    await ok("Connection: UPGRADE and Upgrade: WebSocket", want_proto="streamgate.v1", connection="UPGRADE",
             upgrade="WebSocket")
    await ok("Host without port", want_proto="streamgate.v1", host="127.0.0.1")
    await ok("HTTP/1.1 with extra headers", want_proto="streamgate.v1",
             extra=[("User-Agent", "e2e"), ("Sec-WebSocket-Extensions", "x-unknown-extension")])
    # an unknown extension offered is not accepted back
    r, key = upgrade_request(host=host, extra=[("Sec-WebSocket-Extensions", "permessage-foo; x=1")])
    resp = await raw_request(srv, r)
    if expect_status(ctx, "unknown extension offered", resp, 101):
        ctx.expect(not resp.header("sec-websocket-extensions"),
                   f"the gateway accepted an unknown extension: {resp.header('sec-websocket-extensions')!r}")
    # the node still serves after all of that
    c = await ctx.connect(srv, name="after-handshakes")
    r = await publish_one(c, "e2e.sec.hs.after", {"ok": 1})
    ctx.expect(r.get("type") == "ack", f"publish after the handshake rules: {strip(r)}")
