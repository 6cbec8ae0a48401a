"""The cluster under test: etcd, the development Kafka, gateway nodes with TLS and HAProxy
(TLS passthrough, SNI routing) on 127.0.0.1 with free ports, and the client-side tools to
reach them by name (`example.test`, `serverN.example.test`) without DNS.

Process control, the WebSocket client, the schema checker and the Kafka helpers are the
end-to-end suite's (Tests/e2e), imported from there.
"""
from __future__ import annotations

import asyncio
import base64
import collections
import json
import pathlib
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
E2E = REPO / "Tests" / "e2e"
if str(E2E) not in sys.path:
    sys.path.insert(1, str(E2E))

import aiohttp  # noqa: E402
import websockets  # noqa: E402

import kafkatools  # noqa: E402  (Tests/e2e)
from harness import (SUBPROTOCOL, CaseError, Client, Ctx, HandshakeRefused, Proc,  # noqa: E402,F401
                     WsTransport, now_ms, settle)

DOMAIN = "example.test"
LOOPBACK = "127.0.0.1"
DOCS_TOPIC, DOCS_PARTITIONS = "docs", 12
CHAT_TOPIC, CHAT_PARTITIONS = "chat", 6
SOLO_TOPIC, SOLO_PARTITIONS = "solo", 8
BASE_NODES = ("server1", "server2", "server3")
EXTRA_NODE = "server4"
ETCD_PREFIX = "/streamgate"


# --- names without DNS ----------------------------------------------------------------------------

_real_getaddrinfo = socket.getaddrinfo


def _is_ours(host) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    h = host.rstrip(".").lower()
    return h == DOMAIN or h.endswith("." + DOMAIN)


def _getaddrinfo(host, *args, **kwargs):
    if _is_ours(host):
        return _real_getaddrinfo(LOOPBACK, *args, **kwargs)
    return _real_getaddrinfo(host, *args, **kwargs)


