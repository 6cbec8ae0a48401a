#!/usr/bin/env python3
"""Streamgate browser suite: the JavaScript client (`/v1/client.js`) and the console page in headless
Chromium, driven over the DevTools protocol.

Starts `streamgate dev-kafka` and `streamgate serve` as processes on 127.0.0.1, a small HTTP server of
its own for the test page (`probe.html`, which imports the client the gateway serves), and Chromium.
Reads what the page saw through `Runtime.evaluate` and compares it with Kafka (confluent-kafka).
Prints PASS/FAIL per case and a closing line `N passed, N failed`; exits 1 if anything failed.

    python3 Tests/e2e-browser/run.py [--binary .build/debug/streamgate] [--keep] [--budget 90]
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import http.server
import json
import pathlib
import secrets
import shutil
import signal
import sys
import threading
import time
import urllib.error
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
STATIC = REPO / "Sources" / "StreamgateServer" / "Static"
DOCS_SCREENSHOT = REPO / "docs" / "console.png"
UPDATE_SCREENSHOT = False  # --update-screenshot: the README's picture is refreshed only when asked
for extra in (REPO / "Tests" / "e2e", REPO / "Tests" / "e2e-cluster"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

import kafkatools  # noqa: E402  (Tests/e2e)
import schemacheck  # noqa: E402  (Tests/e2e)
from browser import Chromium  # noqa: E402  (Tests/e2e-cluster)
from clusterlab import free_ports  # noqa: E402  (Tests/e2e-cluster)
from edgetools import claims, hs_token  # noqa: E402  (Tests/e2e)
from harness import CaseError, Procs, format_exc, run_guarded, private_binary  # noqa: E402  (Tests/e2e)

TOPIC = "streamgate.events"
DOCS_TOPIC = "br.docs"  # the affinity namespace "doc" of the placement case
PARTITIONS = 4
NODE_ID = "browser-1"
# The gateway serves these from the binary (and nothing else of Static/).
ROUTES = {
    "/": ("index.html", "text/html"),
    "/index.html": ("index.html", "text/html"),
    "/console.js": ("console.js", "text/javascript"),
    "/v1/client.js": ("streamgate.js", "text/javascript"),
}


def partition(channel: str) -> int:
    return kafkatools.partition_for(channel, PARTITIONS)


def channel_in(prefix: str, want: int | None = None, avoid: set[int] = frozenset()) -> str:
    """A channel name starting with `prefix` whose partition is `want` (or not in `avoid`)."""
    for i in range(10_000):
        name = f"{prefix}{i}"
        p = partition(name)
        if (want is None or p == want) and p not in avoid:
            return name
    raise CaseError(f"no channel {prefix}* in partition {want}")


def http_get(url: str, timeout: float = 5.0) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


# --- the lab: processes, the page server, the browser ---------------------------------------------

class PageServer:
    """The test's own HTTP server: probe.html and probe.js, plus a copy of the static files for when
    the gateway does not serve them (the static_routes case fails then)."""

    def __init__(self):
        files = {"/probe.html": HERE / "probe.html", "/probe.js": HERE / "probe.js"}
        for route, (name, _) in ROUTES.items():
            files[route] = STATIC / name

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the http.server API)
                path = self.path.split("?", 1)[0]
                f = files.get(path)
                if f is None:
                    self.send_error(404)
                    return
                body = f.read_bytes()
                ctype = "text/html" if f.suffix == ".html" else "text/javascript"
                self.send_response(200)
                self.send_header("Content-Type", f"{ctype}; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Gateway:
    def __init__(self, proc, port: int):
        self.proc = proc
        self.port = port

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"


class Lab:
    def __init__(self, args, workdir: pathlib.Path, binary: str):
        self.args = args
        self.workdir = workdir
        self.binary = binary
        self.procs = Procs(workdir)  # Chromium (browser.py) starts through this too
        self.fails: list[str] = []
        self.notes: list[str] = []
        self.bootstrap: str | None = None
        self.gw: Gateway | None = None
        self.pages: PageServer | None = None
        self.browser: Chromium | None = None
        self.page = None
        self.client_url: str | None = None  # what probe.html imports
        self.routes_ok = False
        self.wire_seen = 0
        self.client_frames = schemacheck.validator_for("client-frame.json")
        self.server_frames = schemacheck.validator_for("server-frame.json")
        self.headers_schema = schemacheck.validator_for("kafka-record-headers.json")

    def expect(self, cond, msg: str) -> bool:
        if not cond:
            self.fails.append(msg)
        return bool(cond)

    async def start_kafka(self):
        proc = await self.procs.start("dev-kafka", [self.binary, "dev-kafka", "--broker-count", "1",
                                                    "--partitions", str(PARTITIONS),
                                                    "--topic", f"{DOCS_TOPIC}:{PARTITIONS}"])
        line = await proc.wait_line(lambda l: l.strip() != "", 30)
        if not all(":" in hp for hp in line.strip().split(",")):
            raise CaseError(f"dev-kafka's first line is not a bootstrap list: {line!r}")
        self.bootstrap = line.strip()

    async def start_gateway(self, name: str, port: int = 0, extra=(), node_id: str = NODE_ID) -> Gateway:
        argv = [self.binary, "serve", "--brokers", self.bootstrap, "--host", "127.0.0.1", "--port", str(port),
                "--node-id", node_id, *extra]
        proc = await self.procs.start(name, argv)
        line = await proc.wait_line(lambda l: l.startswith("listening on "), 30)
        gw = Gateway(proc, int(line.rsplit(":", 1)[1]))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                status, _, _ = await asyncio.to_thread(http_get, gw.http + "/readyz", 2)
                if status == 200:
                    return gw
            except OSError:
                pass
            if not proc.alive:
                break
            await asyncio.sleep(0.1)
        raise CaseError(f"{name}: /readyz not 200 (alive={proc.alive}): {proc.tail(4)}")

    async def js(self, expression: str, timeout: float = 30):
        return await self.page.evaluate(expression, timeout)

    async def call(self, fn: str, *args, timeout: float = 30):
        """probe.<fn>(...args) in the page (a promise is awaited)."""
        a = ", ".join(json.dumps(x) for x in args)
        return await self.js(f"window.probe.{fn}({a})", timeout)

    async def wait_js(self, expression: str, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while True:
            value = await self.js(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise CaseError(f"{what}: not within {timeout}s")
            await asyncio.sleep(0.1)

    async def new_wire(self) -> list[dict]:
        """Frames the page's sockets sent and received since the last call."""
        items = await self.call("wireLog", self.wire_seen)
        self.wire_seen += len(items)
        with open(self.workdir / "wire.jsonl", "a") as log:  # for reading after a failure (--keep)
            for w in items:
                log.write(json.dumps(w) + "\n")
        return items

    def check_frames(self, wire: list[dict], label: str):
        """Every frame the client sent is a valid client frame; every frame it got a valid server frame."""
        bad = []
        for w in wire:
            if w["dir"] not in ("in", "out"):
                continue
            try:
                frame = json.loads(w["text"])
            except ValueError:
                bad.append(f"{w['dir']} not JSON: {w['text'][:80]}")
                continue
            v = self.client_frames if w["dir"] == "out" else self.server_frames
            problem = schemacheck.describe(v, frame)
            if problem:
                bad.append(f"{w['dir']} {w['text'][:120]}: {problem[:160]}")
        self.expect(not bad, f"{label}: {len(bad)} frames off the schemas; first: {bad[:2]}")


