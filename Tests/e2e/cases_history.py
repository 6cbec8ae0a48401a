"""History cases: start by time, replay CLI, retention gaps."""
from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.parse

import kafkatools
from checks import (check_stream, expected_payload, json_equal, make_pub, publish_many,
                    read_partitions, rfc3339, strip, subscribe, verify_acked, wait_delivered)
from harness import CaseError, Ctx, child_setup, now_ms

TIME_TOPIC = "e2e.time"
RET_TOPIC = "e2e.retention"


async def case_time_start(ctx: Ctx):
    """f: from {"time": T} starts at the first record with timestamp >= T, computed
    correctly although the dev Kafka answers time lookups wrongly."""
    srv = await ctx.server("cfg")
    ch, other = "tm:clock", "tm:other"
    base = (now_ms() - 600_000) // 1000 * 1000
    recs_in = []
    for i in range(10):
        recs_in.append({"key": ch, "value": json.dumps({"i": i}).encode(), "timestamp": base + 1000 * i})
        recs_in.append({"key": other, "value": json.dumps({"o": i}).encode(), "timestamp": base + 1000 * i + 300})
    res = await asyncio.to_thread(kafkatools.produce, ctx.bootstrap, TIME_TOPIC, recs_in, 30.0)
    o = [res[2 * i][1] for i in range(10)]
    oo = [res[2 * i + 1][1] for i in range(10)]
    P = res[0][0]
    low, head = await asyncio.to_thread(kafkatools.watermarks, ctx.bootstrap, TIME_TOPIC, P)
    ctx.shared["time"] = {"base": base, "offsets": o, "partition": P, "channel": ch}
    # (label, from, expected first offset of the channel or None = nothing old,
    #  allowed subscribed.offset range [lo, hi])
    plans = [
        ("t+1500", rfc3339(base + 1500), 2, (o[1] + 1, o[2])),
        ("t-exact", rfc3339(base), 0, (low, o[0])),
        ("t+4000@+02:00", rfc3339(base + 4000, tz_minutes=120), 4, (oo[3] + 1, o[4])),
        ("t+3500@-05:30", rfc3339(base + 3500, tz_minutes=-330), 4, (oo[3] + 1, o[4])),
        ("after-clock", rfc3339(base + 9001), None, (o[9] + 1, oo[9])),
        ("after-all", rfc3339(base + 60_000), None, (head, head)),
        ("long-before", rfc3339(base - 86_400_000), 0, (low, o[0])),
    ]
    async def one(label, t, first_i, rng):
        c = await ctx.connect(srv, name=f"time-{label}")
        t0 = time.monotonic()
        r = await subscribe(ctx, c, ch, {"time": t})
        dt = time.monotonic() - t0
        if dt > 1.0:
            ctx.notes.append(f"time_start: subscribe {label} took {dt:.1f}s")
        return (label, t, c, first_i, rng, r)

    subs = [await one(*p) for p in plans]
    bc = await ctx.connect(srv, f"/v1/ws/{ch}?from={urllib.parse.quote(rfc3339(base + 1500), safe='')}",
                           name="time-bound", transport="aiohttp")
    try:
        br = await asyncio.wait_for(asyncio.shield(bc.bound_subscribed), 10)
        subs.append(("bound t+1500", rfc3339(base + 1500), bc, 2, (o[1] + 1, o[2]), br))
    except asyncio.TimeoutError:
        ctx.fails.append("bound ?from=<RFC3339>: no subscribed frame")
    # one live record after the subscriptions
    pc = await ctx.connect(srv, name="time-pub")
    live = make_pub(pc, ch, data_text='{"live":true}', msg_id="time-live")
    await publish_many(pc, [live], window=1)
    if not live.acked:
        raise CaseError(f"live publish to {ch} not acked: {strip(live.reply)}")
    lo_ = live.reply["offset"]
    ctx.shared["time"]["live"] = lo_
    left = await wait_delivered([(c, ch) for _, _, c, *_ in subs], lo_, 15)
    recs = await read_partitions(ctx, TIME_TOPIC, {P: (low, None)})
    for label, t, c, first_i, (lo, hi), r in subs:
        off = r.get("offset")
        ctx.expect(r.get("recovered") is True and isinstance(off, int) and lo <= off <= hi,
                   f"time {label} ({t}): subscribed {strip(r)}; expected recovered true and offset in "
                   f"[{lo},{hi}] (records of {ch} at {o}, ts base+1000*i)")
        expected = (o[first_i:] if first_i is not None else []) + [lo_]
        check_stream(ctx, f"time {label}", c, ch, expected, recs, P)
    ctx.expect(not left, f"time subscribers without the live record: {[c.name for c, _ in left]}")


