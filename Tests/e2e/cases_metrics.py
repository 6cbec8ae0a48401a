"""`GET /metrics`, read with an independent parser (prometheus_client's): the counters move as the
traffic of the case says, the labels are bounded (no channel names), and the process gauges are real."""
from __future__ import annotations

import asyncio
import json
import os
import pathlib
import re
import shutil
import subprocess

import yaml

from prometheus_client.parser import text_string_to_metric_families

from checks import make_pub, publish_many, subscribe, wait_delivered
from harness import CaseError, Ctx

MONITORING = pathlib.Path(__file__).resolve().parents[2] / "ops" / "monitoring"
# Gauges a node shows only in a cluster (the cluster suite's nodes have them).
CLUSTER_ONLY = {"streamgate_cluster_nodes", "streamgate_affinity_partitions_served",
                "streamgate_affinity_partitions_unowned"}


def parse(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of every sample."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def scrape(ctx: Ctx, srv) -> tuple[dict, str]:
    status, text = await ctx.http_get(srv, "/metrics")
    if status != 200:
        raise CaseError(f"/metrics answered {status}: {text[:200]}")
    return parse(text), text


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def case_metrics(ctx: Ctx):
    """Scrape, then one client subscribes from earliest, publishes 20 and receives them, one upgrade is
    refused with 400; a second scrape shows: websocket opened +1 (multiplexed) and the connection gauge
    +1 while open, subscriptions{start=earliest} +1, publishes{acked} +20, ack latency count +20,
    deliveries +20, frames received ≥ 21 and sent ≥ 41 more, refusals{status=400} +1; after the close
    the gauge is back. Process CPU, memory and descriptors are real; no label carries a channel name."""
    srv = await ctx.server("main")
    before, _ = await scrape(ctx, srv)
    channel = f"e2e.metrics.{os.urandom(4).hex()}"
    c = await ctx.connect(srv, name="metrics")
    sub = await subscribe(ctx, c, channel, "earliest")
    if sub.get("type") != "subscribed":
        raise CaseError(f"subscribe answered {sub}")
    pubs = [make_pub(c, channel, data_text='{"m":%d}' % i, seq=i) for i in range(20)]
    await publish_many(c, pubs, window=8, reply_timeout=15)
    if not all(p.acked for p in pubs):
        raise CaseError(f"not every publish acked: {[p.reply for p in pubs if not p.acked][:2]}")
    left = await wait_delivered([(c, channel)], max(p.reply["offset"] for p in pubs), 15)
    if left:
        raise CaseError("the subscriber did not receive its own 20 records")
    status, _ = await ctx.http_get(srv, f"/v1/ws/{channel}?from=bogus",
                                   headers={"Connection": "Upgrade", "Upgrade": "websocket",
                                            "Sec-WebSocket-Version": "13",
                                            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                                            "Sec-WebSocket-Protocol": "streamgate.v1"})
    if status != 400:
        raise CaseError(f"an upgrade with from=bogus answered {status}, not 400")
    during, text = await scrape(ctx, srv)
    # librdkafka's statistics come every 5 s: wait for the first (and with it the broker gauges)
    for _ in range(100):
        if any(name == "streamgate_kafka_broker_up" for name, _ in during):
            break
        await asyncio.sleep(0.1)
        during, text = await scrape(ctx, srv)

    def delta(name, **labels):
        return value(during, name, **labels) - value(before, name, **labels)

    expected = [
        (delta("streamgate_websocket_opened_total", endpoint="multiplexed"), 1, "websocket_opened_total{multiplexed}"),
        (delta("streamgate_websocket_connections", endpoint="multiplexed"), 1, "websocket_connections{multiplexed}"),
        (delta("streamgate_subscriptions_total", start="earliest"), 1, "subscriptions_total{earliest}"),
        (delta("streamgate_publishes_total", result="acked"), 20, "publishes_total{acked}"),
        (delta("streamgate_publishes_total", result="nacked"), 0, "publishes_total{nacked}"),
        (delta("streamgate_ack_latency_seconds_count"), 20, "ack_latency_seconds_count"),
        (delta("streamgate_deliveries_total"), 20, "deliveries_total"),
        (delta("streamgate_delivery_latency_seconds_count"), 20, "delivery_latency_seconds_count"),
        (delta("streamgate_upgrade_refusals_total", status="400"), 1, "upgrade_refusals_total{400}"),
    ]
    problems = [f"{what} moved by {got:g}, expected {want}" for got, want, what in expected if got != want]
    if delta("streamgate_frames_received_total") < 21:
        problems.append(f"frames_received_total moved by {delta('streamgate_frames_received_total'):g} (< 21)")
    if delta("streamgate_frames_sent_total") < 41:
        problems.append(f"frames_sent_total moved by {delta('streamgate_frames_sent_total'):g} (< 41)")
    ack_sum = delta("streamgate_ack_latency_seconds_sum")
    if not 0 < ack_sum < 20 * 5:
        problems.append(f"ack latency sum {ack_sum:g}s for 20 acks")
    if value(during, "streamgate_ack_latency_seconds_bucket", le="+Inf") != value(during, "streamgate_ack_latency_seconds_count"):
        problems.append("ack latency +Inf bucket differs from its count")
    if value(during, "process_resident_memory_bytes") < 1 << 20:
        problems.append(f"process_resident_memory_bytes {value(during, 'process_resident_memory_bytes')}")
    if value(during, "process_cpu_seconds_total") <= 0:
        problems.append("process_cpu_seconds_total is 0")
    if value(during, "process_open_fds") < 3:
        problems.append(f"process_open_fds {value(during, 'process_open_fds')}")
    brokers = {labels: v for (name, labels), v in during.items() if name == "streamgate_kafka_broker_up"}
    if not any(v == 1 for v in brokers.values()):
        problems.append(f"broker gauges from librdkafka's statistics: {brokers or 'none within 10 s'}")
    if not any(name == "streamgate_reader_lag_records" and dict(labels).get("topic") == ctx.topic
               for (name, labels) in during):
        problems.append("no streamgate_reader_lag_records for the partition the case read")
    if channel in text:
        problems.append("a channel name appears in /metrics (labels must be bounded)")
    problems += check_monitoring_files(during)
    await c.close()
    for _ in range(50):
        after, _ = await scrape(ctx, srv)
        if value(after, "streamgate_websocket_connections", endpoint="multiplexed") == value(
                before, "streamgate_websocket_connections", endpoint="multiplexed"):
            break
        await asyncio.sleep(0.1)
    else:
        problems.append("websocket_connections{multiplexed} did not come back after the close")
    ctx.notes.append(f"metrics: {len(during)} samples; ack latency mean {ack_sum / 20 * 1000:.1f} ms")
    if problems:
        raise CaseError("; ".join(problems))


def check_monitoring_files(samples: dict) -> list[str]:
    """The alert rules pass `promtool check rules`, the dashboard is JSON, and every metric either of them
    names is one the gateway exposes."""
    problems = []
    rules = MONITORING / "alerts.yml"
    promtool = shutil.which("promtool")
    if promtool is None:
        problems.append("promtool is not installed (ops/install-deps.sh installs it)")
    else:
        run = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
        if run.returncode != 0:
            problems.append(f"promtool check rules: {(run.stdout + run.stderr).strip()[-300:]}")
    exprs = [r["expr"] for g in yaml.safe_load(rules.read_text())["groups"] for r in g["rules"]]
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exposed = {name for name, _ in samples}
    for name in sorted({m for e in exprs for m in re.findall(r"\b(?:streamgate|process)_[a-z0-9_]+", e)}):
        if name not in exposed and name not in CLUSTER_ONLY:
            problems.append(f"{name} is named in ops/monitoring but not exposed")
    return problems