def kafka_records(lab: Lab, p: int, start: int = 0, key: str | None = None, topic: str = TOPIC) -> list[kafkatools.Rec]:
    recs = kafkatools.read_range(lab.bootstrap, topic, p, start, None, 30)
    return [r for r in recs if key is None or r.key == key.encode()]


def msg_id(rec: kafkatools.Rec) -> str | None:
    return rec.header_map().get("sg-msg-id")


# --- cases ------------------------------------------------------------------------------------------

async def case_static_routes(lab: Lab):
    """GET /, /index.html, /console.js and /v1/client.js from the gateway: 200, the content types, and the
    bytes of Sources/StreamgateServer/Static/ (index.html, console.js, streamgate.js)."""
    problems = []
    served = set()
    for route, (name, ctype) in ROUTES.items():
        status, headers, body = await asyncio.to_thread(http_get, lab.gw.http + route)
        if status != 200:
            problems.append(f"{route}: {status}")
            continue
        got = headers.get("content-type", "")
        if not got.startswith(ctype):
            problems.append(f"{route}: Content-Type {got!r}, expected {ctype}")
        elif body != (STATIC / name).read_bytes():
            problems.append(f"{route}: {len(body)} bytes that differ from Static/{name} (a binary built before the "
                            f"last change of the file?)")
        else:
            served.add(route)
    status, _, _ = await asyncio.to_thread(http_get, lab.gw.http + "/v1/client.d.ts")
    if status == 200:
        problems.append("/v1/client.d.ts is served (only the three static files should be)")
    # the page imports the gateway's client, and the console comes from the gateway, when they are served right
    lab.routes_ok = {"/", "/console.js", "/v1/client.js"} <= served
    if problems:
        lab.fails.append("; ".join(problems))


async def case_page_loads(lab: Lab):
    """probe.html (the test's origin) imports the client from the gateway's /v1/client.js (cross-origin
    module import) and finds its exports."""
    lab.browser = Chromium(lab, "")
    await lab.browser.start()
    if lab.routes_ok:
        lab.client_url = lab.gw.http + "/v1/client.js"
    else:
        lab.client_url = lab.pages.origin + "/v1/client.js"
        lab.notes.append("the gateway does not serve the static files as they are: the pages use a copy of "
                         "Static/ from the test's server")
    lab.page = await lab.browser.open_page(f"{lab.pages.origin}/probe.html?client={lab.client_url}")
    ready = await lab.wait_js("window.probeReady", 15, "probe.html loading the client")
    if not ready.get("ok") and lab.routes_ok:
        # the other cases go on with the test server's copy; this one fails
        lab.fails.append(f"a page on {lab.pages.origin} cannot import {lab.client_url}: {ready.get('error')} "
                         f"(Access-Control-Allow-Origin on /v1/client.js?)")
        lab.client_url = lab.pages.origin + "/v1/client.js"
        await lab.page.navigate(f"{lab.pages.origin}/probe.html?client={lab.client_url}")
        ready = await lab.wait_js("window.probeReady", 15, "probe.html loading the client")
    if not ready.get("ok"):
        lab.page = None
        raise CaseError(f"importing {lab.client_url}: {ready.get('error')}")
    want = {"Streamgate", "StreamgateError", "StreamgateEvent", "CloseCode", "connect", "default", "namespaceOf"}
    lab.expect(want <= set(ready["exports"]), f"client exports {ready['exports']}, expected at least {sorted(want)}")


async def case_publish_ack(lab: Lab):
    """publish() resolves with the ack {partition, offset} once Kafka stored it; in publish order; every
    acked offset holds the value as sent, key = channel, headers sg-msg-id (the automatic msgId or the
    given one), content-type, sg-sender; binary data goes as data_b64."""
    ch = "br.order"
    lab.shared_order = ch
    opts = {"backoff": {"min": 100, "max": 800}}
    await lab.call("open", "pub", lab.gw.ws, opts)
    state = await lab.call("connect", "pub")
    lab.expect(state == "open", f"connect() resolved with state {state}")
    items = [{"data": {"n": i, "text": "héllo ✓", "list": [1, 2.5, None, True]}} for i in range(18)]
    items.append({"data": "a plain string", "msgId": "br-given-msgid-1"})
    items.append({"binary": [0, 1, 2, 250, 255]})
    answers = await lab.call("publishAll", "pub", ch, items)
    errors = [a for a in answers if "error" in a]
    if errors:
        raise CaseError(f"{len(errors)} publishes rejected; first: {errors[0]}")
    acks = [a["ack"] for a in answers]
    p = partition(ch)
    lab.expect(all(a["partition"] == p and a["channel"] == ch for a in acks),
               f"acks name partitions {sorted({a['partition'] for a in acks})}, expected {p} (murmur2)")
    offsets = [a["offset"] for a in acks]
    lab.expect(offsets == sorted(offsets) and len(set(offsets)) == len(offsets),
               f"acks not in publish order: {offsets}")
    lab.expect(acks[18]["msgId"] == "br-given-msgid-1", f"the given msgId came back as {acks[18]['msgId']}")
    auto = [a["msgId"] for a in acks[:18] + acks[19:]]
    lab.expect(all(isinstance(m, str) and len(m) == 36 and m[14] == "4" for m in auto) and len(set(auto)) == len(auto),
               f"automatic msgIds are not distinct UUIDs v4: {auto[:3]}")
    recs = {r.offset: r for r in await asyncio.to_thread(kafka_records, lab, p, min(offsets))}
    wire = await lab.new_wire()
    lab.check_frames(wire, "publish_ack")
    sent = {}
    for w in wire:
        if w["dir"] == "out":
            f = json.loads(w["text"])
            if f.get("type") == "publish":
                sent[f["msgId"]] = w["text"]
    for item, ack in zip(items, acks):
        r = recs.get(ack["offset"])
        if not lab.expect(r is not None, f"acked offset {ack['offset']} not in Kafka"):
            continue
        h = r.header_map()
        if "binary" in item:
            want_value, want_type = bytes(item["binary"]), "application/octet-stream"
        else:
            # the JSON text exactly as the client put it in its frame
            frame_text = sent.get(ack["msgId"], "")
            want_value = json.dumps(item["data"], ensure_ascii=False, separators=(",", ":")).encode()
            lab.expect(want_value.decode() in frame_text, f"frame {frame_text[:120]} does not carry {want_value!r}")
            want_type = "application/json"
        lab.expect(r.key == ch.encode() and r.value == want_value and h.get("sg-msg-id") == ack["msgId"]
                   and h.get("content-type") == want_type and h.get("sg-sender") == "anonymous"
                   and h.get("sg-node") == NODE_ID,
                   f"offset {ack['offset']}: key {r.key!r} value {r.value[:60]!r} headers {h}; expected value "
                   f"{want_value[:60]!r}, msgId {ack['msgId']}, {want_type}")
        problem = schemacheck.describe(lab.headers_schema, h)
        lab.expect(problem is None, f"record headers {h}: {problem}")
    lab.order_acks = acks


