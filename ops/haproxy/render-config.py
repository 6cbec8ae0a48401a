#!/usr/bin/env python3
"""Prints an HAProxy 2.6 configuration that puts a Streamgate cluster behind one TLS address.

    ops/haproxy/render-config.py --listen 127.0.0.1:8443 --domain example.test \\
        --node server1=127.0.0.1:9001 --node server2=127.0.0.1:9002 --node server3=127.0.0.1:9003 \\
        [--stats 127.0.0.1:8404] [--ca CA.pem] [--health-check readyz|tcp] [--dns] [--maxconn 100000] \\
        [--log stdout|none|ADDRESS]

HAProxy passes TLS through (mode tcp) and never decrypts: each node terminates TLS itself with a certificate
for DOMAIN and *.DOMAIN, so it sees the client's token. Routing reads only the server name (SNI) of the
ClientHello:
  - SNI `serverN.DOMAIN` goes to node serverN (what a 302, `locate` or `moved` URL of an affinity channel names);
  - any other SNI (`DOMAIN` itself) or none goes round robin over the nodes that answer `/readyz` with 200,
    so a draining node receives no new round-robin connections.
The timeouts suit WebSocket connections that stay open for hours and are kept alive by pings every 25 s.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import shlex
import sys

NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
DNS_NAME = re.compile(rf"^(?=.{{1,253}}$){LABEL}(\.{LABEL})*$")


def address(text: str) -> str:
    """Checks HOST:PORT (an IPv6 host in brackets) and returns it unchanged."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an IPv6 address: {text!r}") from None
        return f"{host}:{port}"
    if ":" in host:
        raise argparse.ArgumentTypeError(f"put an IPv6 address in brackets: {text!r}")
    return f"{host}:{port}"


def haproxy_address(addr: str) -> str:
    """HAProxy's spelling: an IPv6 address without brackets after the `ipv6@` prefix."""
    if addr.startswith("["):
        host, _, port = addr[1:].partition("]:")
        return f"ipv6@{host}:{port}"
    return addr


def node(text: str) -> tuple[str, str]:
    name, sep, addr = text.partition("=")
    if not sep or not NODE_NAME.match(name):
        raise argparse.ArgumentTypeError(f"expected NAME=HOST:PORT with NAME like server1, got {text!r}")
    return name, address(addr)


def domain(text: str) -> str:
    if not DNS_NAME.match(text):
        raise argparse.ArgumentTypeError(f"not a DNS name: {text!r}")
    return text.lower()


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", type=address, default="127.0.0.1:8443",
                        help="address of the TLS frontend (default 127.0.0.1:8443)")
    parser.add_argument("--domain", type=domain, default="example.test",
                        help="public domain; node N is reached as serverN.DOMAIN (default example.test)")
    parser.add_argument("--node", type=node, action="append", required=True, metavar="NAME=HOST:PORT",
                        help="a node (repeatable); NAME is its node id, routed from SNI NAME.DOMAIN")
    parser.add_argument("--stats", type=address, metavar="HOST:PORT",
                        help="plain HTTP frontend with /healthz (200 while HAProxy runs), /stats and /metrics")
    parser.add_argument("--ca", metavar="FILE",
                        help="CA file to verify the nodes' certificates in health checks (default: not verified)")
    parser.add_argument("--health-check", choices=["readyz", "tcp"], default="readyz",
                        help="readyz: GET /readyz over TLS must answer 200; tcp: a TCP connect (default readyz)")
    parser.add_argument("--maxconn", type=int, default=100000,
                        help="concurrent client connections HAProxy accepts; each uses two file descriptors "
                             "(default 100000)")
    parser.add_argument("--dns", action="store_true",
                        help="node hosts are DNS names resolved while running (Kubernetes pods): HAProxy starts even "
                             "when a node does not resolve yet and follows address changes")
    parser.add_argument("--log", default="stdout",
                        help="log target: stdout (HAProxy in the foreground), none, or a syslog ADDRESS")
    arguments = parser.parse_args(argv)
    names = [name for name, _ in arguments.node]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        parser.error(f"node named more than once: {', '.join(duplicates)}")
    if arguments.maxconn < 1:
        parser.error("--maxconn must be positive")
    return arguments


