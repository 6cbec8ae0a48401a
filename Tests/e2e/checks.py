"""Shared verification helpers: pipelined publishing, Kafka read-back of acked
records, expected delivery of a record, and per-subscriber stream checks."""
from __future__ import annotations

import asyncio
import base64
import collections
import datetime
import json
import time

import kafkatools
from harness import CaseError, Client, Closed, Ctx, now_ms, settle


# --- JSON helpers ----------------------------------------------------------------------

def _no_constants(name):
    raise ValueError(f"{name} is not JSON")


def strict_json(value: bytes | None):
    """(True, parsed) when value is a valid JSON text (RFC 8259, UTF-8), else (False, None)."""
    if value is None:
        return False, None
    try:
        text = value.decode("utf-8")
        return True, json.loads(text, parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError):
        return False, None


def json_equal(a, b) -> bool:
    """JSON value equality: numbers by value (1 == 1.0), booleans distinct from numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def rfc3339(ms: int, tz_minutes: int = 0) -> str:
    tz = datetime.timezone(datetime.timedelta(minutes=tz_minutes))
    dt = datetime.datetime.fromtimestamp(ms / 1000, tz)
    s = dt.isoformat(timespec="milliseconds")
    return s.replace("+00:00", "Z") if tz_minutes == 0 else s


def publish_text(rid, channel: str | None, *, data_text: str | None = None,
                 data_b64: str | None = None, msg_id: str | None = None,
                 traceparent: str | None = None) -> str:
    """A publish frame with the data JSON text embedded verbatim."""
    parts = ['{"type":"publish"', f'"id":{json.dumps(rid)}']
    if channel is not None:
        parts.append(f'"channel":{json.dumps(channel)}')
    if msg_id is not None:
        parts.append(f'"msgId":{json.dumps(msg_id)}')
    if traceparent is not None:
        parts.append(f'"traceparent":{json.dumps(traceparent)}')
    if data_text is not None:
        parts.append(f'"data":{data_text}')
    if data_b64 is not None:
        parts.append(f'"data_b64":{json.dumps(data_b64)}')
    return ",".join(parts) + "}"


# --- publishing ---------------------------------------------------------------------------

class Pub:
    """One publish: what was sent and what came back."""
    __slots__ = ("client", "channel", "rid", "text", "value", "content_type", "msg_id",
                 "traceparent", "seq", "send_ms", "reply", "reply_ms", "reply_n")

    def __init__(self, client: Client, channel, rid, text, value: bytes, content_type: str,
                 msg_id=None, traceparent=None, seq=0):
        self.client = client
        self.channel = channel
        self.rid = rid
        self.text = text
        self.value = value
        self.content_type = content_type
        self.msg_id = msg_id
        self.traceparent = traceparent
        self.seq = seq
        self.send_ms = None
        self.reply = None
        self.reply_ms = None
        self.reply_n = None

    @property
    def acked(self) -> bool:
        return self.reply is not None and self.reply.get("type") == "ack"


def make_pub(client: Client, channel, *, data_text=None, data_bytes=None, msg_id=None,
             traceparent=None, seq=0, omit_channel=False) -> Pub:
    rid = client.next_id()
    if data_text is not None:
        text = publish_text(rid, None if omit_channel else channel, data_text=data_text,
                            msg_id=msg_id, traceparent=traceparent)
        return Pub(client, channel, rid, text, data_text.encode(), "application/json", msg_id,
                   traceparent, seq)
    text = publish_text(rid, None if omit_channel else channel, data_b64=b64(data_bytes),
                        msg_id=msg_id, traceparent=traceparent)
    return Pub(client, channel, rid, text, data_bytes, "application/octet-stream", msg_id,
               traceparent, seq)



async def send_tracked(client: Client, p):
    """Sends publish `p` and returns the future of its reply; `p.reply`, `p.reply_ms`, `p.reply_n`
    are filled in when it comes."""
    fut = client.expect_reply(p.rid)

    def cb(f, p=p):
        if not f.cancelled() and f.exception() is None:
            p.reply = f.result()
            p.reply_ms = p.reply.get("_ms")
            p.reply_n = p.reply.get("_n")
    fut.add_done_callback(cb)
    p.send_ms = now_ms()
    await client.send_text(p.text)
    return fut

async def publish_many(client: Client, pubs: list[Pub], window: int, reply_timeout: float = 30.0,
                       stall_timeout: float = 30.0, pace: float = 0.0):
    """Sends pubs in order with at most `window` unanswered; fills pub.reply (None when
    no reply came within reply_timeout after the last send)."""
    sem = asyncio.Semaphore(window)
    futs = []

    def on_done(p: Pub):
        def cb(fut):
            sem.release()
            if not fut.cancelled() and fut.exception() is None:
                p.reply = fut.result()
                p.reply_ms = p.reply.get("_ms")
                p.reply_n = p.reply.get("_n")
        return cb

    for p in pubs:
        try:
            await asyncio.wait_for(sem.acquire(), stall_timeout)
        except asyncio.TimeoutError:
            raise CaseError(f"{client.name}: {window} publishes unanswered for {stall_timeout}s") from None
        fut = client.expect_reply(p.rid)
        fut.add_done_callback(on_done(p))
        p.send_ms = now_ms()
        await client.send_text(p.text)
        futs.append(fut)
        if pace:
            await asyncio.sleep(pace)
    if futs:
        await asyncio.wait(futs, timeout=reply_timeout)
    settle(futs)


def ack_order_checks(ctx: Ctx, pubs: list[Pub], label: str) -> dict:
    """Invariant 6: per (connection, channel), acks arrive in publish order and carry
    increasing offsets. Counts unanswered / nacked / reordered / non-increasing."""
    groups = collections.defaultdict(list)
    for p in pubs:
        groups[(p.client.name, p.channel)].append(p)
    res = collections.Counter()
    for (cname, ch), ps in groups.items():
        ps.sort(key=lambda p: p.seq)
        last_n = -1
        last_off = -1
        for p in ps:
            if p.reply is None:
                res["unanswered"] += 1
                continue
            t = p.reply.get("type")
            if t != "ack":
                res["not_acked"] += 1
                if res["not_acked"] <= 3:
                    ctx.fails.append(f"{label}: publish {p.rid} on {ch} answered {strip(p.reply)}")
                continue
            if p.reply.get("channel") != ch:
                res["wrong_channel"] += 1
            if p.reply_n < last_n:
                res["reordered"] += 1
            last_n = max(last_n, p.reply_n)
            off = p.reply.get("offset")
            if not isinstance(off, int):
                res["null_offset"] += 1
                continue
            if off <= last_off:
                res["offset_not_increasing"] += 1
            last_off = max(last_off, off)
    ctx.count("reordered", res["reordered"] + res["offset_not_increasing"])
    ctx.count("unanswered", res["unanswered"])
    for k in ("unanswered", "not_acked", "wrong_channel", "reordered", "offset_not_increasing",
              "null_offset"):
        ctx.expect(res[k] == 0, f"{label}: {k}={res[k]}")
    return res


def strip(frame):
    if isinstance(frame, dict):
        return {k: v for k, v in frame.items() if not k.startswith("_")}
    return frame


# --- Kafka read-back -------------------------------------------------------------------------

def validate_headers(ctx: Ctx, rec: kafkatools.Rec, bootstrap: str):
    """Header map of a gateway-written record against kafka-record-headers.json (once per record)."""
    key = (bootstrap, rec.topic, rec.partition, rec.offset)
    seen = ctx.shared.setdefault("_headers_validated", set())
    if key in seen:
        return
    seen.add(key)
    where = f"{rec.topic}/{rec.partition}@{rec.offset}"
    if rec.duplicate_headers():
        ctx.checker.violation(ctx.tag, "headers", where, f"duplicate header names {rec.duplicate_headers()}")
    for k, v in rec.headers:
        try:
            (v or b"").decode("utf-8")
        except UnicodeDecodeError:
            ctx.checker.violation(ctx.tag, "headers", where, f"header {k} is not UTF-8")
    ctx.checker.submit(ctx.tag, "headers", json.dumps(rec.header_map()))


async def read_partitions(ctx: Ctx, topic: str, ranges: dict, bootstrap: str | None = None) -> dict:
    """ranges: partition -> (start, end_exclusive). Returns {(partition, offset): Rec}."""
    bs = bootstrap or ctx.bootstrap
    out = {}

    async def one(p, start, end):
        recs = await asyncio.to_thread(kafkatools.read_range, bs, topic, p, start, end, 40.0)
        for r in recs:
            out[(p, r.offset)] = r
            if any(k.startswith("sg-") for k, _ in r.headers):
                validate_headers(ctx, r, bs)  # written by a gateway

    await asyncio.gather(*(one(p, s, e) for p, (s, e) in ranges.items()))
    return out


async def verify_acked(ctx: Ctx, pubs: list[Pub], node_id: str, topic: str | None = None,
                       label: str = "", bootstrap: str | None = None) -> dict:
    """Invariant 1 plus PROTOCOL section 2: every acked (partition, offset) holds exactly
    the published record. Returns the records read, keyed (partition, offset)."""
    topic = topic or ctx.topic
    acked = [p for p in pubs if p.acked and isinstance(p.reply.get("offset"), int)]
    if not acked:
        return {}
    ranges = {}
    for p in acked:
        part, off = p.reply["partition"], p.reply["offset"]
        s, _ = ranges.get(part, (off, None))
        ranges[part] = (min(s, off), None)  # None: up to the high watermark
    recs = await read_partitions(ctx, topic, ranges, bootstrap)
    lost = mismatch = 0
    conn_ids = collections.defaultdict(set)
    problems = []
    for p in acked:
        key = (p.reply["partition"], p.reply["offset"])
        r = recs.get(key)
        if r is None:
            lost += 1
            problems.append(f"acked {key} of {p.channel} missing from Kafka")
            continue
        if r.key != p.channel.encode() or r.value != p.value:
            lost += 1
            problems.append(f"acked {key}: key={r.key!r} value={r.value[:80] if r.value else r.value!r} "
                            f"expected key={p.channel!r} value={p.value[:80]!r}")
            continue
        hm = r.header_map()
        dups = r.duplicate_headers()
        validate_headers(ctx, r, bootstrap or ctx.bootstrap)
        exp = {"content-type": p.content_type, "sg-sender": "anonymous", "sg-node": node_id}
        if p.msg_id is not None:
            exp["sg-msg-id"] = p.msg_id
        if p.traceparent is not None:
            exp["traceparent"] = p.traceparent
        bad = {k: (hm.get(k), v) for k, v in exp.items() if hm.get(k) != v}
        if p.msg_id is None and "sg-msg-id" in hm:
            bad["sg-msg-id"] = (hm["sg-msg-id"], None)
        if p.traceparent is None and "traceparent" in hm:
            bad["traceparent"] = (hm["traceparent"], None)
        if dups:
            bad["duplicate headers"] = dups
        if r.ts_type != 1:
            bad["timestamp type"] = (r.ts_type, "CreateTime(1)")
        if p.send_ms is not None and p.reply_ms is not None and not (
                p.send_ms - 100 <= r.ts <= p.reply_ms + 100):
            bad["timestamp"] = (r.ts, f"[{p.send_ms},{p.reply_ms}]")
        if bad:
            mismatch += 1
            problems.append(f"record {key} of {p.channel}: header/timestamp mismatch {bad}")
        conn_ids[p.client.name].add(hm.get("sg-conn"))
    # sg-conn: one id per connection, distinct across connections
    for cname, ids in conn_ids.items():
        if len(ids) != 1 or None in ids:
            mismatch += 1
            problems.append(f"sg-conn of {cname}'s records: {sorted(map(str, ids))[:4]} (expected one id)")
    flat = [i for ids in conn_ids.values() for i in ids]
    if len(set(flat)) != len(flat):
        mismatch += 1
        problems.append("two connections share an sg-conn id")
    ctx.count("lost_acked", lost)
    ctx.count("record_mismatch", mismatch)
    ctx.expect(lost == 0, f"{label}: lost_acked={lost} of {len(acked)}; {problems[:2]}")
    ctx.expect(mismatch == 0, f"{label}: {mismatch} records differ from PROTOCOL section 2; "
                              f"{[x for x in problems if 'header' in x or 'sg-conn' in x][:2]}")
    return recs


# --- delivery -------------------------------------------------------------------------------------

def expected_payload(rec: kafkatools.Rec):
    """('data', value) / ('data_b64', str) a subscriber must receive for rec, or None when
    the contract leaves it open."""
    ct = rec.header_map().get("content-type")
    if ct == "application/json":
        ok, val = strict_json(rec.value)
        return ("data", val) if ok else None
    if ct == "application/octet-stream":
        return ("data_b64", rec.value or b"")
    if ct is None:
        ok, val = strict_json(rec.value)
        return ("data", val) if ok else ("data_b64", rec.value or b"")
    return None


def payload_problem(frame: dict, rec: kafkatools.Rec) -> str | None:
    exp = expected_payload(rec)
    hm = rec.header_map()
    if frame.get("ts") != rec.ts:
        return f"ts {frame.get('ts')} != record ts {rec.ts}"
    if frame.get("msgId") != hm.get("sg-msg-id"):
        return f"msgId {frame.get('msgId')!r} != header {hm.get('sg-msg-id')!r}"
    if frame.get("sender") != hm.get("sg-sender"):
        return f"sender {frame.get('sender')!r} != header {hm.get('sg-sender')!r}"
    if exp is None:
        return None
    kind, val = exp
    if kind == "data":
        if "data" not in frame:
            return f"value {rec.value[:60]!r} delivered without 'data' (keys {sorted(strip(frame))})"
        if not json_equal(frame["data"], val):
            return f"data {json.dumps(frame['data'])[:80]} != record value {rec.value[:80]!r}"
    else:
        if "data_b64" not in frame:
            return f"value {(rec.value or b'')[:60]!r} (content-type {hm.get('content-type')}) not delivered as data_b64"
        try:
            got = base64.b64decode(frame["data_b64"], validate=True)
        except Exception:
            return "data_b64 is not base64"
        if got != val:
            return f"data_b64 decodes to {got[:60]!r} != record value {val[:60]!r}"
    return None


def check_stream(ctx: Ctx, label: str, client: Client, channel: str, expected: list[int],
                 recs: dict | None = None, partition: int | None = None,
                 allow_announced_gaps: bool = False) -> bool:
    """Invariants 3/4/5 for one subscription: delivered offsets == expected (strictly
    increasing, no duplicates, nothing missing); payloads match the records."""
    frames = client.msgs.get(channel, [])
    got = [f.get("offset") for f in frames]
    dups = len(got) - len(set(got))
    steps_back = sum(1 for a, b in zip(got, got[1:]) if not b > a)
    exp_set = set(expected)
    got_set = set(got)
    missing = [o for o in expected if o not in got_set]
    extra = [o for o in got if o not in exp_set]
    ctx.count("duplicates", dups)
    ctx.count("reordered", steps_back)
    announced = 0
    if missing and allow_announced_gaps:
        # a gap frame makes the skipped offsets an announced discontinuity
        spans = [(g.get("from"), g.get("to")) for _, g in client.gaps.get(channel, [])]
        still = [o for o in missing if not any(isinstance(a, int) and isinstance(b, int) and a <= o < b
                                               for a, b in spans)]
        announced = len(missing) - len(still)
        missing = still
    ctx.count("silent_gaps", len(missing))
    ok = True
    if dups or steps_back or missing or extra:
        ok = False
        ctx.fails.append(
            f"{label}: delivered {len(got)} (first {got[:3]}, last {got[-3:]}) vs expected "
            f"{len(expected)} (first {expected[:3]}, last {expected[-3:]}): duplicates={dups} "
            f"out_of_order={steps_back} missing={len(missing)} {missing[:5]} extra={len(extra)} {extra[:5]}")
    if recs is not None and partition is not None:
        bad = 0
        first = None
        for f in frames:
            r = recs.get((partition, f.get("offset")))
            if r is None:
                continue
            prob = None
            if r.key != channel.encode():
                prob = f"offset {f.get('offset')} is a record of key {r.key!r}"
            else:
                prob = payload_problem(f, r)
            if prob:
                bad += 1
                first = first or f"offset {f.get('offset')}: {prob}"
        ctx.count("content_mismatch", bad)
        if bad:
            ok = False
            ctx.fails.append(f"{label}: {bad} message frames differ from their Kafka record; {first}")
    return ok


async def subscribe(ctx: Ctx, client: Client, channel: str, frm=None, *, rid=None,
                    timeout: float = 10.0) -> dict:
    req = {"type": "subscribe", "channel": channel}
    if rid is not None:
        req["id"] = rid
    if frm is not None:
        req["from"] = frm
    reply = await client.request(req, timeout=timeout)
    if reply.get("type") != "subscribed":
        raise CaseError(f"subscribe {channel} from {frm!r}: got {strip(reply)}")
    return reply


async def wait_delivered(clients_channels: list[tuple[Client, str]], last_offset: int,
                         timeout: float) -> list[tuple[Client, str]]:
    """Waits until every (client, channel) has delivered an offset >= last_offset.
    Returns the ones that did not."""
    async def one(c, ch):
        ok = await c.wait_until(lambda: bool(c.msgs.get(ch)) and c.msgs[ch][-1].get("offset", -1) >= last_offset,
                                timeout)
        return None if ok else (c, ch)
    res = await asyncio.gather(*(one(c, ch) for c, ch in clients_channels))
    return [r for r in res if r is not None]


def first_rec_at_or_after(recs_sorted: list, ts: int):
    for r in recs_sorted:
        if r.ts >= ts:
            return r
    return None