async def case_subscribe_order(lab: Lab):
    """subscribe() from "earliest", an offset and a time: each receives exactly the channel's records
    from there, in offset order, each once (compared with Kafka), including a record another Kafka
    producer wrote and binary data; then the live stream, and unsubscribe stops it."""
    ch = lab.shared_order
    p = partition(ch)
    acks = lab.order_acks
    await lab.call("open", "sub", lab.gw.ws, {"backoff": {"min": 100, "max": 800}})
    info = await lab.call("subscribe", "sub", ch, "earliest")
    lab.expect(info.get("partition") == p and info.get("recovered") is True,
               f"subscribed {info}, expected partition {p}, recovered true")
    # a record from an independent producer (no content-type): delivered as data
    await asyncio.to_thread(kafkatools.produce, lab.bootstrap, TOPIC,
                            [{"key": ch, "value": b'{"from":"kafka"}'}], 20.0)
    live = await lab.call("publishAll", "pub", ch, [{"data": {"live": i}} for i in range(5)])
    end = live[-1]["ack"]["offset"] + 1
    await lab.wait_js(f"window.probe.records('sub', {json.dumps(ch)}).some(r => r.offset === {end - 1})", 15,
                      "the subscriber receiving the live records")
    kafka = await asyncio.to_thread(kafka_records, lab, p, 0, ch)
    want = [r.offset for r in kafka if r.offset < end]
    got = await lab.call("records", "sub", ch)
    lab.expect([g["offset"] for g in got] == want,
               f"earliest: offsets {[g['offset'] for g in got][:40]} vs Kafka {want[:40]}")
    by_offset = {r.offset: r for r in kafka}
    wrong = []
    for g in got:
        r = by_offset.get(g["offset"])
        if r is None:
            continue
        if g["binary"]:
            ok = bytes(g["data"]["bytes"]) == r.value
        else:
            ok = json.dumps(g["data"], ensure_ascii=False, separators=(",", ":")).encode() == r.value \
                or g["data"] == json.loads(r.value)
        if not ok or g["partition"] != p or g["msgId"] != msg_id(r):
            wrong.append((g["offset"], g["data"], r.value[:60]))
    lab.expect(not wrong, f"{len(wrong)} records differ from Kafka; first: {wrong[:2]}")
    lab.expect(any(g.get("data") == {"from": "kafka"} and g.get("msgId") is None for g in got),
               "the record written by confluent-kafka did not arrive as data")
    # from an offset, and from a time
    mid = acks[10]["offset"]
    await lab.call("open", "sub-offset", lab.gw.ws, {})
    info2 = await lab.call("subscribe", "sub-offset", ch, mid)
    lab.expect(info2.get("offset") == mid and info2.get("recovered") is True, f"from offset {mid}: {info2}")
    t_rec = by_offset[acks[14]["offset"]]
    first_by_time = next(r.offset for r in kafka if r.ts >= t_rec.ts)
    await lab.call("open", "sub-time", lab.gw.ws, {})
    await lab.js(f"window.probe.subscribe('sub-time', {json.dumps(ch)}, {{time: new Date({t_rec.ts})}})")
    await lab.wait_js(f"window.probe.count('sub-offset', {json.dumps(ch)}) >= {len([o for o in want if o >= mid])}"
                      f" && window.probe.count('sub-time', {json.dumps(ch)}) >= "
                      f"{len([o for o in want if o >= first_by_time])}", 15, "the offset and time subscribers")
    got_mid = [g["offset"] for g in await lab.call("records", "sub-offset", ch)]
    got_time = [g["offset"] for g in await lab.call("records", "sub-time", ch)]
    want_mid = [o for o in want if o >= mid]
    lab.expect(got_mid == want_mid, f"from offset {mid}: {got_mid} vs {want_mid}")
    lab.expect(got_time == [o for o in want if o >= first_by_time],
               f"from time {t_rec.ts} ms: {got_time} vs {[o for o in want if o >= first_by_time]}")
    # unsubscribe: nothing more arrives
    await lab.call("unsubscribe", "sub-offset", ch)
    n_before = await lab.call("count", "sub-offset", ch)
    more = await lab.call("publishAll", "pub", ch, [{"data": {"after": "unsubscribe"}}])
    after_offset = more[0]["ack"]["offset"]
    await lab.wait_js(f"window.probe.records('sub', {json.dumps(ch)}).some(r => r.offset === {after_offset})",
                      10, "the live record after the unsubscribe")
    lab.expect(await lab.call("count", "sub-offset", ch) == n_before, "records arrived after unsubscribe()")
    ch_info = await lab.call("info", "sub-offset")
    lab.expect(ch not in ch_info["channels"], f"after unsubscribe, channels {ch_info['channels']}")
    wire = await lab.new_wire()
    lab.check_frames(wire, "subscribe_order")
    subs = [json.loads(w["text"]) for w in wire if w["dir"] == "out" and '"subscribe"' in w["text"]]
    froms = sorted(json.dumps(f.get("from"), sort_keys=True) for f in subs)
    lab.expect(any('"time"' in f for f in froms) and f'{{"offset": {mid}}}' in froms and '"earliest"' in froms,
               f"subscribe frames' from values: {froms}")
    for name in ("sub-offset", "sub-time"):
        await lab.call("close", name)


