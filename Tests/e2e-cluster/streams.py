"""Clients of affinity channels that live through ownership moves, and the invariant counts
(TESTING.md) over what they received.

A `Stream` is one logical client of one bound channel (`/v1/ws/{channel}`) across as many
connections as it takes: it enters through a URL (the round-robin name by default),
follows 302 and retries 503 (via ClusterCtx.open_bound); when the gateway sends `moved`
and closes 4302 it reconnects to the moved URL (`?from=N`); when the connection dies
otherwise (a crash) it reconnects through the round-robin name with `?from=last+1`. A
publishing stream also publishes (window, paced) and, when its publishes stay
unanswered for `ack_timeout`, gives the connection up (leaving it open, to see what
the node does with what was sent) and connects anew."""
from __future__ import annotations

import asyncio
import collections
import json
import time
import urllib.parse

import kafkatools
from clusterlab import CaseError, ClusterCtx, node_of_url, now_ms, partition_of, topic_of, with_query


class Seg:
    """One connection of a stream."""
    __slots__ = ("client", "url", "node", "opened", "live_t", "subscribed", "end_t", "close", "moved",
                 "kept", "abandoned", "attempts", "refusals", "reason")

    def __init__(self, client, url, subscribed):
        self.client = client
        self.url = url
        self.node = client.node
        self.opened = client.opened
        self.live_t = time.monotonic()
        self.subscribed = subscribed
        self.end_t = None
        self.close = None
        self.moved = None
        self.kept = None  # messages of this connection that count (all, unless abandoned)
        self.abandoned = False
        self.attempts = getattr(client, "attempts", 1)
        self.refusals = getattr(client, "refusals", {})
        self.reason = ""


class PubRec:
    __slots__ = ("stream", "seg", "seq", "rid", "msg_id", "value", "send_t", "send_ms", "reply", "reply_n",
                 "reply_t")

    def __init__(self, stream, seg, seq, rid, msg_id, value):
        self.stream = stream
        self.seg = seg
        self.seq = seq
        self.rid = rid
        self.msg_id = msg_id
        self.value = value
        self.send_t = time.monotonic()
        self.send_ms = now_ms()
        self.reply = None
        self.reply_n = None
        self.reply_t = None

    @property
    def acked(self):
        return self.reply is not None and self.reply.get("type") == "ack"


