#!/usr/bin/env python3
"""Streamgate end-to-end suite.

Starts `streamgate dev-kafka` and `streamgate serve` as processes on 127.0.0.1 and
drives them with independent clients (websockets, aiohttp, confluent-kafka, kcat).
Prints PASS/FAIL per case, the invariant counts, and a closing line
`N passed, N failed`; exits 1 if anything failed.

    python3 Tests/e2e/run.py [--binary .build/debug/streamgate] [--only NAME,...]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import shutil
import signal
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

import cases_config  # noqa: E402
import cases_delivery  # noqa: E402
import cases_edges  # noqa: E402
import cases_faults  # noqa: E402
import cases_flow  # noqa: E402
import cases_history  # noqa: E402
import cases_liveness  # noqa: E402
import cases_metrics  # noqa: E402
import cases_security  # noqa: E402
import cases_session  # noqa: E402
import kafkatools  # noqa: E402
import schemacheck  # noqa: E402
from harness import CaseError, Ctx, format_exc, run_guarded, private_binary, schema_failure  # noqa: E402

INVARIANTS = ["lost_acked", "reordered", "duplicates", "silent_gaps", "schema_violations",
              "nacked_seen", "unanswered", "record_mismatch", "content_mismatch"]


async def case_schemas(ctx: Ctx):
    """The schemas are valid 2020-12, their refs resolve, and they accept the
    contract's own examples and reject broken frames."""
    for path in sorted(schemacheck.SCHEMA_DIR.rglob("*.json")):
        rel = path.relative_to(schemacheck.SCHEMA_DIR).as_posix()
        try:
            v = schemacheck.validator_for(rel)
            v.is_valid({})  # forces $ref resolution of top-level refs
        except Exception as e:
            ctx.fails.append(f"{rel}: {type(e).__name__}: {e}")
    server = schemacheck.validator_for("server-frame.json")
    client = schemacheck.validator_for("client-frame.json")
    good_server = [
        {"type": "authed", "sub": "alice", "exp": 1764150000},
        {"type": "subscribed", "id": 1, "channel": "doc:42", "partition": 3, "offset": 120, "head": 130,
         "recovered": True},
        {"type": "subscribed", "id": "s", "channel": "doc:42", "partition": 3, "offset": 125, "head": 130,
         "recovered": False, "gap": {"from": 100, "to": 125, "reason": "retention"}},
        {"type": "unsubscribed", "id": 2, "channel": "doc:42"},
        {"type": "message", "channel": "doc:42", "offset": 131, "ts": 1764150000123, "data": {"x": 1},
         "msgId": "m", "sender": "alice"},
        {"type": "message", "channel": "doc:42", "offset": 132, "ts": 1764150000123, "data_b64": "AAE="},
        {"type": "ack", "id": 3, "channel": "doc:42", "partition": 3, "offset": 131},
        {"type": "ack", "id": 3, "channel": "doc:42", "partition": 3, "offset": None},
        {"type": "nack", "id": 3, "code": "kafka_unavailable", "message": "x", "persisted": "no"},
        {"type": "error", "id": 4, "code": "bad_request", "message": "x"},
        {"type": "moved", "channel": "doc:42", "url": "wss://node-2.example/v1/ws/doc:42"},
        {"type": "gap", "channel": "doc:42", "from": 10, "to": 20, "reason": "retention"},
    ]
    bad_server = [
        {"type": "message", "channel": "doc:42", "offset": 1, "ts": 1, "data": 1, "data_b64": "AA=="},
        {"type": "message", "channel": "doc:42", "offset": 1, "ts": 1, "data": 1, "extra": True},
        {"type": "ack", "id": 3, "channel": "doc 42", "partition": 3, "offset": 1},
        {"type": "subscribed", "channel": "d", "partition": 0, "offset": 0, "head": 0, "recovered": False},
        {"type": "nack", "code": "kafka_unavailable", "message": "x", "persisted": "maybe"},
        {"type": "error", "code": "oops", "message": "x"},
        {"type": "hello"},
    ]
    good_client = [
        {"type": "auth", "token": "a.b.c"},
        {"type": "subscribe", "id": 1, "channel": "doc:42", "from": "latest"},
        {"type": "subscribe", "channel": "doc:42", "from": {"offset": 5, "partition": 1}},
        {"type": "subscribe", "channel": "doc:42", "from": {"time": "2025-11-26T10:00:00.5+02:00"}},
        {"type": "unsubscribe", "id": 2, "channel": "doc:42"},
        {"type": "publish", "id": 3, "channel": "doc:42", "data": None, "msgId": "k"},
        {"type": "publish", "id": 4, "data_b64": "AAE="},
    ]
    bad_client = [
        {"type": "subscribe", "channel": "doc:42", "from": 5},
        {"type": "subscribe", "channel": "doc:42", "from": {"offset": "x"}},
        {"type": "subscribe", "channel": "a b"},
        {"type": "subscribe", "channel": "x" * 201},
        {"type": "publish", "channel": "c", "data": 1, "data_b64": "AA=="},
        {"type": "publish", "channel": "c"},
    ]
    for f in good_server:
        ctx.expect(server.is_valid(f), f"server-frame.json rejects the contract example {f}")
    for f in bad_server:
        ctx.expect(not server.is_valid(f), f"server-frame.json accepts the broken frame {f}")
    for f in good_client:
        ctx.expect(client.is_valid(f), f"client-frame.json rejects the contract example {f}")
    for f in bad_client:
        ctx.expect(not client.is_valid(f), f"client-frame.json accepts the broken frame {str(f)[:80]}")