async def case_kill_resume(lab: Lab):
    """SIGKILL of the gateway (after 0.25 s of SIGSTOP, so that publishes are certainly in flight) while a
    client publishes ~600/s and another subscribes; a restart on the same port with the same Kafka: both
    reconnect; the subscriber resumes at last_received + 1 (partition given) with no gap and no duplicate
    against Kafka; every publish is acked, those unanswered at the kill were sent again with the same
    msgId and data; acks stay in publish order. A second channel whose position retention removed while
    the gateway was down resumes with a `gap` event."""
    live = channel_in("br.live.")
    p_live = partition(live)
    gapch = channel_in("br.gap.", avoid={p_live})
    p_gap = partition(gapch)
    filler = channel_in("br.fill.", want=p_gap)
    lab.gap_channel = gapch
    for name in ("k-pub", "k-sub"):
        await lab.call("open", name, lab.gw.ws, {"backoff": {"min": 100, "max": 800}})
        await lab.call("connect", name)
    info_live = await lab.call("subscribe", "k-sub", live, "latest")
    await lab.call("subscribe", "k-sub", gapch, "latest")
    pre = await lab.call("publishAll", "k-pub", gapch, [{"data": {"g": i}} for i in range(3)])
    await lab.wait_js(f"window.probe.count('k-sub', {json.dumps(gapch)}) === 3", 10, "3 records on the gap channel")
    _, high_before = await asyncio.to_thread(kafkatools.watermarks, lab.bootstrap, TOPIC, p_live)
    await lab.new_wire()  # start the wire log of this case here
    await lab.call("startFlood", "k-pub", live, 10, 6)
    await asyncio.sleep(0.8)
    # stopped first, so that publishes are certainly in flight (sent, unanswered) when it dies
    lab.gw.proc.send_signal(signal.SIGSTOP)
    await asyncio.sleep(0.25)
    lab.gw.proc.kill_now()
    killed_at = time.monotonic()
    await lab.gw.proc.wait_exit(5)
    await asyncio.sleep(0.3)
    total = await lab.call("stopFlood", "k-pub")
    before_kill = await lab.call("info", "k-sub")
    next_gap = before_kill["subscriptions"][gapch]["next"]
    # retention while the gateway is down: ~6 MiB on the gap channel's partition
    low = 0
    pad = b"x" * 100_000
    for _ in range(4):
        await asyncio.to_thread(kafkatools.produce, lab.bootstrap, TOPIC,
                                [{"key": filler, "value": pad} for _ in range(30)], 30.0, {"linger.ms": 5})
        low, _ = await asyncio.to_thread(kafkatools.watermarks, lab.bootstrap, TOPIC, p_gap)
        if low > next_gap:
            break
    if low <= next_gap:
        raise CaseError(f"dev Kafka did not prune {TOPIC}/{p_gap} past {next_gap} (log start {low})")
    lab.gw = await lab.start_gateway("gateway-restarted", lab.gw.port)
    down_for = time.monotonic() - killed_at
    await lab.wait_js(f"window.probe.flood('k-pub').settled === {total}", 30, f"all {total} publishes answered")
    post = await lab.call("publishAll", "k-pub", gapch, [{"data": {"g": 3 + i}} for i in range(2)])
    flood = await lab.call("flood", "k-pub")
    _, high = await asyncio.to_thread(kafkatools.watermarks, lab.bootstrap, TOPIC, p_live)
    kafka = await asyncio.to_thread(kafka_records, lab, p_live, high_before, live)
    await lab.wait_js(f"window.probe.count('k-sub', {json.dumps(live)}) >= {len(kafka)}", 20,
                      f"the subscriber receiving all {len(kafka)} records of {live}")
    await lab.wait_js(f"window.probe.count('k-sub', {json.dumps(gapch)}) >= 5", 15, "the gap channel's new records")
    wire = await lab.new_wire()
    lab.check_frames(wire, "kill_resume")

    # publishes: all acked, in order, the acked offset holds the msgId
    pubs = flood["pubs"]
    errors = [x for x in pubs if x["error"]]
    lab.expect(not errors, f"{len(errors)} of {total} publishes rejected; first: {errors[:1]}")
    acked = [x for x in pubs if x["ack"]]
    offs = [x["ack"]["offset"] for x in sorted(acked, key=lambda x: x["n"])]
    lab.expect(all(a < b for a, b in zip(offs, offs[1:])), "acks not in publish order after the restart")
    by_offset = {r.offset: r for r in kafka}
    wrong = [x["msgId"] for x in acked
             if x["ack"]["offset"] not in by_offset or msg_id(by_offset[x["ack"]["offset"]]) != x["msgId"]]
    lab.expect(not wrong, f"{len(wrong)} acked offsets do not hold their publish's msgId; first {wrong[:2]}")
    # on the wire: which publishes went twice, with which msgId and data
    sends = collections.defaultdict(list)  # msgId -> [(socket, data text)]
    for w in wire:
        if w["dir"] == "out" and '"publish"' in w["text"]:
            f = json.loads(w["text"])
            if f.get("type") == "publish" and f.get("channel") == live:
                sends[f["msgId"]].append((w["socket"], json.dumps(f.get("data"), sort_keys=True)))
    retried = {m for m, s in sends.items() if len(s) > 1}
    lab.expect(retried, f"no publish was unanswered at the kill ({total} publishes): nothing retried, the case "
                        f"tested nothing")
    odd = [m for m in retried if len({s for s, _ in sends[m]}) != len(sends[m]) or len({d for _, d in sends[m]}) != 1]
    lab.expect(not odd, f"retries on the same socket or with other data: {odd[:2]}")
    missing = [x["msgId"] for x in pubs if x["msgId"] not in sends]
    lab.expect(not missing, f"{len(missing)} publishes never sent")
    in_kafka = collections.Counter(msg_id(r) for r in kafka)
    lost = [x["msgId"] for x in pubs if in_kafka[x["msgId"]] == 0]
    lab.expect(not lost, f"{len(lost)} publishes not in Kafka")
    dup = {m: c for m, c in in_kafka.items() if c > 1}
    lab.expect(all(m in retried for m in dup), f"msgIds stored twice that were sent once: "
                                               f"{[m for m in dup if m not in retried][:3]}")
    lab.notes.append(f"kill_resume: {total} publishes, {len(retried)} unanswered at the kill and sent again with "
                     f"their msgId; {len(dup)} of those are stored twice (persisted before the kill but not acked, "
                     f"then stored again: the gateway does not deduplicate by msgId); gateway down {down_for:.1f}s")

    # the subscriber: exactly Kafka's records from its start, once each
    got = await lab.call("records", "k-sub", live)
    want = [r.offset for r in kafka if r.offset >= info_live["offset"]]
    got_offsets = [g["offset"] for g in got]
    lab.expect(got_offsets == want, f"subscriber of {live}: {len(got_offsets)} records vs Kafka's {len(want)}; "
                                    f"dups {len(got_offsets) - len(set(got_offsets))}, "
                                    f"missing {sorted(set(want) - set(got_offsets))[:5]}, "
                                    f"extra {sorted(set(got_offsets) - set(want))[:5]}")
    # its resume on the wire: subscribe {offset: last on the old socket + 1, partition}
    sub_sockets = collections.defaultdict(list)
    for w in wire:
        if w["dir"] == "in" and '"message"' in w["text"]:
            f = json.loads(w["text"])
            if f.get("channel") == live:
                sub_sockets[w["socket"]].append(f["offset"])
    resumes = [json.loads(w["text"]) for w in wire if w["dir"] == "out" and '"subscribe"' in w["text"]
               and json.loads(w["text"]).get("channel") == live]
    first_socket = min(sub_sockets) if sub_sockets else None
    if lab.expect(first_socket is not None and resumes, f"no resume subscribe for {live} on the wire"):
        last = max(sub_sockets[first_socket])
        lab.expect(resumes[-1].get("from") == {"offset": last + 1, "partition": p_live},
                   f"resume frame {resumes[-1]}, expected from {{offset: {last + 1}, partition: {p_live}}}")
    events = await lab.call("events", "k-sub")
    kinds = collections.Counter(e["type"] for e in events)
    lab.expect(kinds["reconnecting"] >= 1 and any(e["type"] == "open" and e["detail"]["reconnected"] for e in events),
               f"subscriber events: {dict(kinds)}")
    resumed = [e["detail"] for e in events if e["type"] == "subscribed" and e["detail"]["channel"] == live
               and e["detail"]["resumed"]]
    lab.expect(resumed and resumed[-1]["recovered"] is True, f"resumed subscription of {live}: {resumed[-1:]}")

    # the gap channel: resumed where retention left off, announced
    gaps = [e["detail"] for e in events if e["type"] == "gap" and e["detail"]["channel"] == gapch]
    lab.expect(len(gaps) == 1 and gaps[0]["from"] == next_gap and gaps[0]["to"] == low
               and gaps[0]["reason"] == "retention" and gaps[0]["partition"] == p_gap,
               f"gap events of {gapch}: {gaps}; expected one {{from: {next_gap}, to: {low}, reason: retention}}")
    gap_recs = await lab.call("records", "k-sub", gapch)
    want_gap = [a["offset"] for a in (x["ack"] for x in pre)] + [x["ack"]["offset"] for x in post]
    lab.expect([g["offset"] for g in gap_recs] == want_gap, f"{gapch}: {[g['offset'] for g in gap_recs]} vs {want_gap}")
    st = (await lab.call("info", "k-sub"))["stats"]
    lab.expect(st["duplicatesDropped"] == 0,
               f"the client dropped {st['duplicatesDropped']} duplicates the gateway sent")