class Stream:
    def __init__(self, ctx: ClusterCtx, channel: str, name: str, *, entry: str | None = None,
                 publish_rate: float = 0.0, window: int = 4, ack_timeout: float = 2.5,
                 connect_timeout: float = 3.0):
        self.ctx = ctx
        self.channel = channel
        self.name = name
        self.entry = entry or ctx.rr_wss
        self.topic, self.partitions = topic_of(channel)
        self.partition = partition_of(channel, self.partitions)
        self.publish_rate = publish_rate
        self.window = window
        self.ack_timeout = ack_timeout
        self.connect_timeout = connect_timeout
        self.segs: list[Seg] = []
        self.cur: Seg | None = None
        self.delivered: list[dict] = []  # message frames of finished segments, in order
        self.start_offset: int | None = None
        self.gaps: list = []  # announced discontinuities (gap frames, recovered:false)
        self.pubs: list[PubRec] = []
        self.problems: list[str] = []
        self.moved_bad = 0
        self.seq = 0
        self.live = asyncio.Event()
        self._stop = asyncio.Event()
        self._pub_stop = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.error: str | None = None
        ctx.shared.setdefault("streams", []).append(self)  # stopped at the end of the case

    # -- views --
    def offsets(self) -> list[int]:
        out = [f.get("offset") for f in self.delivered]
        if self.cur is not None:
            msgs = self.cur.client.msgs.get(self.channel, [])
            out += [f.get("offset") for f in msgs]
        return out

    def last_offset(self) -> int | None:
        o = self.offsets()
        return o[-1] if o else None

    def next_from(self) -> int | None:
        last = self.last_offset()
        return last + 1 if last is not None else self.start_offset

    def start(self):
        self.task = asyncio.create_task(self._run())
        return self

    def stop_publishing(self):
        self._pub_stop.set()

    async def stop(self):
        self._pub_stop.set()
        self._stop.set()
        if self.task and not self.task.done():
            done, _ = await asyncio.wait([self.task], timeout=5)
            if not done:  # e.g. still retrying a connection
                self.task.cancel()
                await asyncio.wait([self.task], timeout=5)

    # -- the life of the stream --
    async def _run(self):
        url = f"{self.entry}/v1/ws/{self.channel}"
        try:
            while not self._stop.is_set():
                try:
                    c, sub = await self.ctx.open_bound(url, name=f"{self.name}#{len(self.segs)}",
                                                       deadline=time.monotonic() + 60, timeout=self.connect_timeout)
                except CaseError as e:
                    self.error = str(e)
                    return
                seg = Seg(c, url, sub)
                self._check_subscribed(seg, url)
                self.segs.append(seg)
                self.cur = seg
                self.live.set()
                url = await self._serve(seg)
                self.live.clear()
        except Exception as e:  # a bug here must fail the case, not hang it
            self.error = f"{type(e).__name__}: {e}"
        finally:
            seg = self.cur
            if seg is not None:
                self._finish(seg, seg.reason or "stopped")
                try:
                    await asyncio.wait_for(seg.client.close(), 5)
                except (asyncio.TimeoutError, asyncio.CancelledError, Exception):
                    pass

    def _check_subscribed(self, seg: Seg, url: str):
        sub = seg.subscribed
        if sub.get("channel") != self.channel or sub.get("partition") != self.partition:
            self.problems.append(f"{self.name}: subscribed {sub.get('channel')} partition {sub.get('partition')}, "
                                 f"expected partition {self.partition}")
        if self.start_offset is None:
            self.start_offset = sub.get("offset")
            return
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
        want = q.get("from", [None])[0]
        if sub.get("recovered") is False or sub.get("gap"):
            self.gaps.append(("subscribed", sub.get("gap")))
        if want is not None and want.isdigit() and sub.get("offset") != int(want) and not sub.get("gap"):
            # the start offset must be the one asked for (a later start would skip records)
            if sub.get("offset", 0) > int(want):
                self.problems.append(f"{self.name}: resumed with from={want} but subscribed at {sub.get('offset')}")

    def _finish(self, seg: Seg, reason: str):
        if seg.end_t is not None:
            return
        seg.end_t = time.monotonic()
        seg.reason = reason
        msgs = seg.client.msgs.get(self.channel, [])
        if seg.kept is None:
            seg.kept = len(msgs)
        self.delivered.extend(msgs[:seg.kept])
        for idx, g in seg.client.gaps.get(self.channel, []):
            if idx <= seg.kept:
                self.gaps.append(("gap", {"from": g.get("from"), "to": g.get("to")}))
        if seg.client.closed.done():
            seg.close = seg.client.closed.result()
        moved = [f for f in seg.client.other if f.get("type") == "moved" and "id" not in f]
        seg.moved = moved[-1] if moved else None
        if self.cur is seg:
            self.cur = None

    async def _serve(self, seg: Seg) -> str:
        """Runs one connection; returns the URL to connect to next."""
        c = seg.client
        pub_task = asyncio.create_task(self._publish(seg)) if self.publish_rate > 0 else None
        stop_wait = asyncio.create_task(self._stop.wait())
        closed = asyncio.ensure_future(asyncio.shield(c.closed))
        waits = [stop_wait, closed] + ([pub_task] if pub_task else [])
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        stale = pub_task in done and pub_task.result() == "stale"
        for t in waits:
            if not t.done():
                t.cancel()
        if pub_task is not None and not pub_task.done():
            try:
                await pub_task
            except (asyncio.CancelledError, Exception):
                pass
        if self._stop.is_set():
            self._finish(seg, "stopped")
            await c.close()
            return ""
        if stale:
            # give the connection up but keep it open: what it still receives does not count
            seg.kept = len(c.msgs.get(self.channel, []))
            seg.abandoned = True
            self._finish(seg, "stale")
            self.ctx.shared.setdefault("abandoned", []).append(c)
        else:
            # let the frames already read be dispatched
            await asyncio.sleep(0)
            self._finish(seg, "closed")
        base = f"{self.ctx.rr_wss}/v1/ws/{self.channel}"
        nxt = self.next_from()
        if seg.moved is not None and not seg.abandoned:
            m = seg.moved
            murl = m.get("url", "")
            target = node_of_url(murl)
            q = urllib.parse.parse_qs(urllib.parse.urlsplit(murl).query)
            ok = (m.get("channel") == self.channel and isinstance(m.get("offset"), int)
                  and q.get("from", [None])[0] == str(m.get("offset"))
                  and urllib.parse.urlsplit(murl).path == f"/v1/ws/{self.channel}")
            if nxt is not None and isinstance(m.get("offset"), int) and m["offset"] < nxt:
                ok = False  # would repeat what was delivered
            if target == seg.node:
                ok = False
            if seg.close is not None and seg.close[0] != 4302:
                ok = False
            if not ok:
                self.moved_bad += 1
                self.problems.append(f"{self.name}: moved {json.dumps({k: v for k, v in m.items() if k[0] != '_'})} "
                                     f"from {seg.node} (close {seg.close}, next {nxt})")
            if murl.startswith("wss://") and target:
                return murl
        return with_query(base, f"from={nxt}") if nxt is not None else base

    async def _publish(self, seg: Seg):
        c = seg.client
        outstanding: dict[int, PubRec] = {}
        interval = 1.0 / self.publish_rate
        while not self._pub_stop.is_set() and not c.closed.done():
            now = time.monotonic()
            if outstanding:
                oldest = min(p.send_t for p in outstanding.values())
                if now - oldest > self.ack_timeout:
                    return "stale"
            if len(outstanding) < self.window:
                self.seq += 1
                rid = c.next_id()
                value = json.dumps({"p": self.name, "s": self.seq}, separators=(",", ":"))
                p = PubRec(self, seg, self.seq, rid, f"{self.name}-{self.seq}", value.encode())
                fut = c.expect_reply(rid)

                def cb(f, p=p):
                    outstanding.pop(p.rid, None)
                    if not f.cancelled() and f.exception() is None:
                        p.reply = f.result()
                        p.reply_n = p.reply.get("_n")
                        p.reply_t = time.monotonic()
                fut.add_done_callback(cb)
                outstanding[rid] = p
                self.pubs.append(p)
                try:
                    await c.send_text('{"type":"publish","id":%d,"msgId":"%s","data":%s}' % (rid, p.msg_id, value))
                except Exception:
                    return "closed"
            await asyncio.sleep(interval)
        if self._pub_stop.is_set() and not c.closed.done():
            # the last answers come in; the connection stays until the stream stops or moves
            await self._stop.wait()
        return "done"


