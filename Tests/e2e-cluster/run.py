#!/usr/bin/env python3
"""Streamgate cluster end-to-end suite.

Starts etcd, `streamgate dev-kafka --topic docs:12 --topic chat:6`, three TLS gateway
nodes with etcd placement and HAProxy (TLS passthrough, SNI routing) on 127.0.0.1 with
free ports, and drives them with independent clients (websockets, aiohttp,
confluent-kafka, headless Chromium over DevTools), reaching `example.test` and
`serverN.example.test` through HAProxy with an in-process resolver override.
Prints PASS/FAIL per case, notes, the invariant counts and `N passed, N failed`;
exits 1 if anything failed.

    python3 Tests/e2e-cluster/run.py [--binary .build/debug/streamgate] [--only a,b] [--list]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import shutil
import signal
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import clusterlab  # noqa: E402  (puts Tests/e2e on the path)
import cases_failover  # noqa: E402
import cases_infra  # noqa: E402
import cases_placement  # noqa: E402
from clusterlab import REPO, CaseError, ClusterCtx  # noqa: E402
from harness import format_exc, run_guarded, private_binary, schema_failure  # noqa: E402

INVARIANTS = ["lost_acked", "duplicates", "reordered", "silent_gaps", "nacked_seen", "content_mismatch",
              "served_without_claim", "acked_after_deadline", "schema_violations"]

CASES = [
    # name, function, timeout (s), needs placement
    ("cluster_start", cases_infra.case_cluster_start, 120, False),
    ("seed_flow", cases_placement.case_seed_flow, 45, True),
    ("same_node", cases_placement.case_same_node, 60, True),
    ("peer_cap", cases_placement.case_peer_cap, 45, True),
    ("fanout_across_nodes", cases_infra.case_fanout_across_nodes, 45, False),
    ("fanout_kill9", cases_failover.case_fanout_kill9, 90, False),
    ("locate_and_moved", cases_placement.case_locate_and_moved, 60, True),
    ("browser_locate", cases_placement.case_browser_locate, 60, True),
    ("join_moves_share", cases_placement.case_join_moves_share, 90, True),
    ("duplicate_node_id", cases_placement.case_duplicate_node_id, 45, True),
    ("failover_kill9", cases_failover.case_failover_kill9, 120, True),
    ("drain_sigterm", cases_failover.case_drain_sigterm, 120, True),
    ("pause_sigstop", cases_failover.case_pause_sigstop, 120, True),
    ("etcd_outage", cases_failover.case_etcd_outage, 120, True),
]


def print_tails(procs):
    for p in procs:
        rc = p.p.returncode if p.p else None
        print(f"    --- {p.name} (pid {p.pid}, rc {rc}) stderr tail: {p.stderr_path}")
        for ln in p.tail(10):
            print(f"    | {ln[:300]}")


async def run_case(ctx: ClusterCtx, name: str, fn, timeout: float, needs_placement: bool) -> bool:
    ctx.tag = name
    ctx.fails = []
    ctx.case_procs = []
    t0 = time.monotonic()
    try:
        if name != "cluster_start":
            if ctx.setup_error:
                raise CaseError(f"no cluster ({ctx.setup_error})")
            if needs_placement:
                ctx.need_placement()
            await asyncio.wait_for(ctx.ensure_cluster(), 60)
        await asyncio.wait_for(fn(ctx), timeout)
    except CaseError as e:
        ctx.fails.append(str(e))
    except asyncio.TimeoutError:
        ctx.fails.append(f"did not finish within {timeout}s")
    except Exception as e:
        ctx.fails.append(format_exc(e))
    finally:
        streams = ctx.shared.pop("streams", [])
        if streams:
            await asyncio.gather(*(s.stop() for s in streams), return_exceptions=True)
        try:
            await asyncio.wait_for(ctx.close_clients(), 15)
        except Exception:
            pass
        for c in ctx.shared.pop("abandoned", []):
            try:
                await asyncio.wait_for(c.close(), 5)
            except Exception:
                pass
    failure = await schema_failure(ctx.checker, ctx.stats, name)
    if failure:
        ctx.fails.append(failure)
    dt = time.monotonic() - t0
    if ctx.fails:
        reason = " | ".join(ctx.fails)
        if len(reason) > 2000:
            reason = reason[:2000] + f" ... ({len(ctx.fails)} problems)"
        print(f"FAIL {name} ({dt:.1f}s): {reason}", flush=True)
        if name == "cluster_start" or not (needs_placement and not ctx.placement):
            procs = [n.proc for n in ctx.nodes.values() if n.proc is not None] + ctx.case_procs
            procs += [p for p in (ctx.etcd, ctx.haproxy, ctx.kafka) if p is not None]
            seen = []
            for p in procs:
                if p not in seen:
                    seen.append(p)
            print_tails(seen[-8:])
        if name == "cluster_start":
            ctx.setup_error = "cluster_start failed"
    else:
        print(f"PASS {name} ({dt:.1f}s)", flush=True)
    for p in ctx.case_procs:
        if p.alive:
            await p.stop()
    return not ctx.fails


async def main_async(args, workdir, binary, results, holder):
    clusterlab.install_resolver()
    ctx = ClusterCtx(args, workdir, binary)
    holder.append(ctx)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
    try:
        await asyncio.to_thread(ctx.checker.warm_up)
        only = set(args.only.split(",")) if args.only else None
        unknown = (only or set()) - {n for n, *_ in CASES}
        if unknown:
            print(f"FAIL setup: unknown cases {sorted(unknown)}")
            results["failed"] += 1
        for name, fn, timeout, needs in CASES:
            if only and name not in only and name != "cluster_start":
                continue
            ok = await run_case(ctx, name, fn, timeout, needs)
            results["passed" if ok else "failed"] += 1
        for n in ctx.notes:
            print(f"note: {n}")
    finally:
        if ctx.chromium is not None:
            try:
                await asyncio.wait_for(ctx.chromium.stop(), 15)
            except Exception:
                pass
        try:
            await asyncio.wait_for(ctx.close_clients(), 10)
        except Exception:
            pass
        for n in ctx.nodes.values():
            if n.proc is not None and n.alive:
                n.proc.send_signal(signal.SIGCONT)
        if ctx.etcd is not None and ctx.etcd.alive:
            ctx.etcd.send_signal(signal.SIGCONT)
        # nodes first (they drain while etcd, Kafka and HAProxy still run), then the rest
        nodes = [n.proc for n in ctx.nodes.values() if n.proc is not None and n.alive]
        await asyncio.wait_for(asyncio.gather(*(p.stop(signal.SIGTERM, 20) for p in nodes),
                                              return_exceptions=True), 60)
        await asyncio.wait_for(ctx.procs.stop_all(), 60)
        await ctx.close()
        ctx.checker.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=".build/debug/streamgate", help="streamgate executable")
    ap.add_argument("--only", default="", help="comma-separated case names (cluster_start always runs)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs) after a passing run")
    ap.add_argument("--budget", type=float, default=720.0, help="hard time limit for the whole run (s)")
    ap.add_argument("--lease-ttl", type=float, default=4.0, help="--lease-ttl of the nodes (s)")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    args = ap.parse_args()
    if args.list:
        for name, fn, _, needs in CASES:
            doc = " ".join((fn.__doc__ or "").split())
            print(f"{name:20s} {'[placement] ' if needs else ''}{doc[:110]}")
        return 0
    prepared = private_binary(args.binary, REPO, "e2e-cluster-")
    if prepared is None:
        return 1
    workdir, binary, src = prepared
    results = {"passed": 0, "failed": 0}
    print(f"e2e-cluster: binary {src} (copied to {binary}); logs in {workdir}", flush=True)
    holder: list = []
    t_start = time.monotonic()

    def kill_browser(c):
        if c.chromium is not None and c.chromium.proc is not None and c.chromium.proc.pid:
            try:
                os.killpg(c.chromium.proc.pid, signal.SIGKILL)  # the browser's process group
            except (ProcessLookupError, PermissionError):
                pass

    run_guarded(main_async(args, workdir, binary, results, holder), args.budget, results, holder, kill_browser)
    if holder:
        st = holder[0].stats
        st["schema_violations"] = holder[0].checker.violations_total
        print("invariants: " + " ".join(f"{k}={st.get(k, 0)}" for k in INVARIANTS)
              + f" (frames_checked={holder[0].checker.checked.get('frame', 0)})")
    print(f"time: {time.monotonic() - t_start:.0f}s")
    if results["failed"] == 0 and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{results['passed']} passed, {results['failed']} failed", flush=True)
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