async def case_auth(lab: Lab):
    """A gateway with HS256 tokens: a token function is called at each connect and `authed` arrives; a
    token about to expire is refreshed on the open connection; the record's sg-sender is the token's sub.
    A refused static token ends in `auth_failed` after one attempt; a token function after three."""
    secret = secrets.token_hex(32).encode()
    path = lab.workdir / "jwt-secret"
    path.write_bytes(secret)
    gw = await lab.start_gateway("gateway-auth", 0, ["--jwt-secret-file", str(path)])
    try:
        everything = {"sub": ["*"], "pub": ["*"]}
        short = hs_token(secret, claims("alice", exp_in=4, channels=everything))
        longer = hs_token(secret, claims("alice", exp_in=300, channels=everything))
        await lab.call("open", "auth-ok", gw.ws, {"tokens": [short, longer], "refreshAhead": 30000})
        await lab.call("connect", "auth-ok")
        ch = "br.auth"
        ans = await lab.call("publishAll", "auth-ok", ch, [{"data": {"who": "alice"}}])
        ack = ans[0].get("ack")
        if lab.expect(ack is not None, f"publish with a token: {ans[0]}"):
            recs = {r.offset: r for r in await asyncio.to_thread(kafka_records, lab, partition(ch), ack["offset"])}
            r = recs.get(ack["offset"])
            lab.expect(r is not None and r.header_map().get("sg-sender") == "alice",
                       f"sg-sender of the record: {r.header_map() if r else None}")
        await asyncio.sleep(4.5)  # past the first token's exp: refreshed at about half its lifetime
        info = await lab.call("info", "auth-ok")
        events = await lab.call("events", "auth-ok")
        authed = [e for e in events if e["type"] == "authed"]
        closes = [e["detail"] for e in events if e["type"] == "close"]
        lab.expect(len(authed) >= 2 and not closes and info["state"] == "open" and info["tokenCalls"] == 2,
                   f"refresh: {len(authed)} authed, closes {closes}, state {info['state']}, token calls "
                   f"{info['tokenCalls']}")
        wire = await lab.new_wire()
        auths = [json.loads(w["text"]) for w in wire if w["dir"] == "out" and '"auth"' in w["text"]]
        lab.expect([a.get("token") for a in auths[:2]] == [short, longer],
                   "auth frames do not carry the tokens in turn")
        lab.check_frames(wire, "auth")

        bad = hs_token(b"not-the-secret-" * 4, claims("mallory", channels=everything))
        await lab.call("open", "auth-static", gw.ws, {"token": bad, "backoff": {"min": 100, "max": 200}})
        await lab.call("open", "auth-fn", gw.ws, {"tokens": [bad], "backoff": {"min": 100, "max": 200}})
        res = await lab.js("Promise.all(['auth-static', 'auth-fn'].map(n => window.probe.connect(n).then("
                           "s => 'resolved ' + s, e => e.code)))", 20)
        lab.expect(res == ["auth_failed", "auth_failed"], f"connect() with refused tokens: {res}")
        await asyncio.sleep(1.0)  # nothing more after giving up
        for name, attempts in (("auth-static", 1), ("auth-fn", 3)):
            ev = await lab.call("events", name)
            n = sum(1 for e in ev if e["type"] == "close")
            codes = sorted({e["detail"]["code"] for e in ev if e["type"] == "close"})
            lab.expect(n == attempts and codes == [4001], f"{name}: {n} connections closed with {codes}, "
                                                          f"expected {attempts} with 4001")
            lab.expect(any(e["type"] == "error" and e["detail"]["error"]["code"] == "auth_failed" for e in ev),
                       f"{name}: no auth_failed error event")
        for name in ("auth-ok", "auth-static", "auth-fn"):
            await lab.call("close", name)
        await lab.new_wire()
    finally:
        await gw.proc.stop()