# --- who owned what, when (from etcd) ---------------------------------------------------------------

class OwnerWatch:
    """Polls etcd's owner keys of a topic every `interval` seconds and keeps the history."""

    def __init__(self, ctx: ClusterCtx, topic: str = "docs", interval: float = 0.1):
        self.ctx = ctx
        self.topic = topic
        self.interval = interval
        self.hist: list[tuple[float, dict]] = []
        self.task = None

    def start(self):
        if self.ctx.placement:
            self.task = asyncio.create_task(self._run())
        return self

    async def _run(self):
        while True:
            t = time.monotonic()
            try:
                owners = await self.ctx.etcd_owners(self.topic)
                self.hist.append((t, {p: o for p, (o, _) in owners.items()}))
            except Exception:
                pass  # etcd away: no snapshot
            await asyncio.sleep(self.interval)

    async def stop(self):
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    def owners_between(self, partition: int, t1: float, t2: float) -> set:
        out = set()
        before = None
        for t, owners in self.hist:
            if t < t1:
                before = owners
            elif t <= t2:
                out.add(owners.get(partition))
        if before is not None:
            out.add(before.get(partition))
        return out

    def covers(self, t1: float, t2: float) -> bool:
        return any(t1 <= t <= t2 for t, _ in self.hist) or any(t < t1 for t, _ in self.hist)