def _replay_line_problem(line: dict, rec: kafkatools.Rec, channel: str) -> str | None:
    want = {"channel": channel, "partition": rec.partition, "offset": rec.offset, "ts": rec.ts,
            "headers": rec.header_map()}
    for k, v in want.items():
        if line.get(k) != v:
            return f"{k}: replay {line.get(k)!r} != kcat {v!r}"
    exp = expected_payload(rec)
    if exp is None:
        return None
    kind, val = exp
    extra = set(line) - {"channel", "partition", "offset", "ts", "headers", "data", "data_b64"}
    if extra:
        return f"unexpected fields {sorted(extra)}"
    if kind == "data":
        if "data" not in line or "data_b64" in line or not json_equal(line["data"], val):
            return f"data {json.dumps(line.get('data'))[:60]} != value {rec.value[:60]!r}"
    else:
        if "data_b64" not in line or "data" in line:
            return f"expected data_b64 for value {rec.value[:40]!r}, got keys {sorted(line)}"
        if base64.b64decode(line["data_b64"]) != val:
            return "data_b64 does not decode to the record value"
    return None


async def run_replay(ctx: Ctx, args: list[str], timeout: float = 30.0) -> list[dict]:
    argv = [ctx.binary, "replay", "--brokers", ctx.bootstrap, *args]
    errf = ctx.workdir / f"replay-{int(time.time() * 1000)}.stderr"
    with open(errf, "wb") as err:
        p = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=err,
                                                 stdin=asyncio.subprocess.DEVNULL, start_new_session=True,
                                                 preexec_fn=child_setup)
        try:
            out, _ = await asyncio.wait_for(p.communicate(), timeout)
        except asyncio.TimeoutError:
            p.kill()
            await p.wait()
            raise CaseError(f"replay {' '.join(args)} did not exit within {timeout}s") from None
    if p.returncode != 0:
        tail = errf.read_text(errors="replace").splitlines()[-3:]
        raise CaseError(f"replay {' '.join(args)} exited {p.returncode}: {tail}")
    lines = []
    bad = []
    for raw in out.split(b"\n"):
        if not raw.strip():
            continue
        try:
            lines.append(json.loads(raw))
        except ValueError as e:
            bad.append((raw, e))
    if bad:
        raw, e = bad[0]
        raise CaseError(f"replay {' '.join(args)}: {len(bad)} output lines are not JSON objects "
                        f"(one record per line expected); first: {raw[:60]!r}...{raw[-60:]!r} ({e})")
    return lines