async def case_placement(lab: Lab):
    """Affinity channels on two nodes with etcd placement: a client that does not know the namespace is
    affinity subscribes on /v1/ws, gets `moved`, learns it and follows to the bound URL; a client told
    `affinity: ["doc"]` asks GET /v1/locate first and opens only the owner's bound connection. A drain
    (SIGTERM) of the owner sends `moved` + 4302: the client reconnects where it was sent with
    ?from=last_received+1 and loses and repeats nothing (compared with Kafka)."""
    etcd_port, peer_port, port_a, port_b = free_ports(4)
    etcd_dir = lab.workdir / "etcd"
    etcd = await lab.procs.start("etcd", ["bash", str(REPO / "ops" / "etcd" / "start.sh"), "--data-dir", str(etcd_dir),
                                         "--client-port", str(etcd_port), "--peer-port", str(peer_port)])
    etcd_url = f"http://127.0.0.1:{etcd_port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            st, _, body = await asyncio.to_thread(http_get, etcd_url + "/health", 2)
            if st == 200 and json.loads(body).get("health") == "true":
                break
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline or not etcd.alive:
            raise CaseError(f"etcd not healthy (alive={etcd.alive}): {etcd.tail(3)}")
        await asyncio.sleep(0.2)
    cfg = lab.workdir / "placement.json"
    cfg.write_text(json.dumps({"namespaces": {"doc": {"topic": DOCS_TOPIC, "mode": "affinity"},
                                              "": {"topic": TOPIC, "mode": "fanout"}}}))
    nodes = {}
    for name, port in (("br-a", port_a), ("br-b", port_b)):
        nodes[name] = await lab.start_gateway(f"node-{name}", port, [
            "--etcd", etcd_url, "--public-url", f"ws://127.0.0.1:{port}", "--config", str(cfg), "--lease-ttl", "4"],
            node_id=name)
    a, b = nodes["br-a"], nodes["br-b"]
    # wait until every affinity partition has an owner and both nodes own some
    deadline = time.monotonic() + 20
    while True:
        st, _, body = await asyncio.to_thread(http_get, a.http + "/v1/cluster", 3)
        snap = json.loads(body) if st == 200 else {}
        owning = {n["id"] for n in snap.get("nodes", []) if n.get("partitions")}
        if st == 200 and not snap.get("unowned") and owning == {"br-a", "br-b"}:
            break
        if time.monotonic() > deadline:
            raise CaseError(f"placement did not settle: /v1/cluster {st} {body[:300]!r}")
        await asyncio.sleep(0.2)

    async def owner(channel):
        st, _, body = await asyncio.to_thread(http_get, f"{a.http}/v1/locate/{channel}", 3)
        if st != 200:
            raise CaseError(f"locate {channel}: {st} {body[:100]!r}")
        return json.loads(body)

    on_a = on_b = None
    for i in range(200):
        loc = await owner(f"doc:{i}")
        if loc["node"] == "br-a" and on_a is None:
            on_a = (f"doc:{i}", loc)
        if loc["node"] == "br-b" and on_b is None:
            on_b = (f"doc:{i}", loc)
        if on_a and on_b:
            break
    if not (on_a and on_b):
        raise CaseError("no doc: channel owned by each node")
    learn_ch, locate_ch = on_a[0], on_b[0]
    opts = {"backoff": {"min": 100, "max": 500}}
    await lab.call("open", "aff-learn", a.ws, opts)
    await lab.call("open", "aff-locate", a.ws, {**opts, "affinity": ["doc"]})
    # 1. moved on /v1/ws, learnt, followed
    info = await lab.call("subscribe", "aff-learn", learn_ch, "earliest")
    lab.expect(info.get("recovered") is True, f"subscribed after moved: {info}")
    ev = await lab.call("events", "aff-learn")
    moved = [e["detail"] for e in ev if e["type"] == "moved"]
    lab.expect(moved and moved[0]["channel"] == learn_ch and moved[0]["url"] == on_a[1]["url"],
               f"moved events {moved}, expected one for {learn_ch} to {on_a[1]['url']}")
    st = await lab.call("info", "aff-learn")
    lab.expect(st["affinity"] == ["doc"], f"namespaces learnt: {st['affinity']}")
    # 2. located first, only the bound connection
    info2 = await lab.call("subscribe", "aff-locate", locate_ch, "latest")
    start = info2.get("offset")
    wire = await lab.new_wire()
    opened = [w for w in wire if w["dir"] == "open" and w["client"] == "aff-locate"]
    lab.expect([w["url"] for w in opened] == [on_b[1]["url"] + "?from=latest"],
               f"aff-locate opened {[w['url'] for w in opened]}, expected only {on_b[1]['url']}?from=latest")
    # publishes of both channels through bound connections, before and after the owner of one drains
    first = await lab.call("publishAll", "aff-learn", locate_ch, [{"data": {"k": i}} for i in range(3)])
    first += await lab.call("publishAll", "aff-learn", learn_ch, [{"data": {"mine": 1}}])
    lab.expect(all("ack" in x for x in first),
               f"publishes on affinity channels: {[x for x in first if 'ack' not in x][:2]}")
    await lab.wait_js(f"window.probe.count('aff-locate', {json.dumps(locate_ch)}) >= 3", 10, "3 records via locate")
    b.proc.send_signal(signal.SIGTERM)
    rc = await b.proc.wait_exit(15)
    lab.expect(rc == 0, f"the drained node exited with {rc}")
    await lab.wait_js("window.probe.events('aff-locate').some(e => e.type === 'subscribed' && e.detail.resumed)", 20,
                      "aff-locate resubscribed after the hand-off")
    later = await lab.call("publishAll", "aff-learn", locate_ch, [{"data": {"k": 3 + i}} for i in range(3)])
    lab.expect(all("ack" in x for x in later),
               f"publishes after the hand-off: {[x for x in later if 'ack' not in x][:2]}")
    await lab.wait_js(f"window.probe.count('aff-locate', {json.dumps(locate_ch)}) >= 6", 15,
                      "6 records across the hand-off")
    wire = await lab.new_wire()
    lab.check_frames(wire, "placement")
    ev = await lab.call("events", "aff-locate")
    moved = [e["detail"] for e in ev if e["type"] == "moved"]
    closes = [e["detail"]["code"] for e in ev if e["type"] == "close"]
    got = await lab.call("records", "aff-locate", locate_ch)
    p = kafkatools.partition_for(locate_ch, PARTITIONS)
    kafka = [r.offset for r in await asyncio.to_thread(kafka_records, lab, p, start, locate_ch, DOCS_TOPIC)]
    lab.expect([g["offset"] for g in got] == kafka, f"{locate_ch} across the hand-off: {[g['offset'] for g in got]} vs "
                                                   f"Kafka {kafka}")
    lab.expect(moved and moved[0].get("offset") is not None and 4302 in closes,
               f"hand-off seen as moved {moved} and closes {closes}")
    if moved:
        last_before = max(g["offset"] for g in got[:3]) if len(got) >= 3 else None
        reopened = [w["url"] for w in wire if w["dir"] == "open" and w["client"] == "aff-locate"]
        lab.expect(moved[0].get("offset") == last_before + 1 and reopened
                   and reopened[0].startswith(f"ws://127.0.0.1:{port_a}/v1/ws/{locate_ch}?from={last_before + 1}"),
                   f"after moved {moved[0]}: reopened {reopened}, expected ?from={last_before + 1} on br-a")
    # aff-learn's bound connection to locate_ch was opened for publishing (from latest): a subscription from
    # earliest reopens it at its own start
    await lab.call("subscribe", "aff-learn", locate_ch, "earliest")
    every = [r.offset for r in await asyncio.to_thread(kafka_records, lab, p, 0, locate_ch, DOCS_TOPIC)]
    await lab.wait_js(f"window.probe.count('aff-learn', {json.dumps(locate_ch)}) >= {len(every)}", 10,
                      f"aff-learn's {len(every)} records of {locate_ch} from earliest")
    got_all = [g["offset"] for g in await lab.call("records", "aff-learn", locate_ch)]
    lab.expect(got_all == every, f"subscribing from earliest on a publishing bound connection: {got_all} vs {every}")
    lab.notes.append(f"placement: {learn_ch} on br-a (moved, learnt), {locate_ch} on br-b (located) handed to "
                     f"br-a; closes seen {closes}")
    for name in ("aff-learn", "aff-locate"):
        await lab.call("close", name)
    await a.proc.stop()
    await etcd.stop()



