#!/usr/bin/env python3
"""Upgrades per second and gateway CPU per upgrade: plain vs TLS, anonymous vs authenticated.

Starts its own `streamgate dev-kafka` and one `streamgate serve` per case (loopback), makes a throwaway
certificate with openssl and tokens with PyJWT, then opens N WebSocket connections with C at a time, each
doing one upgrade (header token where the case has one) and a clean close. CPU is the gateway process's
user+system time over the run, from /proc, divided by N.

    python3 ops/bench/connect_rate.py [--binary .build-release/release/streamgate] [-n 2000] [-c 16]
"""
import argparse
import asyncio
import base64
import json
import os
import ssl
import subprocess
import tempfile
import time

import jwt
import websockets
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def run_case(url, n, concurrency, ssl_context, token_for):
    done = 0

    async def worker():
        nonlocal done
        while done < n:
            done += 1
            headers = {"Authorization": "Bearer " + token_for()} if token_for else None
            async with websockets.connect(url, ssl=ssl_context, additional_headers=headers,
                                          subprotocols=["streamgate.v1"], open_timeout=10):
                pass

    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.monotonic() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=".build-release/release/streamgate")
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("-c", type=int, default=16)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="sg-connect-")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", f"{work}/key.pem", "-out", f"{work}/cert.pem", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    secret = os.urandom(32)
    open(f"{work}/secret", "wb").write(secret)
    signing = ec.generate_private_key(ec.SECP256R1())
    numbers = signing.public_key().public_numbers()
    jwks = {"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "alg": "ES256",
                      "x": b64url(numbers.x.to_bytes(32, "big")), "y": b64url(numbers.y.to_bytes(32, "big"))}]}
    open(f"{work}/jwks.json", "w").write(json.dumps(jwks))
    pem = signing.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    claims = lambda: {"sub": "bench", "exp": int(time.time()) + 600, "channels": {"sub": ["*"], "pub": ["*"]}}
    hs256 = lambda: jwt.encode(claims(), secret, algorithm="HS256")
    es256 = lambda: jwt.encode(claims(), pem, algorithm="ES256", headers={"kid": "k1"})
    tls = ["--tls-cert", f"{work}/cert.pem", "--tls-key", f"{work}/key.pem"]
    context = ssl.create_default_context(cafile=f"{work}/cert.pem")
    cases = [
        ("plain, anonymous", [], None, None),
        ("TLS, anonymous", tls, context, None),
        ("plain, HS256 header token", ["--jwt-secret-file", f"{work}/secret"], None, hs256),
        ("TLS, ES256 header token (JWKS)", tls + ["--jwks", f"{work}/jwks.json"], context, es256),
    ]
    kafka = subprocess.Popen([args.binary, "dev-kafka", "--partitions", "2"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    bootstrap = kafka.stdout.readline().strip()
    print(f"| case | upgrades/s | gateway CPU µs per upgrade |  (n={args.n}, {args.c} at a time, {os.cpu_count()} cores)")
    print("|---|---:|---:|")
    try:
        for name, flags, ssl_context, token_for in cases:
            serve = subprocess.Popen([args.binary, "serve", "--brokers", bootstrap, "--port", "0",
                                      "--max-connections", "100000", *flags],
                                     stdout=subprocess.PIPE, stderr=open(f"{work}/serve.log", "a"), text=True)
            port = int(serve.stdout.readline().strip().rsplit(":", 1)[1])
            scheme = "wss" if ssl_context else "ws"
            url = f"{scheme}://127.0.0.1:{port}/v1/ws"
            asyncio.run(run_case(url, 50, 4, ssl_context, token_for))  # warm-up
            before = cpu_seconds(serve.pid)
            elapsed = asyncio.run(run_case(url, args.n, args.c, ssl_context, token_for))
            cpu = cpu_seconds(serve.pid) - before
            print(f"| {name} | {args.n / elapsed:,.0f} | {cpu / args.n * 1e6:,.0f} |")
            serve.terminate()
            serve.wait(10)
    finally:
        kafka.terminate()


if __name__ == "__main__":
    main()