async def case_replay(ctx: Ctx):
    """g: `streamgate replay` prints exactly what kcat reads for key=channel in the range."""
    a = ctx.shared.get("a")
    if not a:
        raise CaseError("needs the records of publish_invariants (that case did not complete)")
    ch = a["channels"][0]
    acked = a["acked"][ch]
    P = acked[0][0]
    offs = [o for _, o in acked]
    krecs = await asyncio.to_thread(kafkatools.kcat_read, ctx.bootstrap, ctx.topic, P, offs[0], 40.0)
    mine = [r for r in krecs if r.key == ch.encode()]

    async def compare(label, args, expected: list[kafkatools.Rec], channel):
        try:
            lines = await run_replay(ctx, args)
        except CaseError as e:
            ctx.fails.append(f"replay {label}: {e}")
            return
        got = [ln.get("offset") for ln in lines]
        want = [r.offset for r in expected]
        if got != want:
            ctx.fails.append(f"replay {label}: offsets {len(got)} {got[:4]}..{got[-2:]} != kcat "
                             f"{len(want)} {want[:4]}..{want[-2:]}")
            return
        bad = [(r.offset, _replay_line_problem(ln, r, channel)) for ln, r in zip(lines, expected)]
        bad = [b for b in bad if b[1]]
        ctx.expect(not bad, f"replay {label}: {len(bad)} lines differ from kcat; first {bad[:1]}")

    n, m = offs[10], offs[200]
    await compare("offset range", ["--channel", ch, "--from-offset", str(n), "--to-offset", str(m)],
                  [r for r in mine if n <= r.offset < m], ch)
    nb = offs[10] + 1
    await compare("start between records", ["--channel", ch, "--from-offset", str(nb), "--to-offset", str(m)],
                  [r for r in mine if nb <= r.offset < m], ch)
    await compare("limit", ["--channel", ch, "--from-offset", str(offs[0]), "--limit", "7"],
                  [r for r in mine if r.offset >= offs[0]][:7], ch)
    await compare("to end", ["--channel", ch, "--topic", ctx.topic, "--from-offset", str(offs[100])],
                  [r for r in mine if r.offset >= offs[100]], ch)
    # by time, on the time topic (records with explicit timestamps)
    t = ctx.shared.get("time")
    if not t:
        raise CaseError("needs the records of time_start (that case did not complete)")
    tch, base, TP = t["channel"], t["base"], t["partition"]
    trecs = await asyncio.to_thread(kafkatools.kcat_read, ctx.bootstrap, TIME_TOPIC, TP, 0, 30.0)

    def from_time(ts, to_ts=None):
        start = next((r.offset for r in trecs if r.ts >= ts), None)
        if start is None:
            return []
        end = None
        if to_ts is not None:
            end = next((r.offset for r in trecs if r.offset >= start and r.ts >= to_ts), None)
        return [r for r in trecs if r.key == tch.encode() and r.offset >= start and (end is None or r.offset < end)]

    await compare("from-time", ["--channel", tch, "--topic", TIME_TOPIC, "--from-time", rfc3339(base + 1500)],
                  from_time(base + 1500), tch)
    await compare("from-time to-time", ["--channel", tch, "--topic", TIME_TOPIC, "--from-time",
                                        rfc3339(base + 1500), "--to-time", rfc3339(base + 5000)],
                  from_time(base + 1500, base + 5000), tch)
    cfg = ctx.shared["config_path"]
    await compare("config file", ["--channel", tch, "--config", str(cfg), "--from-offset", "0"],
                  [r for r in trecs if r.key == tch.encode()], tch)