async def case_console(lab: Lab):
    """The console page (served by the gateway at /): connect, subscribe, publish from its form; its log
    shows the records with partition/offset, a gap (subscribing below the log start kill_resume's
    retention left) and a reconnect after a drain (SIGTERM, 1001) and restart; a screenshot is a PNG of
    real size (kept in docs/console.png)."""
    gapch = getattr(lab, "gap_channel", None)
    if gapch is None:
        raise CaseError("needs the partition kill_resume pruned (run kill_resume first)")
    origin = lab.gw.http if lab.routes_ok else lab.pages.origin
    url = f"{origin}/" if lab.routes_ok else f"{origin}/?url={lab.gw.ws}"
    page = await lab.browser.open_page(url)
    try:
        await lab.browser.send("Emulation.setDeviceMetricsOverride",
                               {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False},
                               session=page.session)
        ready = await page.evaluate("new Promise(r => { const t = Date.now(); (function w() { "
                                    "if (window.consoleReady || Date.now() - t > 10000) r(!!window.consoleReady); "
                                    "else setTimeout(w, 50); })(); })")
        if not ready:
            raise CaseError("the console page did not start (window.consoleReady)")
        default_url = await page.evaluate("document.querySelector('#url').value")
        want_url = lab.gw.ws if not lab.routes_ok else f"ws://127.0.0.1:{lab.gw.port}/v1/ws"
        lab.expect(default_url == want_url, f"console's default URL {default_url!r}, expected {want_url!r}")
        metrics = await page.evaluate("document.querySelector('a[href=\"/metrics\"]') !== null")
        lab.expect(metrics, "no link to /metrics")
        ch = "console:demo"
        helpers = """
            const $ = (s) => document.querySelector(s);
            const rows = (kind) => document.querySelectorAll('#log .kind-' + kind).length;
            const click = (s) => $(s).click();
            const set = (s, v) => { const e = $(s); e.value = v; e.dispatchEvent(new Event('input')); };
            const until = async (f, ms) => {
                const t = Date.now();
                while (!f()) {
                    if (Date.now() - t > ms) throw new Error('timeout: ' + f);
                    await new Promise(r => setTimeout(r, 50));
                }
            };
        """
        script = "(async () => {" + helpers + f"""
            click('#connect');
            await until(() => $('#status').dataset.state === 'open', 10000);
            set('#sub-channel', {json.dumps(ch)}); set('#sub-from', 'earliest'); click('#subscribe');
            await until(() => document.querySelectorAll('#subscriptions li').length === 1, 10000);
            for (const [i, text] of ['{{"hello": "world"}}', '{{"n": 2, "ok": true}}', '"plain text"'].entries()) {{
                set('#pub-channel', {json.dumps(ch)}); set('#pub-data', text); click('#publish');
                await until(() => document.querySelectorAll('#log .kind-ack').length === i + 1, 10000);
            }}
            await until(() => document.querySelectorAll('#log .kind-record').length >= 3, 10000);
            return Array.from(document.querySelectorAll('#log .kind-record')).map(e => e.textContent);
        }})()"""
        rows = await page.evaluate(script, 40)
        # a gap: the partition kill_resume pruned, from offset 0
        gap_rows = await page.evaluate("(async () => {" + helpers + f"""
            set('#sub-channel', {json.dumps(gapch)}); set('#sub-from', '0'); click('#subscribe');
            await until(() => rows('gap') >= 1, 10000);
            return Array.from(document.querySelectorAll('#log .kind-gap')).map(e => e.textContent);
        }})()""", 20)
        lab.expect(any("retention" in r for r in gap_rows), f"console gap rows: {gap_rows}")
        # a drain and a restart: the console reconnects and carries on
        lab.gw.proc.send_signal(signal.SIGTERM)
        rc = await lab.gw.proc.wait_exit(15)
        lab.expect(rc == 0, f"the drained gateway exited with {rc}")
        lab.gw = await lab.start_gateway("gateway-3", lab.gw.port)
        after = await page.evaluate("(async () => {" + helpers + f"""
            await until(() => rows('reconnecting') >= 1 && $('#status').dataset.state === 'open', 15000);
            set('#pub-channel', {json.dumps(ch)}); set('#pub-data', '{{"after": "restart"}}'); click('#publish');
            const mine = () => Array.from(document.querySelectorAll('#log .kind-record'))
                .filter(e => e.textContent.includes({json.dumps(ch)})).length;
            await until(() => mine() >= 4, 10000);
            return {{closes: Array.from(document.querySelectorAll('#log .kind-close')).map(e => e.textContent),
                     status: $('#status').textContent}};
        }})()""", 30)
        lab.expect(any("1001" in c for c in after["closes"]) and "reconnected" in after["status"],
                   f"console after the drain: {after}")
        kafka = await asyncio.to_thread(kafka_records, lab, partition(ch), 0, ch)
        for r in kafka[:3]:
            lab.expect(any(f"{partition(ch)}/{r.offset}" in row for row in rows),
                       f"console log rows {rows[:4]} do not show record {partition(ch)}/{r.offset}")
        await asyncio.sleep(0.3)
        shot = await lab.browser.send("Page.captureScreenshot", {"format": "png"}, session=page.session)
        png = base64.b64decode(shot.get("data", ""))
        out = lab.workdir / "console.png"
        out.write_bytes(png)
        ok = png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
        w = int.from_bytes(png[16:20], "big") if len(png) > 24 else 0
        h = int.from_bytes(png[20:24], "big") if len(png) > 24 else 0
        if lab.expect(ok and w >= 800 and h >= 600, f"screenshot: {len(png)} bytes, {w}x{h}, head {png[:8]!r}"):
            copied = ""
            if UPDATE_SCREENSHOT:
                DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(out, DOCS_SCREENSHOT)
                copied = " (copied to docs/console.png)"
            lab.notes.append(f"console screenshot {w}x{h}, {len(png)} bytes: {out}{copied}")
    finally:
        await page.close()