async def case_cluster(ctx: Ctx):
    """dev-kafka starts, prints its bootstrap list, and has the expected topics."""
    proc, bs = await ctx.start_dev_kafka(
        "dev-kafka", ["--topic", "e2e.retention:1", "--topic", "e2e.time:1", "--topic", "e2e.docs:4",
                      "--topic", "e2e.slow:4", "--topic", "e2e.backlog:1"])
    ctx.kafka, ctx.bootstrap = proc, bs
    ctx.case_procs.remove(proc)  # shared: not "this case's" process
    n = await asyncio.to_thread(kafkatools.partition_count, bs, ctx.topic, 15.0)
    ctx.expect(n == ctx.partitions, f"{ctx.topic} has {n} partitions, expected {ctx.partitions}")
    for t, want in [("e2e.retention", 1), ("e2e.time", 1), ("e2e.docs", 4), ("e2e.slow", 4), ("e2e.backlog", 1)]:
        n = await asyncio.to_thread(kafkatools.partition_count, bs, t, 15.0)
        ctx.expect(n == want, f"--topic {t}:{want} created {n} partitions")
    srv = await ctx.server("main")
    ctx.case_procs.remove(srv.proc)


CASES = [
    # name, function, timeout (s)
    ("schemas", case_schemas, 30),
    ("cluster_start", case_cluster, 60),
    ("publish_invariants", cases_delivery.case_publish_invariants, 90),
    ("publish_values", cases_delivery.case_publish_values, 30),
    ("metrics", cases_metrics.case_metrics, 45),
    ("config_settings", cases_config.case_config_settings, 45),
    ("traceparent_delivery", cases_session.case_traceparent_delivery, 45),
    ("tracing_log", cases_session.case_tracing_log, 45),
    ("partitioner", cases_delivery.case_partitioner, 30),
    ("subscribers", cases_delivery.case_subscribers, 60),
    ("resume", cases_delivery.case_resume, 60),
    ("catchup_join", cases_delivery.case_catchup_join, 60),
    ("time_start", cases_history.case_time_start, 45),
    ("replay_cli", cases_history.case_replay, 90),
    ("retention_gap", cases_history.case_retention, 150),
    ("bad_frames", cases_edges.case_bad_frames, 90),
    ("limits", cases_edges.case_limits, 45),
    ("handshake_http", cases_edges.case_handshake_http, 45),
    ("unsub_resub_order", cases_session.case_unsub_resub_order, 60),
    ("publish_field_limits", cases_session.case_publish_field_limits, 60),
    ("time_start_pruned", cases_session.case_time_start_pruned, 90),
    ("latest_after_restart", cases_session.case_latest_after_restart, 60),
    ("drain_edges", cases_session.case_drain_edges, 90),
    ("slow_consumer", cases_faults.case_slow_consumer, 90),
    ("pinned_close", cases_flow.case_pinned_close, 60),
    ("slow_reader_catchup", cases_flow.case_slow_reader_catchup, 90),
    ("sweep_not_starved", cases_flow.case_sweep_not_starved, 90),
    # edge: TLS, tokens, origins, handshake rules, liveness, limits, frame violations
    ("tls", cases_security.case_tls, 60),
    ("jwt_header", cases_security.case_jwt_header, 60),
    ("jwt_auth_frame", cases_security.case_jwt_auth_frame, 45),
    ("jwks", cases_security.case_jwks, 90),
    ("origin", cases_security.case_origin, 30),
    ("handshake_rules", cases_security.case_handshake_rules, 30),
    ("handshake_limits", cases_liveness.case_handshake_limits, 45),
    ("max_connections", cases_liveness.case_max_connections, 30),
    ("frame_violations", cases_liveness.case_frame_violations, 90),
    ("ping_liveness", cases_liveness.case_ping_liveness, 45),
    ("ping_flood", cases_liveness.case_ping_flood, 60),
    ("publish_rate", cases_liveness.case_publish_rate, 45),
    ("floods", cases_liveness.case_floods, 90),
    ("drain_sigterm", cases_faults.case_drain, 90),
    ("broker_outage", cases_faults.case_outage, 130),  # last: kills a cluster
]
NEEDS_CLUSTER = {name for name, _, _ in CASES} - {"schemas", "cluster_start"}