async def case_retention(ctx: Ctx):
    """e: a partition pruned past the requested offset -> recovered:false, gap
    reason retention, delivery from the gap's end = low watermark; a catch-up that
    falls behind pruning gets a gap frame, never a silent jump (invariant 5)."""
    srv = await ctx.server("cfg")
    ch = "ret:big"
    pad = "r" * 1900

    def records(start, n):
        return [{"key": ch, "value": json.dumps({"n": start + i, "pad": pad}).encode()} for i in range(n)]

    produced = 0
    P = kafkatools.partition_for(ch, 1)
    low = high = 0
    for _ in range(6):
        res = await asyncio.to_thread(kafkatools.produce, ctx.bootstrap, RET_TOPIC, records(produced, 2000), 60.0,
                                      {"linger.ms": 20})
        produced += 2000
        P = res[0][0]
        low, high = await asyncio.to_thread(kafkatools.watermarks, ctx.bootstrap, RET_TOPIC, P)
        if low > 0 and produced >= 4000:
            break
    if low == 0:
        raise CaseError(f"dev Kafka did not prune partition {RET_TOPIC}/{P} after {produced} records "
                        f"of 2 kB (high={high}); cannot test retention")
    c = await ctx.connect(srv, name="ret-0")
    r = await subscribe(ctx, c, ch, {"offset": 0})
    gap = r.get("gap") or {}
    ctx.expect(r.get("recovered") is False and gap.get("reason") == "retention" and gap.get("from") == 0
               and gap.get("to") == low and r.get("offset") == low,
               f"from offset 0 on a pruned partition: {strip(r)}; expected recovered false, gap "
               f"{{from:0,to:{low},reason:retention}}, offset {low} (= low watermark)")
    # one catch-up at a time (joining a running catch-up is catchup_join's subject)
    left = await wait_delivered([(c, ch)], high - 1, 60)
    ce = await ctx.connect(srv, name="ret-earliest")
    re_ = await subscribe(ctx, ce, ch, "earliest")
    ctx.expect(re_.get("recovered") is True and re_.get("offset") == low,
               f"earliest on a pruned partition: {strip(re_)}; expected offset {low}, recovered true")
    left += await wait_delivered([(ce, ch)], high - 1, 60)
    ctx.expect(not left, f"catch-up from the low watermark did not reach {high - 1} in 60s: "
                         f"{[(x.name, (x.msgs[ch][-1]['offset'] if x.msgs[ch] else None)) for x, _ in left]}")
    expected = list(range(low, high))  # only this channel writes the partition
    check_stream(ctx, "retention from 0", c, ch, expected)
    check_stream(ctx, "retention earliest", ce, ch, expected)
    # spot-check payloads of the first delivered records
    recs = await read_partitions(ctx, RET_TOPIC, {P: (low, min(high, low + 50))})
    from checks import payload_problem
    probs = [payload_problem(f, recs[(P, f["offset"])]) for f in c.msgs[ch][:50] if (P, f.get("offset")) in recs]
    probs = [p for p in probs if p]
    ctx.expect(not probs, f"retention: payload problems {probs[:1]}")
    for x in (c, ce):
        await x.close()
        x.msgs.clear()

    # catch-ups racing pruning: subscribe from the low watermark, then prune past it.
    # First a reader that keeps up, then one that stops reading meanwhile (so the
    # pruning certainly overtakes it): each must announce any jump with a gap frame
    # (or be closed with 4008), never skip silently.
    for label, paused in (("ret-race", False), ("ret-race-paused", True)):
        low2, _ = await asyncio.to_thread(kafkatools.watermarks, ctx.bootstrap, RET_TOPIC, P)
        if paused:
            x = await ctx.connect(srv, name=label, max_queue=4, rcvbuf=4096)
        else:
            x = await ctx.connect(srv, name=label, transport="aiohttp")
        rs = await subscribe(ctx, x, ch, {"offset": low2})
        if paused:
            x.pause()
        await asyncio.to_thread(kafkatools.produce, ctx.bootstrap, RET_TOPIC, records(produced, 3500), 60.0,
                                {"linger.ms": 5})
        produced += 3500
        low3, high3 = await asyncio.to_thread(kafkatools.watermarks, ctx.bootstrap, RET_TOPIC, P)
        if paused:
            await asyncio.sleep(0.5)
            x.resume()
        left = await wait_delivered([(x, ch)], high3 - 1, 30)
        closed_4008 = False
        if left:
            cl = x.closed.result() if x.closed.done() else None
            if cl and cl[0] == 4008:
                closed_4008 = True
            else:
                ctx.fails.append(f"retention race {label}: stopped at "
                                 f"{x.msgs[ch][-1]['offset'] if x.msgs[ch] else None}, head {high3}, close {cl}")
        got = [f["offset"] for f in x.msgs[ch]]
        if rs.get("offset") != low2:
            # pruned before the subscription was answered: must be announced there
            g = rs.get("gap") or {}
            ctx.expect(rs.get("recovered") is False and g.get("reason") == "retention"
                       and g.get("to") == rs.get("offset"),
                       f"retention race {label}: subscribed {strip(rs)} for offset {low2}")
        prev = (rs.get("offset") or low2) - 1
        gaps = {i: g for i, g in x.gaps.get(ch, [])}
        announced = silent = 0
        jumps = []
        for i, o in enumerate(got):
            g = gaps.get(i)
            if g is not None:
                announced += 1
                if g.get("to") != o or g.get("reason") != "retention" or g.get("from") != prev + 1:
                    ctx.fails.append(f"retention race {label}: gap frame {strip(g)} after offset {prev}, "
                                     f"followed by offset {o}")
            elif o != prev + 1:
                silent += 1
                jumps.append((prev, o))
            prev = o
        ctx.count("silent_gaps", silent)
        ctx.expect(silent == 0, f"retention race {label}: {silent} unannounced jumps in the offsets "
                                f"(subscribed {strip(rs)}) (from->to: {jumps[:3]}; gap frames at message "
                                f"index: {[(i, strip(g)) for i, g in x.gaps.get(ch, [])][:3]})")
        ctx.notes.append(f"retention race {label}: {len(got)} delivered, {announced} gap frames"
                         f"{', closed 4008' if closed_4008 else ''} (log start {low2}->{low3})")
        await x.close()
        x.msgs.clear()