def install_resolver():
    """`example.test` and `*.example.test` resolve to 127.0.0.1 inside this process only
    (asyncio, websockets and aiohttp all resolve through socket.getaddrinfo, so redirects
    to another name are followed by the real client code)."""
    socket.getaddrinfo = _getaddrinfo


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((LOOPBACK, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def partition_of(channel: str, partitions: int = DOCS_PARTITIONS) -> int:
    """Kafka's default partitioner (murmur2 of the key, positive, modulo): the contract's."""
    return kafkatools.partition_for(channel, partitions)


def topic_of(channel: str) -> tuple[str, int]:
    """(topic, partitions) of a channel in the suite's configuration."""
    ns = channel.split(":", 1)[0] if ":" in channel else ""
    if ns == "chat":
        return CHAT_TOPIC, CHAT_PARTITIONS
    if ns == "solo":
        return SOLO_TOPIC, SOLO_PARTITIONS
    if ns in ("doc", "capped"):
        return DOCS_TOPIC, DOCS_PARTITIONS
    return "streamgate.events", 4


def host_of(url: str) -> str:
    return (urllib.parse.urlsplit(url).hostname or "").lower()


def node_of_host(host: str) -> str | None:
    h = host.lower()
    if h.endswith("." + DOMAIN):
        return h[: -len(DOMAIN) - 1]
    return None


def node_of_url(url: str) -> str | None:
    return node_of_host(host_of(url))


def with_query(url: str, query: str) -> str:
    return url + ("&" if "?" in url else "?") + query


# --- the nodes -------------------------------------------------------------------------------------

class Node:
    def __init__(self, name: str, port: int, lb_port: int):
        self.name = name
        self.port = port
        self.lb_port = lb_port
        self.proc: Proc | None = None
        self.starts = 0

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive

    @property
    def host(self) -> str:
        return f"{self.name}.{DOMAIN}"

    @property
    def public_url(self) -> str:
        """What the node registers and what 302, locate and moved point at (through HAProxy)."""
        return f"wss://{self.host}:{self.lb_port}"

    @property
    def https(self) -> str:
        return f"https://{self.host}:{self.lb_port}"

    @property
    def direct_https(self) -> str:
        """The node's own port, with its name (not through HAProxy)."""
        return f"https://{self.host}:{self.port}"


class ClusterCtx(Ctx):
    """The e2e suite's Ctx (processes, clients, schema checks, counts) plus the cluster."""

    def __init__(self, args, workdir: pathlib.Path, binary: str):
        super().__init__(args, workdir, binary)
        self.topic = DOCS_TOPIC
        self.partitions = 4  # the default topic's, for dev-kafka
        (self.etcd_port, self.etcd_peer_port, self.lb_port, self.stats_port,
         *node_ports) = free_ports(4 + len(BASE_NODES) + 1)
        self.nodes: dict[str, Node] = {}
        for name, port in zip((*BASE_NODES, EXTRA_NODE), node_ports):
            self.nodes[name] = Node(name, port, self.lb_port)
        self.lease_ttl = float(getattr(args, "lease_ttl", 4))
        self.etcd: Proc | None = None
        self.etcd_dir = workdir / "etcd"
        self.haproxy: Proc | None = None
        self.certs = workdir / "certs"
        self.client_ssl: ssl.SSLContext | None = None
        self.placement = False  # does the binary have --etcd (set by detect_placement)
        self.config_path = workdir / "namespaces.json"
        self.solo_config_path = workdir / "namespaces-solo.json"
        self.chromium = None
        self.http_session: aiohttp.ClientSession | None = None
        self.setup_error: str | None = None
        self.membership_changed = True  # a node started or stopped since placement last settled

    # -- urls --
    @property
    def etcd_url(self) -> str:
        return f"http://{LOOPBACK}:{self.etcd_port}"

    @property
    def rr_https(self) -> str:
        """The round-robin name through HAProxy."""
        return f"https://{DOMAIN}:{self.lb_port}"

    @property
    def rr_wss(self) -> str:
        return f"wss://{DOMAIN}:{self.lb_port}"

    def node(self, name: str) -> Node:
        return self.nodes[name]

    def live_nodes(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.alive]

    # -- binary --
    async def detect_placement(self):
        out = await asyncio.to_thread(subprocess.run, [self.binary, "serve", "--help"], capture_output=True,
                                      timeout=30)
        text = (out.stdout + out.stderr).decode(errors="replace")
        self.placement = "--etcd" in text and "--public-url" in text
        return self.placement

    # -- certificates --
    async def make_certs(self):
        script = REPO / "ops" / "cluster" / "certs.sh"
        if not script.exists():
            raise CaseError(f"{script} is missing")
        r = await asyncio.to_thread(subprocess.run, ["bash", str(script), str(self.certs), DOMAIN],
                                    capture_output=True, timeout=120)
        if r.returncode != 0:
            raise CaseError(f"certs.sh exit {r.returncode}: {r.stderr.decode(errors='replace')[-400:]}")
        for f in ("ca.pem", "server.pem", "server.key"):
            if not (self.certs / f).is_file():
                raise CaseError(f"certs.sh made no {f}")
        self.client_ssl = ssl.create_default_context(cafile=str(self.certs / "ca.pem"))

    def leaf_spki_b64(self) -> str:
        """SHA-256 of the server certificate's SubjectPublicKeyInfo, base64 (Chromium's SPKI list)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        pem = (self.certs / "server.pem").read_bytes()
        cert = x509.load_pem_x509_certificates(pem)[0]
        spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
        h = hashes.Hash(hashes.SHA256())
        h.update(spki)
        return base64.b64encode(h.finalize()).decode()

    # -- configuration --
    def write_configs(self):
        fanout = {"chat": {"topic": CHAT_TOPIC, "mode": "fanout"}, "": {"topic": "streamgate.events"}}
        if self.placement:
            ns = {"doc": {"topic": DOCS_TOPIC, "mode": "affinity", "max_peers": 50},
                  "capped": {"topic": DOCS_TOPIC, "mode": "affinity", "max_peers": 5}, **fanout}
        else:
            ns = dict(fanout)
        self.config_path.write_text(json.dumps({"namespaces": ns}, indent=2))
        solo = dict(ns)
        solo["solo"] = {"topic": SOLO_TOPIC, "mode": "affinity"}
        self.solo_config_path.write_text(json.dumps({"namespaces": solo}, indent=2))

    # -- etcd --
    async def start_etcd(self, fresh: bool = True) -> Proc:
        if fresh and self.etcd_dir.exists():
            import shutil
            shutil.rmtree(self.etcd_dir)
        argv = ["bash", str(REPO / "ops" / "etcd" / "start.sh"), "--data-dir", str(self.etcd_dir),
                "--host", LOOPBACK, "--client-port", str(self.etcd_port), "--peer-port", str(self.etcd_peer_port)]
        if not (REPO / "ops" / "etcd" / "start.sh").exists():
            argv = ["etcd", "--name", "e2e-cluster", "--data-dir", str(self.etcd_dir),
                    "--listen-client-urls", self.etcd_url, "--advertise-client-urls", self.etcd_url,
                    "--listen-peer-urls", f"http://{LOOPBACK}:{self.etcd_peer_port}",
                    "--initial-advertise-peer-urls", f"http://{LOOPBACK}:{self.etcd_peer_port}",
                    "--initial-cluster", f"e2e-cluster=http://{LOOPBACK}:{self.etcd_peer_port}"]
        self.etcd = await self.procs.start("etcd", argv)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not self.etcd.alive:
                raise CaseError(f"etcd exited (rc={self.etcd.p.returncode}): {self.etcd.tail(5)}")
            try:
                st, _, body = await self.http("GET", f"{self.etcd_url}/health", timeout=2)
                if st == 200 and json.loads(body).get("health") == "true":
                    return self.etcd
            except Exception:
                pass
            await asyncio.sleep(0.2)
        raise CaseError("etcd not healthy within 30s")

    async def etcd_call(self, path: str, body: dict, timeout: float = 5.0) -> dict:
        st, _, text = await self.http("POST", f"{self.etcd_url}{path}", body=json.dumps(body), timeout=timeout)
        if st != 200:
            raise CaseError(f"etcd {path}: HTTP {st} {text[:200]}")
        return json.loads(text)

    async def etcd_range(self, prefix: str) -> dict[str, tuple[str, int]]:
        """key -> (value, lease id) of every key under prefix, read from etcd itself."""
        k = prefix.encode()
        end = k[:-1] + bytes([k[-1] + 1])
        res = await self.etcd_call("/v3/kv/range", {"key": base64.b64encode(k).decode(),
                                                    "range_end": base64.b64encode(end).decode()})
        out = {}
        for kv in res.get("kvs", []):
            key = base64.b64decode(kv["key"]).decode()
            val = base64.b64decode(kv.get("value", "")).decode(errors="replace")
            out[key] = (val, int(kv.get("lease", 0) or 0))
        return out

    async def etcd_owners(self, topic: str = DOCS_TOPIC) -> dict[int, tuple[str, int]]:
        """partition -> (owner node id, lease) from etcd."""
        prefix = f"{ETCD_PREFIX}/owners/{topic}/"
        out = {}
        for key, v in (await self.etcd_range(prefix)).items():
            try:
                out[int(key[len(prefix):])] = v
            except ValueError:
                pass
        return out

    async def etcd_nodes(self) -> dict[str, tuple[dict, int]]:
        prefix = f"{ETCD_PREFIX}/nodes/"
        out = {}
        for key, (val, lease) in (await self.etcd_range(prefix)).items():
            try:
                out[key[len(prefix):]] = (json.loads(val), lease)
            except ValueError:
                out[key[len(prefix):]] = ({"raw": val}, lease)
        return out

    # -- Kafka --
    async def start_kafka(self):
        proc, bs = await self.start_dev_kafka("dev-kafka", ["--topic", f"{DOCS_TOPIC}:{DOCS_PARTITIONS}",
                                                            "--topic", f"{CHAT_TOPIC}:{CHAT_PARTITIONS}",
                                                            "--topic", f"{SOLO_TOPIC}:{SOLO_PARTITIONS}"])
        self.case_procs.remove(proc)
        self.kafka, self.bootstrap = proc, bs

    # -- gateway nodes --
    def node_argv(self, node: Node, node_id: str | None = None, port: int | None = None,
                  config: pathlib.Path | None = None, extra=()) -> list[str]:
        argv = [self.binary, "serve", "--brokers", self.bootstrap, "--host", LOOPBACK,
                "--port", str(node.port if port is None else port), "--node-id", node_id or node.name,
                "--tls-cert", str(self.certs / "server.pem"), "--tls-key", str(self.certs / "server.key"),
                "--config", str(config or self.config_path)]
        if self.placement:
            argv += ["--etcd", self.etcd_url, "--public-url", node.public_url,
                     "--lease-ttl", f"{self.lease_ttl:g}"]
        return argv + list(extra)

    async def start_node(self, name: str, *, config: pathlib.Path | None = None, extra=(),
                         ready_timeout: float = 30) -> Node:
        node = self.nodes[name]
        if node.alive:
            return node
        node.starts += 1
        self.membership_changed = True
        node.proc = await self.procs.start(f"{name}-{node.starts}", self.node_argv(node, config=config, extra=extra))
        await node.proc.wait_line(lambda l: l.startswith("listening on "), 30 + self.lease_ttl)
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if not node.alive:
                raise CaseError(f"{name} exited (rc={node.proc.p.returncode}): {node.proc.tail(4)}")
            try:
                st, _, _ = await self.http("GET", node.direct_https + "/readyz", timeout=2)
                if st == 200:
                    return node
            except Exception:
                pass
            await asyncio.sleep(0.2)
        raise CaseError(f"{name}: /readyz not 200 within {ready_timeout}s")

    async def stop_node(self, name: str, sig=signal.SIGTERM, timeout: float = 30) -> int | None:
        node = self.nodes[name]
        if node.proc is None:
            return None
        self.membership_changed = True
        if node.alive:
            node.proc.send_signal(signal.SIGCONT)  # a paused node cannot drain
        return await node.proc.stop(sig, timeout)

    # -- HAProxy --
    async def start_haproxy(self):
        script = REPO / "ops" / "haproxy" / "render-config.py"
        if not script.exists():
            raise CaseError(f"{script} is missing")
        argv = [sys.executable, str(script), "--listen", f"{LOOPBACK}:{self.lb_port}", "--domain", DOMAIN,
                "--stats", f"{LOOPBACK}:{self.stats_port}", "--ca", str(self.certs / "ca.pem"),
                "--maxconn", "4000"]
        for n in self.nodes.values():
            argv += ["--node", f"{n.name}={LOOPBACK}:{n.port}"]
        r = await asyncio.to_thread(subprocess.run, argv, capture_output=True, timeout=30)
        if r.returncode != 0:
            raise CaseError(f"render-config.py exit {r.returncode}: {r.stderr.decode(errors='replace')[-400:]}")
        cfg = self.workdir / "haproxy.cfg"
        cfg.write_bytes(r.stdout)
        haproxy = "haproxy" if subprocess.run(["which", "haproxy"], capture_output=True).returncode == 0 \
            else "/usr/sbin/haproxy"
        chk = await asyncio.to_thread(subprocess.run, [haproxy, "-c", "-q", "-f", str(cfg)], capture_output=True,
                                      timeout=30)
        if chk.returncode != 0:
            raise CaseError(f"haproxy -c refused the rendered configuration: "
                            f"{(chk.stdout + chk.stderr).decode(errors='replace')[-400:]}")
        self.haproxy = await self.procs.start("haproxy", [haproxy, "-db", "-f", str(cfg)])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if not self.haproxy.alive:
                raise CaseError(f"haproxy exited: {self.haproxy.tail(5)}")
            try:
                st, _, _ = await self.http("GET", f"http://{LOOPBACK}:{self.stats_port}/healthz", timeout=2)
                if st == 200:
                    return
            except Exception:
                pass
            await asyncio.sleep(0.2)
        raise CaseError("haproxy not answering /healthz within 20s")

    async def haproxy_states(self) -> dict[tuple[str, str], str]:
        """(backend, server) -> state (UP, DOWN, ...), from HAProxy's stats."""
        st, _, body = await self.http("GET", f"http://{LOOPBACK}:{self.stats_port}/stats;csv", timeout=3)
        out = {}
        if st != 200:
            return out
        lines = body.splitlines()
        if not lines:
            return out
        head = lines[0].lstrip("# ").split(",")
        i_px, i_sv, i_st = head.index("pxname"), head.index("svname"), head.index("status")
        for ln in lines[1:]:
            f = ln.split(",")
            if len(f) > i_st and f[i_sv] not in ("FRONTEND", "BACKEND"):
                out[(f[i_px], f[i_sv])] = f[i_st]
        return out

    async def wait_haproxy(self, up: set[str], timeout: float = 20) -> bool:
        """Waits until exactly `up` are UP in the round robin and each of them is UP behind
        its own name (SNI backend)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                st = await self.haproxy_states()
                rr = {sv for (px, sv), v in st.items() if px == "streamgate_all" and v == "UP"}
                named = all(st.get((f"node_{n}", n)) == "UP" for n in up)
                if rr == set(up) and named:
                    return True
            except Exception:
                pass
            await asyncio.sleep(0.3)
        return False

    # -- HTTP --
    async def session(self) -> aiohttp.ClientSession:
        if self.http_session is None or self.http_session.closed:
            self.http_session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True, ssl=self.client_ssl or True))
        return self.http_session

    async def http(self, method: str, url: str, *, headers=None, body=None, timeout: float = 5.0):
        """(status, lower-case headers, text), no redirects followed."""
        s = await self.session()
        kw = {}
        if url.startswith("https:") and self.client_ssl is not None:
            kw["ssl"] = self.client_ssl
        async with s.request(method, url, headers=headers, data=body, allow_redirects=False,
                             timeout=aiohttp.ClientTimeout(total=timeout), **kw) as r:
            text = await r.text()
            return r.status, {k.lower(): v for k, v in r.headers.items()}, text

    async def get_json(self, url: str, *, headers=None, timeout: float = 5.0):
        st, hd, text = await self.http("GET", url, headers=headers, timeout=timeout)
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        return st, hd, body, text

    async def cluster_view(self, name: str, direct: bool = False) -> dict:
        n = self.nodes[name]
        st, _, body, text = await self.get_json((n.direct_https if direct else n.https) + "/v1/cluster")
        if st != 200 or not isinstance(body, dict):
            raise CaseError(f"GET /v1/cluster on {name}: HTTP {st} {text[:200]}")
        return body

    async def locate(self, via: str, channel: str, headers=None):
        """(status, headers, json) of GET /v1/locate/{channel} through HAProxy on node `via`
        (a node name) or the round-robin name (via=None)."""
        base = self.nodes[via].https if via else self.rr_https
        st, hd, body, _ = await self.get_json(f"{base}/v1/locate/{channel}", headers=headers)
        return st, hd, body

    # -- placement --
    async def placement_snapshot(self, names) -> tuple[bool, str, dict]:
        """(settled, why not, etcd owners {partition: node}) for the nodes `names` being the cluster."""
        names = set(names)
        owners = {p: v[0] for p, v in (await self.etcd_owners()).items()}
        regs = await self.etcd_nodes()
        if set(regs) != names:
            return False, f"etcd nodes {sorted(regs)} != {sorted(names)}", owners
        if sorted(owners) != list(range(DOCS_PARTITIONS)):
            return False, f"etcd owners cover {sorted(owners)}", owners
        if not set(owners.values()) <= names:
            return False, f"owners {sorted(set(owners.values()))} not all among {sorted(names)}", owners
        for name in sorted(names):
            try:
                v = await self.cluster_view(name, direct=True)
            except Exception as e:
                return False, f"{name} /v1/cluster: {e}", owners
            ids = sorted(x.get("id") for x in v.get("nodes", []))
            if ids != sorted(names):
                return False, f"{name} sees nodes {ids}", owners
            unowned = [u for u in v.get("unowned") or [] if str(u).startswith(DOCS_TOPIC + "/")]
            if unowned:
                return False, f"{name} sees unowned {unowned[:4]}", owners
            seen = {}
            for x in v.get("nodes", []):
                for p in x.get("partitions", []):
                    t, _, k = str(p).partition("/")
                    if t == DOCS_TOPIC:
                        seen[int(k)] = x.get("id")
            if seen != owners:
                return False, f"{name}'s /v1/cluster owners differ from etcd", owners
        return True, "", owners

    # A partition with connections is released only after they left or a few seconds passed,
    # so after a membership change the owners stay put that long in the middle of a move.
    SETTLE_AFTER_CHANGE = 4.5

    async def wait_settled(self, names=BASE_NODES, timeout: float = 40, quiet: float | None = None) -> dict:
        """Waits until etcd and every node agree that `names` are the cluster and own all docs
        partitions, unchanged for `quiet` seconds (default: long enough for a hand-off in
        progress to finish). Returns {partition: owner}."""
        if quiet is None:
            quiet = self.SETTLE_AFTER_CHANGE
        deadline = time.monotonic() + timeout
        last, since, why = None, None, ""
        while time.monotonic() < deadline:
            try:
                ok, why, owners = await self.placement_snapshot(names)
            except Exception as e:
                ok, why, owners = False, f"{type(e).__name__}: {e}", {}
            if ok:
                if owners == last:
                    if time.monotonic() - since >= quiet:
                        return owners
                else:
                    last, since = owners, time.monotonic()
            else:
                last = None
            await asyncio.sleep(0.3)
        raise CaseError(f"placement not settled within {timeout}s: {why}")

    async def ensure_cluster(self, names=BASE_NODES):
        """server1..3 running (restarted if a case stopped them), nothing else; placement settled."""
        for n in self.nodes.values():
            if n.name not in names and n.proc is not None and n.alive:
                await self.stop_node(n.name)
                self.membership_changed = True
        if self.etcd is None or not self.etcd.alive:
            raise CaseError("etcd is not running")
        changed = [n for n in names if not self.nodes[n].alive]
        await asyncio.gather(*(self.start_node(n) for n in changed))
        if self.placement:
            owners = await self.wait_settled(names, quiet=None if changed or self.membership_changed else 0.6)
            self.membership_changed = False
        else:
            owners = {}
        if not await self.wait_haproxy(set(names), 20):
            raise CaseError(f"HAProxy does not see exactly {sorted(names)} up: {await self.haproxy_states()}")
        return owners

    def need_placement(self):
        if not self.placement:
            raise CaseError("the binary has no --etcd/--public-url (placement not built yet): case not run")

    # -- clients --
    async def open_ws(self, url: str, *, name: str = "", headers=None, timeout: float = 8.0) -> Client:
        """One WebSocket (websockets) to url, following 302s itself; raises HandshakeRefused
        (status, headers) for any other refusal."""
        t = await WsTransport.open(url, [SUBPROTOCOL], headers, timeout, ssl=self.client_ssl)
        c = Client(self, t, name or f"ws-{len(self.clients)}", self.tag)
        c.url = url
        req_host = t.ws.request.headers.get("Host", "") if t.ws.request else ""
        c.final_host = req_host.rsplit(":", 1)[0].lower()
        c.final_path = t.ws.request.path if t.ws.request else ""
        sslobj = t.ws.transport.get_extra_info("ssl_object")
        c.sni = sslobj.server_hostname if sslobj else None
        c.node = node_of_host(c.sni or c.final_host)
        c.opened = time.monotonic()
        self.clients.append(c)
        return c

    async def open_bound(self, url: str, *, name: str = "", deadline: float | None = None,
                         retry_429: bool = False, timeout: float = 6.0) -> tuple[Client, dict]:
        """A bound connection (/v1/ws/{channel}) that got its `subscribed` frame: follows
        302, retries 503 (after Retry-After) and connection failures until `deadline`
        (monotonic; default now + 30 s). Returns (client, subscribed frame); the client
        has .attempts and .refusals."""
        deadline = deadline or time.monotonic() + 30
        attempts, refusals = 0, collections.Counter()
        last = None
        while True:
            attempts += 1
            try:
                c = await self.open_ws(url, name=name, timeout=min(timeout, max(1.0, deadline - time.monotonic())))
                try:
                    sub = await asyncio.wait_for(asyncio.shield(c.bound_subscribed), 10)
                except asyncio.TimeoutError:
                    closed = c.closed.result() if c.closed.done() else None
                    await c.close()
                    last = f"no subscribed frame (closed {closed}, other {[f.get('type') for f in c.other][:3]})"
                    refusals["no_subscribed"] += 1
                    if time.monotonic() >= deadline:
                        raise CaseError(f"{name}: {url}: {last}") from None
                    await asyncio.sleep(0.3)
                    continue
                c.attempts, c.refusals = attempts, refusals
                if c.node is None and self.placement:
                    # reached through the round-robin name without a redirect: the node that
                    # answered 101 held the partition, which etcd names
                    topic, _ = topic_of(sub.get("channel", ""))
                    if topic in (DOCS_TOPIC, SOLO_TOPIC):
                        try:
                            c.node = (await self.etcd_owners(topic)).get(sub.get("partition"), (None,))[0]
                        except Exception:
                            pass
                return c, sub
            except HandshakeRefused as e:
                refusals[e.status] += 1
                last = f"HTTP {e.status} {e.headers.get('retry-after')!r} {e.body[:120]!r}"
                if e.status == 429 and not retry_429:
                    raise
                if e.status not in (503, 429, 502):
                    raise CaseError(f"{name}: {url}: refused {last}") from None
                wait = 1.0
                try:
                    wait = float(e.headers.get("retry-after", "1"))
                except ValueError:
                    pass
                wait = min(max(wait, 0.1), 2.0)
            except CaseError:
                raise
            except (OSError, asyncio.TimeoutError, TimeoutError, ssl.SSLError, websockets.exceptions.WebSocketException,
                    EOFError) as e:
                refusals[type(e).__name__] += 1
                last = f"{type(e).__name__}: {e}"
                wait = 0.3
            if time.monotonic() + wait >= deadline:
                raise CaseError(f"{name}: {url}: not connected after {attempts} attempts; last: {last}; "
                                f"refusals {dict(refusals)}")
            await asyncio.sleep(wait)

    async def served_by(self, client: Client, channel: str | None, topic: str, partitions: int | None = None) -> str | None:
        """Publishes a marker on `client` and reads its record back from Kafka: the sg-node
        header says which node served the connection."""
        rid = client.next_id()
        req = {"type": "publish", "id": rid, "data": {"probe": rid, "c": client.name}}
        if channel is not None:
            req["channel"] = channel
        reply = await client.request(req, timeout=10)
        if reply.get("type") != "ack":
            raise CaseError(f"{client.name}: probe publish answered {reply}")
        p, off = reply["partition"], reply["offset"]
        recs = await asyncio.to_thread(kafkatools.read_range, self.bootstrap, topic, p, off, off + 1, 20.0)
        if not recs:
            return None
        return recs[0].header_map().get("sg-node")

    async def close(self):
        if self.http_session is not None:
            await self.http_session.close()
