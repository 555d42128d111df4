#!/usr/bin/env bash
# Starts the interop peers on loopback, or stops them by the process ids it recorded.
#   scripts/interop-peers.sh start DIR   -> writes DIR/peers.env (ports, CA, EnOS login) and DIR/pids
#   scripts/interop-peers.sh stop DIR
# Peers: mosquitto (plain, TLS with a CA made here by openssl, and a password file holding a
# precomputed EnOS login), coap-server-openssl (plain and DTLS-PSK), Python HTTP and HTTPS.
# Needs: mosquitto, mosquitto-clients, libcoap3-bin, openssl, python3, and a built enos-connect.
set -euo pipefail
cmd=${1:?start or stop}
dir=${2:?state directory}
bin=${ENOS_CONNECT_BIN:-./target/debug/enos-connect}
here=$(cd "$(dirname "$0")" && pwd)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
free_udp_pair() {
  # CoAP takes PORT for plain and PORT+1 for DTLS: both must be free.
  python3 - <<'PY'
import socket
for _ in range(200):
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); a.bind(("127.0.0.1", 0)); p = a.getsockname()[1]
    try:
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); b.bind(("127.0.0.1", p + 1)); b.close(); a.close(); print(p); break
    except OSError:
        a.close()
PY
}
wait_tcp() {
  for _ in $(seq 100); do
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2).close()" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "interop: nothing listens on port $1" >&2; return 1
}

case "$cmd" in
start)
  mkdir -p "$dir"
  chmod 755 "$dir"
  : > "$dir/pids"
  # A private CA and a server certificate for localhost and 127.0.0.1.
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=enos-connect interop CA" \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$dir/san.ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 2 -extfile "$dir/san.ext" -out "$dir/server.pem" 2>/dev/null
  chmod 644 "$dir"/*.pem "$dir"/*.key

  # The EnOS login the broker accepts, computed with the documented recipe.
  pk=interopPK; dk=interopDK; cid=interop-1; ts=1700000000000; secret=interop-device-secret
  password=$(ENOS_DEVICE_SECRET=$secret "$bin" credentials mqtt --product-key $pk --device-key $dk \
    --client-id $cid --timestamp $ts -f json | python3 -c 'import json,sys; print(json.load(sys.stdin)["password"])')
  mosquitto_passwd -b -c "$dir/passwd" "$dk&$pk" "$password"
  chmod 644 "$dir/passwd"

  mqtt_plain=$(free_port); mqtt_tls=$(free_port); mqtt_auth=$(free_port)
  cat > "$dir/mosquitto.conf" <<CONF
per_listener_settings true
user root
log_dest file $dir/mosquitto.log
listener $mqtt_plain 127.0.0.1
allow_anonymous true
listener $mqtt_tls 127.0.0.1
allow_anonymous true
cafile $dir/ca.pem
certfile $dir/server.pem
keyfile $dir/server.key
listener $mqtt_auth 127.0.0.1
allow_anonymous false
password_file $dir/passwd
CONF
  mosquitto -c "$dir/mosquitto.conf" > "$dir/mosquitto.out" 2>&1 &
  echo $! >> "$dir/pids"

  coap=$(free_udp_pair)
  coap-server-openssl -A 127.0.0.1 -p "$coap" -k interopPSK -h interop > "$dir/coap.log" 2>&1 &
  echo $! >> "$dir/pids"

  http=$(free_port); https=$(free_port)
  python3 "$here/http_peer.py" --port "$http" > "$dir/http.log" 2>&1 &
  echo $! >> "$dir/pids"
  python3 "$here/http_peer.py" --port "$https" --cert "$dir/server.pem" --key "$dir/server.key" > "$dir/https.log" 2>&1 &
  echo $! >> "$dir/pids"

  for p in $mqtt_plain $mqtt_tls $mqtt_auth $http $https; do wait_tcp "$p"; done
  # coap-server also listens on TCP at the same port number: use that to know it is up.
  wait_tcp "$coap"

  cat > "$dir/peers.env" <<ENV
export ENOS_CONNECT_INTEROP_MQTT=127.0.0.1:$mqtt_plain
export ENOS_CONNECT_INTEROP_MQTTS=localhost:$mqtt_tls
export ENOS_CONNECT_INTEROP_MQTT_AUTH=127.0.0.1:$mqtt_auth
export ENOS_CONNECT_INTEROP_ENOS="$pk $dk $cid $ts $secret"
export ENOS_CONNECT_INTEROP_COAP=127.0.0.1:$coap
export ENOS_CONNECT_INTEROP_COAPS=127.0.0.1:$((coap + 1))
export ENOS_CONNECT_INTEROP_PSK="interop interopPSK"
export ENOS_CONNECT_INTEROP_HTTP=127.0.0.1:$http
export ENOS_CONNECT_INTEROP_HTTPS=localhost:$https
export ENOS_CONNECT_INTEROP_CA=$dir/ca.pem
ENV
  echo "interop peers started: $(tr '\n' ' ' < "$dir/pids")"
  ;;
stop)
  if [ -f "$dir/pids" ]; then
    while read -r pid; do
      [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done < "$dir/pids"
    # They are not this shell's children: poll until they are gone, then insist.
    for _ in $(seq 50); do
      alive=0
      while read -r pid; do
        [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && alive=1
      done < "$dir/pids"
      [ "$alive" = 0 ] && break
      sleep 0.1
    done
    while read -r pid; do
      [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    done < "$dir/pids"
    rm -f "$dir/pids"
  fi
  ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