def print_tails(ctx: Ctx, procs):
    for p in procs:
        lines = p.tail(12)
        rc = p.p.returncode if p.p else None
        print(f"    --- {p.name} (pid {p.pid}, rc {rc}) stderr tail: {p.stderr_path}")
        for ln in lines:
            print(f"    | {ln[:300]}")


async def run_case(ctx: Ctx, name: str, fn, timeout: float) -> bool:
    ctx.tag = name
    ctx.fails = []
    ctx.case_procs = []
    ctx.case_servers = []
    t0 = time.monotonic()
    try:
        if name in NEEDS_CLUSTER and not ctx.bootstrap:
            raise CaseError("no dev Kafka (cluster_start failed)")
        await asyncio.wait_for(fn(ctx), timeout)
    except CaseError as e:
        ctx.fails.append(str(e))
    except asyncio.TimeoutError:
        ctx.fails.append(f"did not finish within {timeout}s")
    except Exception as e:  # a crash in the case is a failure of the case
        ctx.fails.append(format_exc(e))
    finally:
        try:
            await asyncio.wait_for(ctx.close_clients(), 15)
        except Exception:
            pass
    failure = await schema_failure(ctx.checker, ctx.stats, name)
    if failure:
        ctx.fails.append(failure)
    dt = time.monotonic() - t0
    if ctx.fails:
        reason = " | ".join(ctx.fails)
        if len(reason) > 1500:
            reason = reason[:1500] + f" ... ({len(ctx.fails)} problems)"
        print(f"FAIL {name}: {reason}", flush=True)
        involved = list(ctx.case_procs)
        for key in ("main",):
            if key in ctx.servers and ctx.servers[key].proc not in involved:
                involved.append(ctx.servers[key].proc)
        for p in ctx.case_servers:
            if p not in involved:
                involved.append(p)
        if ctx.kafka and ctx.kafka not in involved:
            involved.append(ctx.kafka)
        print_tails(ctx, involved)
    else:
        print(f"PASS {name} ({dt:.1f}s)", flush=True)
    # stop processes that belonged to this case only
    for p in ctx.case_procs:
        if p.alive and p is not ctx.kafka and all(p is not s.proc for s in ctx.servers.values()):
            await p.stop()
    return not ctx.fails