def server_line(name: str, addr: str, arguments: argparse.Namespace) -> str:
    line = f"    server {name} {haproxy_address(addr)} check"
    if arguments.health_check == "readyz":
        sni = f"{name}.{arguments.domain}"
        if arguments.ca:
            line += f" check-ssl check-sni {sni} verify required ca-file {arguments.ca} verifyhost {sni}"
        else:
            line += f" check-ssl check-sni {sni} verify none"
    return line


def render(arguments: argparse.Namespace, argv: list[str]) -> str:
    d = arguments.domain
    nodes: list[tuple[str, str]] = arguments.node
    out: list[str] = []
    emit = out.append

    emit("# Rendered by ops/haproxy/render-config.py; edit the command line, not this file.")
    emit("# " + shlex.join(["ops/haproxy/render-config.py", *argv]))
    emit("global")
    # Each proxied connection holds two descriptors (client side, node side); HAProxy raises its own limit to fit.
    emit(f"    maxconn {arguments.maxconn}")
    if arguments.log == "stdout":
        emit("    log stdout format raw local0 info")
    elif arguments.log != "none":
        emit(f"    log {arguments.log} local0 info")
    emit("")
    emit("defaults")
    emit("    mode tcp")
    if arguments.log != "none":
        emit("    log global")
        emit("    option tcplog")
        emit("    option dontlognull")
    emit(f"    maxconn {arguments.maxconn}")
    # A node that does not accept within 2 s is tried again (retries) or, in round robin, another one is.
    emit("    timeout connect 2s")
    # WebSockets live for hours; the gateway pings every 25 s, so an hour of silence means a dead peer.
    emit("    timeout client 1h")
    emit("    timeout server 1h")
    emit("    timeout tunnel 1h")
    # A half-closed connection (one side sent FIN) does not hold a slot for an hour.
    emit("    timeout client-fin 30s")
    emit("    timeout server-fin 30s")
    emit("    timeout check 3s")
    emit("    retries 2")
    emit("    option redispatch")
    # Health checks every 2 s: a node is out after 2 failures (about 4 s) and back after 2 successes.
    if arguments.dns:
        # Resolve through the system's resolver at run time; a node that does not resolve yet starts DOWN.
        emit("    default-server inter 2s fall 2 rise 2 resolvers system init-addr last,libc,none")
    else:
        emit("    default-server inter 2s fall 2 rise 2")
    emit("")
    if arguments.dns:
        emit("resolvers system")
        emit("    parse-resolv-conf")
        emit("    hold valid 10s")
        emit("    hold obsolete 30s")
        emit("")
    emit("frontend streamgate_tls")
    emit(f"    bind {haproxy_address(arguments.listen)}")
    # Wait (up to 5 s) for the whole ClientHello, then route on its server name; TLS stays end to end.
    emit("    tcp-request inspect-delay 5s")
    emit("    tcp-request content accept if { req_ssl_hello_type 1 }")
    # Anything that is not TLS has no business here.
    emit("    tcp-request content reject")
    for name, _ in nodes:
        emit(f"    use_backend node_{name} if {{ req_ssl_sni -i {name}.{d} }}")
    emit("    default_backend streamgate_all")
    emit("")
    emit("# Every node: clients that do not need one particular node (SNI " + d + " or none).")
    emit("backend streamgate_all")
    emit("    balance roundrobin")
    if arguments.health_check == "readyz":
        emit("    option httpchk")
        emit(f"    http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host {d}")
        emit("    http-check expect status 200")
    for name, addr in nodes:
        emit(server_line(name, addr, arguments))
    for name, addr in nodes:
        emit("")
        emit(f"# {name}.{d}: the URLs node {name} registers (302, locate, moved) come here.")
        emit(f"backend node_{name}")
        # Only a TCP check here: a draining node still answers its own clients (503, moved) until it exits.
        emit(f"    server {name} {haproxy_address(addr)} check")
    if arguments.stats:
        emit("")
        emit("# Plain HTTP, for operators and probes: /healthz, /stats, /metrics (Prometheus).")
        emit("frontend stats")
        emit("    mode http")
        emit(f"    bind {haproxy_address(arguments.stats)}")
        emit("    timeout client 10s")
        emit("    monitor-uri /healthz")
        emit("    http-request use-service prometheus-exporter if { path /metrics }")
        emit("    stats enable")
        emit("    stats uri /stats")
        emit("    stats refresh 5s")
        emit("    stats show-legends")
    return "\n".join(out) + "\n"


def main() -> None:
    argv = sys.argv[1:]
    sys.stdout.write(render(parse_arguments(argv), argv))


if __name__ == "__main__":
    main()
