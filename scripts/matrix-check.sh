#!/usr/bin/env bash
# probe --matrix against a fresh `serve`: the comparison table as measured over MQTTS (two-way
# TLS with --client-ca), HTTPS (one-way, as EnOS's) and CoAP over DTLS must reproduce
# capabilities.toml cell for cell, every cell an exchange can prove measured: static logins,
# three devices activated dynamically (one per protocol; HTTP refuses it), a client certificate
# over each TLS URL, and the downlinks by commands serve's API sends (--command-api). The cells
# no protocol can carry (a file over MQTT or CoAP, a command over HTTP) are "no exchange", not
# measured. Exit 1 on any MISMATCH or untested cell. Prints the table.
#
# What this proves: serve refuses by the same capabilities.toml the probe reads, so against
# serve the matrix checks serve, the probe and the table against each other (a table, a serve
# or a probe changed alone shows as a MISMATCH), not what EnOS itself does: run the probe
# against a tenant for that.
# Needs openssl. Usage: scripts/matrix-check.sh [path/to/enos-connect]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-./target/debug/enos-connect}")
dir=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }; rm -rf "$dir"; }
trap cleanup EXIT

# A private CA, serve's certificate for localhost, and a device certificate the CA signed.
ec() { openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$dir/$1.key" \
  -out "$dir/$1.csr" -subj "/CN=$2" 2>/dev/null; }
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$dir/ca.key" \
  -out "$dir/ca.pem" -days 2 -subj "/CN=matrix-check CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
sign() {
  printf '%s\n' "$2" > "$dir/$1.ext"
  openssl x509 -req -in "$dir/$1.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
    -out "$dir/$1.pem" -days 2 -extfile "$dir/$1.ext" 2>/dev/null
}
ec server localhost
sign server "subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
ec device meter-0042
sign device "extendedKeyUsage=clientAuth"

# The examples' registry and three devices of the same product that are not activated yet.
cp examples/registry.toml "$dir/registry.toml"
for i in 1 2 3; do
  printf '\n[[devices]]\nproduct = "Pk7Xy2"\nkey = "matrix-%s"\n' "$i" >> "$dir/registry.toml"
done

"$bin" serve --registry "$dir/registry.toml" --mqtt off --http off --coap off --console off \
  --mqtts 127.0.0.1:0 --https 127.0.0.1:0 --coaps 127.0.0.1:0 \
  --tls-cert "$dir/server.pem" --tls-key "$dir/server.key" --client-ca "$dir/ca.pem" \
  >"$dir/events" 2>"$dir/err" &
pid=$!
for _ in $(seq 100); do
  [ -s "$dir/events" ] && break
  sleep 0.05
done
listening=$(head -n 1 "$dir/events")
port() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]].rsplit(":", 1)[1])' "$listening" "$1"; }

# The activated devices' secrets are written to DK.secret in the current folder: the temporary one.
cd "$dir"
set +e
ENOS_DEVICE_SECRET=Example-Device-Secret ENOS_PRODUCT_SECRET=Example-Product-Secret "$bin" probe --matrix \
  "mqtts://localhost:$(port mqtts)" "https://localhost:$(port https)" "coaps://127.0.0.1:$(port coaps)" \
  --product-key Pk7Xy2 --device-key meter-0042 --measurepoint temp=21.5 --file-point temp \
  --activate matrix-1,matrix-2,matrix-3 --cert device.pem --key device.key --ca ca.pem \
  --command-api "https://localhost:$(port https)/twin/commands" | tee table
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" -ne 0 ]; then
  echo "matrix-check: probe --matrix exited $rc (a MISMATCH or a failed probe)" >&2
  exit 1
fi
# A cell reads `TABLE: untested`; the legend above the table names the word too.
if grep -qE '^│.*: untested' table; then
  echo "matrix-check: some cells were not measured" >&2
  exit 1
fi
echo "matrix-check: $(tail -n 1 table)"
echo "matrix-check: serve, the probe and capabilities.toml agree on every cell an exchange can prove (against serve; EnOS itself is not measured here)"