# --- a load of streams -----------------------------------------------------------------------------

def pick_channels(prefix: str, owners: dict[int, str], per_node: int, nodes) -> list[str]:
    """Channel names spread evenly over the owners (per_node channels on each node)."""
    counts = collections.Counter()
    out = []
    i = 0
    while any(counts[n] < per_node for n in nodes) and i < 100000:
        ch = f"{prefix}{i}"
        i += 1
        owner = owners.get(partition_of(ch, topic_of(ch)[1]))
        if owner in nodes and counts[owner] < per_node:
            counts[owner] += 1
            out.append(ch)
    return out


class Load:
    """subs_per_channel subscribers and one publisher per channel, all entering through the
    round-robin name."""

    def __init__(self, ctx: ClusterCtx, channels: list[str], subs_per_channel: int = 2,
                 rate: float = 4.0, ack_timeout: float = 2.5):
        self.ctx = ctx
        self.channels = channels
        self.subs = [Stream(ctx, ch, f"sub-{ch}-{k}") for ch in channels for k in range(subs_per_channel)]
        self.pubs = [Stream(ctx, ch, f"pub-{ch}", publish_rate=rate, ack_timeout=ack_timeout) for ch in channels]
        self.watch: OwnerWatch | None = None

    @property
    def streams(self) -> list[Stream]:
        return self.subs + self.pubs

    async def start(self, timeout: float = 60):
        t0 = time.monotonic()
        affinity = any(s.topic != "chat" for s in self.streams)
        self.watch = OwnerWatch(self.ctx).start() if affinity else None
        # subscribers first (so they see every record), a few at a time
        for group in (self.subs, self.pubs):
            for i in range(0, len(group), 12):
                batch = group[i:i + 12]
                for s in batch:
                    s.start()
                await self._wait_live(batch, timeout - (time.monotonic() - t0))
        return time.monotonic() - t0

    async def _wait_live(self, streams, timeout):
        async def one(s):
            try:
                await asyncio.wait_for(s.live.wait(), max(timeout, 1))
            except asyncio.TimeoutError:
                pass
        await asyncio.gather(*(one(s) for s in streams))
        bad = [s for s in streams if not s.live.is_set()]
        if bad:
            raise CaseError(f"{len(bad)} streams not live (first {bad[0].name}: {bad[0].error})")

    def nodes_of(self) -> collections.Counter:
        return collections.Counter(s.cur.node for s in self.streams if s.cur is not None)

    def on_node(self, node: str) -> list[Stream]:
        return [s for s in self.streams if s.cur is not None and s.cur.node == node]

    async def wait_recovered(self, t0: float, affected: list[Stream], timeout: float) -> float | None:
        """Seconds from t0 until every affected stream is live on a connection opened after
        t0 (None if not within timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ok = all(s.cur is not None and s.cur.opened > t0 and s.live.is_set() for s in affected)
            if ok:
                return max((s.cur.live_t for s in affected), default=t0) - t0
            await asyncio.sleep(0.1)
        return None

    async def finish(self, settle_timeout: float = 30.0) -> dict:
        """Stops publishing, waits until every stream has everything of its channel that is in
        Kafka, stops the streams; returns the Kafka records of the channels."""
        for s in self.pubs:
            s.stop_publishing()
        await asyncio.sleep(self.pubs[0].ack_timeout if self.pubs else 0)
        recs = await channel_records(self.ctx, self.channels, self.streams)
        deadline = time.monotonic() + settle_timeout
        while time.monotonic() < deadline:
            behind = [s for s in self.streams if recs[s.channel] and s.start_offset is not None
                      and (s.last_offset() is None or s.last_offset() < recs[s.channel][-1].offset)
                      and recs[s.channel][-1].offset >= s.start_offset]
            if not behind:
                break
            await asyncio.sleep(0.2)
        await asyncio.gather(*(s.stop() for s in self.streams))
        if self.watch is not None:
            await self.watch.stop()
        return await channel_records(self.ctx, self.channels, self.streams)


async def channel_records(ctx: ClusterCtx, channels, streams) -> dict[str, list]:
    """channel -> its Kafka records (key = channel) from the streams' earliest start, in offset order."""
    starts = {}
    for s in streams:
        if s.start_offset is not None:
            key = (s.topic, s.partition)
            starts[key] = min(starts.get(key, s.start_offset), s.start_offset)
    for ch in channels:
        t, n = topic_of(ch)
        starts.setdefault((t, partition_of(ch, n)), 0)
    out = {ch: [] for ch in channels}
    chset = set(channels)

    async def one(key, start):
        return await asyncio.to_thread(kafkatools.read_range, ctx.bootstrap, key[0], key[1], start, None, 60.0)

    res = await asyncio.gather(*(one(k, s) for k, s in starts.items()))
    for recs in res:
        for r in recs:
            k = (r.key or b"").decode(errors="replace")
            if k in chset:
                out[k].append(r)
    for v in out.values():
        v.sort(key=lambda r: r.offset)
    return out


