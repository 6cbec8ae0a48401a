#!/usr/bin/env bash
# Installs what building, running and testing Streamgate need on Debian 12: librdkafka (linked as a
# system library), kcat, openssl (test certificates), etcd, HAProxy, curl and Chromium (the local cluster and its
# tests), and the Python packages the end-to-end suite drives the gateway with.
# Idempotent: does nothing that is already there.
set -euo pipefail

need_apt=()
dpkg -s librdkafka-dev >/dev/null 2>&1 || need_apt+=(librdkafka-dev)
dpkg -s pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
command -v kcat >/dev/null 2>&1 || need_apt+=(kcat)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# The JWKS fetch goes through the toolchain's networking library, which loads libcurl.
dpkg -s libcurl4 >/dev/null 2>&1 || need_apt+=(libcurl4)
# The local cluster (ops/cluster.sh): etcd holds placement, HAProxy routes by SNI, curl asks the nodes;
# Chromium is the browser client of the end-to-end suite.
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need_apt+=(etcd-client)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need_apt+=(haproxy)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
# promtool checks the alert rules of ops/monitoring/.
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
if [ "${#need_apt[@]}" -gt 0 ]; then
    echo "installing: ${need_apt[*]}" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v swift >/dev/null 2>&1; then
    echo "swift is not on PATH: install the Swift 6.3 toolchain first" >&2
    exit 1
fi

PY=${PYTHON:-python3}
PIP_PACKAGES=(websockets aiohttp confluent-kafka jsonschema pyjwt cryptography prometheus_client pyyaml)
if ! "$PY" -c 'import websockets, aiohttp, confluent_kafka, jsonschema, jwt, cryptography, prometheus_client, yaml' >/dev/null 2>&1; then
    echo "installing Python packages: ${PIP_PACKAGES[*]}" >&2
    "$PY" -m pip install -q --disable-pip-version-check "${PIP_PACKAGES[@]}" \
        || "$PY" -m pip install -q --disable-pip-version-check --break-system-packages "${PIP_PACKAGES[@]}"
fi
