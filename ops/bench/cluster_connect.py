#!/usr/bin/env python3
"""Connections per second through the load balancer of a local cluster, and what the 302 costs.

Runs against `ops/cluster.sh up` (three TLS nodes behind HAProxy on 127.0.0.1:8443, names
`example.test` and `serverN.example.test` resolved to 127.0.0.1 inside this process only). Each
connection is a full TLS handshake, an upgrade and a clean close, C at a time:

- fanout, round robin: `wss://example.test:8443/v1/ws/chat:…` (101 from whichever node);
- affinity through the 302: `wss://example.test:8443/v1/ws/doc:…` (two thirds of them answered 302 by a
  node that does not own the channel, then a second TLS handshake and the 101 at the owner);
- affinity at the owner: the URL `GET /v1/locate` gave, straight to SNI `serverN`.

Gateway CPU is the three nodes' user+system time over each case (from /proc and the cluster's pid files),
divided by the connections. The client is Python, and on two cores it shares them with the nodes and
HAProxy: the rates are a floor of what the gateway does, the CPU per connection is the gateway's own.

    ops/cluster.sh up && python3 ops/bench/cluster_connect.py [-n 1500] [-c 16] [--workdir .cluster]
"""
import argparse
import asyncio
import json
import os
import pathlib
import socket
import ssl
import time
import urllib.request

import websockets

DOMAIN = "example.test"
_real_getaddrinfo = socket.getaddrinfo


def _getaddrinfo(host, *args, **kwargs):
    if isinstance(host, str) and (host == DOMAIN or host.endswith("." + DOMAIN)):
        host = "127.0.0.1"
    return _real_getaddrinfo(host, *args, **kwargs)


def cpu_seconds(pids):
    total = 0.0
    for pid in pids:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def node_pids(workdir: pathlib.Path):
    pids = []
    for file in sorted((workdir / "pids").glob("server*.pid")):
        pids.append(int(file.read_text().split()[0]))
    if not pids:
        raise SystemExit(f"no node pid files in {workdir}/pids: run ops/cluster.sh up first")
    return pids


async def run_case(urls, concurrency, context):
    """Opens every URL once (C at a time); returns (seconds, redirects followed)."""
    queue = list(urls)
    redirects = 0

    async def worker():
        nonlocal redirects
        while queue:
            url = queue.pop()
            async with websockets.connect(url, ssl=context, subprotocols=["streamgate.v1"], open_timeout=10) as ws:
                if ws.request.headers["Host"] not in url:  # the final request went to another name
                    redirects += 1
    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.monotonic() - start, redirects


def locate(base, channel, context):
    with urllib.request.urlopen(f"{base}/v1/locate/{channel}", context=context, timeout=5) as answer:
        return json.loads(answer.read())["url"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=1500, help="connections per case")
    parser.add_argument("-c", type=int, default=16, help="connections at a time")
    parser.add_argument("--port", type=int, default=8443, help="the load balancer's port")
    parser.add_argument("--workdir", default=".cluster", help="ops/cluster.sh's work directory")
    args = parser.parse_args()
    socket.getaddrinfo = _getaddrinfo
    workdir = pathlib.Path(args.workdir)
    context = ssl.create_default_context(cafile=str(workdir / "certs" / "ca.pem"))
    pids = node_pids(workdir)
    base = f"https://{DOMAIN}:{args.port}"
    run = os.urandom(4).hex()
    docs = [f"doc:bench-{run}-{i}" for i in range(args.n)]
    located = [locate(base, channel, context) for channel in docs]
    cases = [
        ("fanout `chat:`, round robin (one TLS handshake)",
         [f"wss://{DOMAIN}:{args.port}/v1/ws/chat:bench-{run}-{i}" for i in range(args.n)]),
        ("affinity `doc:` through the round robin (302 from 2 of 3 nodes)",
         [f"wss://{DOMAIN}:{args.port}/v1/ws/{channel}" for channel in docs]),
        ("affinity `doc:` straight to the owner's SNI (URL from /v1/locate)", located),
    ]
    asyncio.run(run_case(cases[0][1][:50], 4, context))  # warm-up
    print(f"| case | connections/s | gateway CPU µs per connection | 302s followed |"
          f"  (n={args.n}, {args.c} at a time, {os.cpu_count()} cores, TLS via HAProxy)")
    print("|---|---:|---:|---:|")
    for name, urls in cases:
        before = cpu_seconds(pids)
        elapsed, redirects = asyncio.run(run_case(urls, args.c, context))
        cpu = cpu_seconds(pids) - before
        print(f"| {name} | {len(urls) / elapsed:,.0f} | {cpu / len(urls) * 1e6:,.0f} | {redirects} |", flush=True)


if __name__ == "__main__":
    main()