def reconnect_stats(streams: list[Stream]) -> str:
    """How long clients were away between a connection's end and the next `subscribed`, and
    what they were answered meanwhile."""
    gaps, refusals = [], collections.Counter()
    for s in streams:
        for a, b in zip(s.segs, s.segs[1:]):
            if a.end_t is not None:
                gaps.append(b.live_t - a.end_t)
            for k, v in (b.refusals or {}).items():
                refusals[str(k)] += v
    if not gaps:
        return "no reconnects"
    gaps.sort()
    return (f"{len(gaps)} reconnects, away median {gaps[len(gaps) // 2]:.2f}s max {gaps[-1]:.2f}s, "
            f"answered meanwhile {dict(refusals)}")


def count_invariants(ctx: ClusterCtx, load_streams: list[Stream], recs: dict[str, list], label: str,
                     watch: OwnerWatch | None = None) -> dict:
    """TESTING.md invariants over the streams as counts; each non-zero one fails the case.
    With an OwnerWatch: every connection of an affinity channel was accepted by the node
    etcd named the partition's owner then (`served_without_claim`)."""
    n = collections.Counter()
    first = {}

    def bad(kind, k, msg):
        n[kind] += k
        if k and kind not in first:
            first[kind] = msg

    if watch is not None:
        for s in load_streams:
            for g in s.segs:
                if g.node is None or not watch.covers(g.opened - 0.3, g.live_t + 0.3):
                    continue
                seen = watch.owners_between(s.partition, g.opened - 0.3, g.live_t + 0.3)
                n["claim_checked"] += 1
                if g.node not in seen:
                    bad("served_without_claim", 1, f"{s.name}: {g.node} accepted {s.channel} while etcd named "
                                                   f"{sorted(map(str, seen))} the owner of {s.topic}/{s.partition}")

    by_off = {ch: {r.offset: r for r in rs} for ch, rs in recs.items()}
    subs_of = collections.defaultdict(list)
    for s in load_streams:
        subs_of[s.channel].append(s)
    # acks: in Kafka, delivered to every stream of the channel, in order per connection
    acked_total = 0
    for s in load_streams:
        per_seg = collections.defaultdict(list)
        for p in s.pubs:
            per_seg[id(p.seg)].append(p)
            if p.reply is None:
                n["unanswered"] += 1
                continue
            t = p.reply.get("type")
            n[f"reply_{t}"] += 1
            if t == "nack" and p.reply.get("persisted") == "no":
                # invariant 2: a definite nack never reaches Kafka or a subscriber
                for r in recs.get(s.channel, []):
                    if r.value == p.value:
                        bad("nacked_seen", 1, f"{p.msg_id} nacked 'no' but in Kafka at {r.offset}")
            if t != "ack":
                continue
            acked_total += 1
            off = p.reply.get("offset")
            r = by_off.get(s.channel, {}).get(off)
            if p.reply.get("partition") != s.partition or r is None or r.value != p.value:
                bad("lost_acked", 1, f"{p.msg_id} acked at {p.reply.get('partition')}/{off}, "
                                     f"Kafka has {None if r is None else r.value[:60]}")
                continue
            for t2 in subs_of[s.channel]:
                if t2.start_offset is not None and off >= t2.start_offset and off not in set(t2.offsets()):
                    bad("lost_acked", 1, f"{p.msg_id} (offset {off}) acked but never delivered to {t2.name}")
        for ps in per_seg.values():
            ps.sort(key=lambda p: p.seq)
            last_n, last_off = -1, -1
            for p in ps:
                if not p.acked:
                    continue
                if p.reply_n < last_n or not isinstance(p.reply.get("offset"), int) or p.reply["offset"] <= last_off:
                    bad("reordered", 1, f"{s.name}: acks out of publish order at {p.msg_id}")
                last_n = max(last_n, p.reply_n)
                last_off = max(last_off, p.reply.get("offset") or -1)
    # deliveries
    for s in load_streams:
        got = s.offsets()
        if s.start_offset is None:
            bad("not_started", 1, f"{s.name} never subscribed: {s.error}")
            continue
        dups = len(got) - len(set(got))
        bad("duplicates", dups, f"{s.name}: {dups} offsets delivered twice")
        back = sum(1 for a, b in zip(got, got[1:]) if b <= a)
        bad("reordered", back, f"{s.name}: offsets not increasing {back} times")
        want = [r.offset for r in recs.get(s.channel, []) if r.offset >= s.start_offset]
        gs = set(got)
        spans = [(g.get("from"), g.get("to")) for kind, g in s.gaps if isinstance(g, dict)]
        missing = [o for o in want if o not in gs]
        announced = [o for o in missing if any(isinstance(a, int) and isinstance(b, int) and a <= o < b
                                               for a, b in spans)]
        silent = len(missing) - len(announced)
        bad("silent_gaps", silent, f"{s.name}: {silent} records not delivered, e.g. {missing[:4]} "
                                   f"(segments {[(x.node, x.reason, x.close) for x in s.segs][:6]})")
        n["announced_gaps"] += len(announced)
        extra = [o for o in got if o not in by_off.get(s.channel, {})]
        bad("content_mismatch", len(extra), f"{s.name}: delivered offsets that are no record of the channel {extra[:4]}")
        for f in s.delivered:
            r = by_off.get(s.channel, {}).get(f.get("offset"))
            if r is not None:
                try:
                    ok = json.loads(r.value) == f.get("data")
                except ValueError:
                    ok = True
                if not ok:
                    bad("content_mismatch", 1, f"{s.name}: offset {f.get('offset')} data differs from Kafka")
        if s.error:
            bad("stream_errors", 1, f"{s.name}: {s.error}")
        for pr in s.problems:
            bad("protocol", 1, pr)
    if watch is not None and ctx.placement and not n["claim_checked"]:
        bad("served_without_claim", 0, "")
        ctx.fails.append(f"{label}: no connection could be checked against etcd's owners "
                         f"({len(watch.hist)} snapshots)")
    kinds = ("lost_acked", "duplicates", "reordered", "silent_gaps", "content_mismatch", "nacked_seen",
             "served_without_claim")
    for k in kinds:
        ctx.count(k, n[k])
    summary = {k: n[k] for k in kinds}
    delivered = sum(len(s.offsets()) for s in load_streams)
    records = sum(len(v) for v in recs.values())
    ctx.notes.append(f"{label}: {len(load_streams)} streams, {records} records, {acked_total} acked, "
                     f"{delivered} deliveries, invariants {summary}, replies "
                     f"{ {k[6:]: v for k, v in n.items() if k.startswith('reply_')} } unanswered={n['unanswered']} "
                     f"announced_gaps={n['announced_gaps']} owner_checked={n['claim_checked']}; "
                     f"{reconnect_stats(load_streams)}")
    for kind, msg in first.items():
        ctx.fails.append(f"{label}: {kind}={n[kind]}; first: {msg}")
    if records == 0 or acked_total == 0:
        ctx.fails.append(f"{label}: nothing was published ({records} records, {acked_total} acked)")
    return dict(n)