CASES = [
    ("static_routes", case_static_routes, 15),
    ("page_loads", case_page_loads, 30),
    ("publish_ack", case_publish_ack, 20),
    ("subscribe_order", case_subscribe_order, 25),
    ("kill_resume", case_kill_resume, 60),
    ("auth", case_auth, 30),
    ("placement", case_placement, 60),
    ("console", case_console, 30),
]
NEEDS_PAGE = {"publish_ack", "subscribe_order", "kill_resume", "auth", "placement", "console"}


async def main_async(args, workdir: pathlib.Path, binary: str, results: dict, holder: list):
    lab = Lab(args, workdir, binary)
    holder.append(lab)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
    try:
        try:
            lab.pages = PageServer()
            await lab.start_kafka()
            lab.gw = await lab.start_gateway("gateway")
        except CaseError as e:
            print(f"FAIL setup: {e}", flush=True)
            results["failed"] += 1
            return
        only = set(args.only.split(",")) if args.only else None
        for name, fn, timeout in CASES:
            if only and name not in only and name not in ("static_routes", "page_loads"):
                continue
            lab.fails = []
            t0 = time.monotonic()
            try:
                if name in NEEDS_PAGE and lab.page is None:
                    raise CaseError("no page (page_loads failed)")
                if not lab.gw.proc.alive:
                    raise CaseError(f"the gateway is not running (rc={lab.gw.proc.p.returncode})")
                await asyncio.wait_for(fn(lab), timeout)
            except CaseError as e:
                lab.fails.append(str(e))
            except asyncio.TimeoutError:
                lab.fails.append(f"did not finish within {timeout}s")
            except Exception as e:
                lab.fails.append(format_exc(e))
            if lab.fails:
                reason = " | ".join(lab.fails)
                print(f"FAIL {name}: {reason[:1500]}", flush=True)
                for p in lab.procs.all:
                    if "chromium" not in p.name:
                        print(f"    --- {p.name} (rc {p.p.returncode if p.p else None}) stderr: {p.stderr_path}")
                        for ln in p.tail(6):
                            print(f"    | {ln[:240]}")
                results["failed"] += 1
            else:
                print(f"PASS {name} ({time.monotonic() - t0:.1f}s)", flush=True)
                results["passed"] += 1
        for n in lab.notes:
            print(f"note: {n}")
    finally:
        if lab.browser is not None:
            await lab.browser.stop()
        if lab.pages is not None:
            lab.pages.stop()
        await asyncio.wait_for(lab.procs.stop_all(), 30)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=".build/debug/streamgate", help="streamgate executable")
    ap.add_argument("--only", default="", help="comma-separated case names (static_routes and page_loads always run)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, screenshot) after a passing run")
    ap.add_argument("--budget", type=float, default=90.0, help="hard time limit for the whole run (s)")
    ap.add_argument("--update-screenshot", action="store_true", help="copy the console's screenshot to docs/console.png")
    args = ap.parse_args()
    global UPDATE_SCREENSHOT
    UPDATE_SCREENSHOT = args.update_screenshot
    prepared = private_binary(args.binary, REPO, "e2e-browser-")
    if prepared is None:
        return 1
    workdir, binary, src = prepared
    results = {"passed": 0, "failed": 0}
    print(f"e2e-browser: binary {src}; logs in {workdir}", flush=True)
    holder: list = []
    run_guarded(main_async(args, workdir, binary, results, holder), args.budget, results, holder)
    if results["failed"] == 0 and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{results['passed']} passed, {results['failed']} failed", flush=True)
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