def write_config(ctx: Ctx) -> pathlib.Path:
    cfg = {"namespaces": {
        "doc": {"topic": "e2e.docs", "mode": "fanout"},
        "ret": {"topic": "e2e.retention", "mode": "fanout"},
        "tm": {"topic": "e2e.time", "mode": "fanout"},
        "slow": {"topic": "e2e.slow", "mode": "fanout"},
        "bk": {"topic": "e2e.backlog", "mode": "fanout"},
        "": {"topic": "streamgate.events", "mode": "fanout"},
    }}
    path = ctx.workdir / "namespaces.json"
    path.write_text(json.dumps(cfg, indent=2))
    return path


async def main_async(args, workdir: pathlib.Path, binary: str, results: dict, ctx_holder: list) -> None:
    ctx = Ctx(args, workdir, binary)
    ctx_holder.append(ctx)
    cfg_path = write_config(ctx)
    ctx.shared["config_path"] = cfg_path
    ctx.server_specs = {
        "main": {"node_id": "e2e-1"},
        "cfg": {"node_id": "e2e-2", "args": ["--config", str(cfg_path)]},
        "small": {"node_id": "e2e-3", "args": ["--max-message-bytes", "4096", "--max-frame-bytes", "65536"]},
    }
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    loop.add_signal_handler(signal.SIGTERM, main_task.cancel)
    try:
        await asyncio.to_thread(ctx.checker.warm_up)
        only = set(args.only.split(",")) if args.only else None
        for name, fn, timeout in CASES:
            if only and name not in only and name not in ("cluster_start",):
                continue
            ok = await run_case(ctx, name, fn, timeout)
            results["passed" if ok else "failed"] += 1
        for n in ctx.notes:
            print(f"note: {n}")
    finally:
        try:
            await asyncio.wait_for(ctx.close_clients(), 10)
        except Exception:
            pass
        await asyncio.wait_for(ctx.procs.stop_all(), 30)
        ctx.checker.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=".build/debug/streamgate", help="streamgate executable")
    ap.add_argument("--only", default="", help="comma-separated case names (cluster_start always runs)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs) after a passing run")
    ap.add_argument("--budget", type=float, default=900.0, help="hard time limit for the whole run (s)")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    args = ap.parse_args()
    if args.list:
        for name, fn, _ in CASES:
            print(f"{name:20s} {(fn.__doc__ or '').strip().splitlines()[0]}")
        return 0
    prepared = private_binary(args.binary, REPO, "e2e-run-")
    if prepared is None:
        return 1
    workdir, binary, src = prepared
    results = {"passed": 0, "failed": 0}
    print(f"e2e: binary {src} (copied to {binary}); logs in {workdir}", flush=True)
    ctx_holder: list = []

    run_guarded(main_async(args, workdir, binary, results, ctx_holder), args.budget, results, ctx_holder)
    if ctx_holder:
        st = ctx_holder[0].stats
        st["schema_violations"] = ctx_holder[0].checker.violations_total
        chk = ctx_holder[0].checker.checked
        print("invariants: " + " ".join(f"{k}={st.get(k, 0)}" for k in INVARIANTS)
              + f" (frames_checked={chk.get('frame', 0)} header_maps_checked={chk.get('headers', 0)})")
    if results["failed"] == 0 and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{results['passed']} passed, {results['failed']} failed", flush=True)
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
