#!/usr/bin/env bash
# Makes a test certificate authority and one server certificate for a local Streamgate cluster.
#
#   ops/cluster/certs.sh [--force] OUTDIR [DOMAIN]        (DOMAIN defaults to example.test)
#
# Writes, all PEM, EC P-256:
#   OUTDIR/ca.pem       the test CA's certificate (give it to clients: curl --cacert, a browser's trust store)
#   OUTDIR/ca.key       the test CA's key
#   OUTDIR/server.pem   the server certificate followed by ca.pem (the chain a node serves with --tls-cert)
#   OUTDIR/server.key   its key, PKCS#8 (--tls-key)
# The server certificate names DOMAIN, *.DOMAIN (so serverN.DOMAIN), localhost and 127.0.0.1 as subject
# alternative names, and is valid for 365 days.
#
# Idempotent: existing files are kept. The server certificate is made again (signed by the existing CA) only when
# it is missing, expires within a day or does not name DOMAIN; --force makes the CA and the certificate anew.
# Quiet on success; errors go to standard error with a non-zero exit.
set -euo pipefail

usage() { echo "usage: $0 [--force] OUTDIR [DOMAIN]" >&2; exit 2; }

force=0
positional=()
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        -h|--help) usage ;;
        -*) echo "unknown option: $arg" >&2; usage ;;
        *) positional+=("$arg") ;;
    esac
done
[ "${#positional[@]}" -ge 1 ] && [ "${#positional[@]}" -le 2 ] || usage
outdir=${positional[0]}
domain=${positional[1]:-example.test}
case "$domain" in
    *[!A-Za-z0-9.-]*|.*|*.|"") echo "not a DNS name: $domain" >&2; exit 2 ;;
esac

command -v openssl >/dev/null 2>&1 || { echo "openssl is not on PATH (ops/install-deps.sh installs it)" >&2; exit 1; }
mkdir -p "$outdir"
umask 077

# Every openssl call runs through this: its chatter is shown only when it fails.
run_openssl() {
    local log
    if ! log=$(openssl "$@" 2>&1); then
        echo "openssl $1 failed:" >&2
        echo "$log" >&2
        exit 1
    fi
}

work=$(mktemp -d "$outdir/.certs.XXXXXX")
trap 'rm -rf "$work"' EXIT

ca_pem="$outdir/ca.pem"
ca_key="$outdir/ca.key"
server_pem="$outdir/server.pem"
server_key="$outdir/server.key"

new_ca=0
if [ "$force" -eq 1 ] || [ ! -s "$ca_pem" ] || [ ! -s "$ca_key" ]; then
    cat >"$work/ca.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
x509_extensions = ca_ext
[dn]
CN = Streamgate test CA
O = Streamgate test
[ca_ext]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
    run_openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/ca.key"
    run_openssl req -new -x509 -config "$work/ca.cnf" -key "$work/ca.key" -sha256 -days 3650 \
        -out "$work/ca.pem"
    mv "$work/ca.key" "$ca_key"
    mv "$work/ca.pem" "$ca_pem"
    new_ca=1
fi

leaf_is_good() {
    [ -s "$server_pem" ] && [ -s "$server_key" ] || return 1
    openssl x509 -in "$server_pem" -noout -checkend 86400 >/dev/null 2>&1 || return 1
    openssl x509 -in "$server_pem" -noout -checkhost "$domain" 2>/dev/null | grep -q "does match" || return 1
    openssl x509 -in "$server_pem" -noout -checkhost "server1.$domain" 2>/dev/null | grep -q "does match" || return 1
    # The first certificate in server.pem must have been signed by this CA.
    openssl verify -CAfile "$ca_pem" "$server_pem" >/dev/null 2>&1 || return 1
}

if [ "$new_ca" -eq 1 ] || ! leaf_is_good; then
    cat >"$work/server.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = $domain
O = Streamgate test
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:$domain, DNS:*.$domain, DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
EOF
    run_openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/server.key"
    run_openssl req -new -config "$work/server.cnf" -key "$work/server.key" -sha256 -out "$work/server.csr"
    run_openssl x509 -req -in "$work/server.csr" -CA "$ca_pem" -CAkey "$ca_key" -CAcreateserial \
        -CAserial "$work/ca.srl" -sha256 -days 365 -extfile "$work/server.cnf" -extensions server_ext \
        -out "$work/leaf.pem"
    cat "$work/leaf.pem" "$ca_pem" >"$work/server.pem"
    run_openssl verify -CAfile "$ca_pem" "$work/server.pem"
    mv "$work/server.key" "$server_key"
    mv "$work/server.pem" "$server_pem"
fi
chmod 644 "$ca_pem" "$server_pem"
