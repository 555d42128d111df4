#!/usr/bin/env bash
# Runs every cargo-fuzz target for a fixed budget (FUZZ_SECONDS, default 60) each. Works on the
# stable toolchain with --sanitizer none (coverage-guided libFuzzer, no ASan). A crash stops the
# run with libFuzzer's report and leaves the input in fuzz/artifacts/TARGET/: turn it into a
# regression test, then fix it.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}
# Seeds: the shipped capabilities (with a few answer selectors) for the engine target, and a
# few real responses for the HTTP one; libFuzzer mutates from there.
mkdir -p fuzz/corpus/decide fuzz/corpus/http_response
for sel in "" "\x00\x01\x01\x00\x02\x01\x01\x01\x01\xff\xff" "\x00\x02\x01\x00\x01\x00\x00\x00\x01\x05"; do
  { cat capabilities.toml; printf "$sel"; } > "fuzz/corpus/decide/seed-${#sel}.toml"
done
printf 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello' > fuzz/corpus/http_response/length
printf 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n' > fuzz/corpus/http_response/chunked
printf 'HTTP/1.1 301 Moved\r\nLocation: /x\r\n\r\n' > fuzz/corpus/http_response/redirect
mkdir -p fuzz/corpus/registry fuzz/corpus/serve_input
printf '[[products]]\nkey = "pk1"\nsecret = "s"\nmeasurepoints = ["temp"]\n[[devices]]\nproduct = "pk1"\nkey = "d"\ngateway = "pk1/g"\n' > fuzz/corpus/registry/seed.toml
printf '\x02/sys/pk1/dk1/thing/measurepoint/post\n{"id":"1","method":"thing.measurepoint.post","params":{"measurepoints":{"temp":1}}}' > fuzz/corpus/serve_input/post
printf '\x01dk1|securemode=2,signmethod=sha256,timestamp=1|\ndk1&pk1\n00' > fuzz/corpus/serve_input/login
# A real load report (two stages, with their histograms) for merge's parser.
mkdir -p fuzz/corpus/load_reports
cat > fuzz/corpus/load_reports/report.json <<'JSON'
{"ok":true,"protocol":"mqtt","target":"mqtt://127.0.0.1:18830","count":200,"concurrency":10,"succeeded":200,"failed":0,"errors":{},"elapsed_s":0.063,"rate_per_s":3190.3,"stages":{"resolve":{"count":200,"p50_ms":0.006,"p90_ms":0.007,"p99_ms":0.008,"max_ms":0.022,"histogram":"HISTFAAAADl4nC2Jyw0AEBAFn+dzIxFXvUjUpoNtwVk56lCCiJ3DzGHqkAIg4mO15mnLRDs6El1Y7PTMvJagBb8="},"total":{"count":200,"p50_ms":1.789,"p90_ms":1.91,"p99_ms":2.005,"max_ms":2.463,"histogram":"HISTFAAAAK14nC1OuQ0CMRAcxmPfndCJACGEhISog4BSKIGYnA6uBRIiSiCiBdqAEpi12cfenX1mt9dpCeCDJun/z+J5Tzccvw149HyO3FPggmt26pi40oaZkA0GwY47AyeOvNgPjkNtqSqYlSKFtU15pkgkk1RzJ9Fo0GiWcmEfbSieqFykeg1UceBtddW8cIgKgg6tYPOV3hH8quS5cg8uicqKg5PdM5aAz3zNeCd/frINJQ=="}},"examples":{}}
JSON
# serve's own readers of what a device sends: a CONNECT's level (3.1.1, 5, 3.1) and a
# multipart body with a file, its Content-MD5 and the message naming it.
mkdir -p fuzz/corpus/serve_connect fuzz/corpus/serve_multipart
printf '\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00' > fuzz/corpus/serve_connect/v311
printf '\x10\x0d\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x00' > fuzz/corpus/serve_connect/v5
printf '\x10\x0e\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x00' > fuzz/corpus/serve_connect/v31
printf '\x00--b\r\nContent-Disposition: form-data; name="enos-message"\r\n\r\n{"id":"1","method":"thing.measurepoint.post","params":{"measurepoints":{"f":"local://a.bin"}}}\r\n--b\r\nContent-Disposition: form-data; name="enos-file"; filename="a.bin"\r\nContent-MD5: 5d41402abc4b2a76b9719d911017c592\r\n\r\nhello\r\n--b--\r\n' > fuzz/corpus/serve_multipart/file
# device-test's reading of a device's messages: a flag byte, a topic, a zero byte, a payload.
mkdir -p fuzz/corpus/device_test_evidence
printf '\x03/sys/pk/dk/thing/measurepoint/post\x00{"id":"1","params":{"measurepoints":{"t":1},"time":1700000000000,"step":"50","version":"2.0"}}' > fuzz/corpus/device_test_evidence/post
printf '\x01/sys/pk/dk/thing/service/measurepoint/set_reply\x00{"id":"9","code":"200"}' > fuzz/corpus/device_test_evidence/reply
mkdir -p fuzz/corpus/fleet_devices
printf 'product,key,secret\npk1,dk1,s1\npk1,"d,2",s2\n' > fuzz/corpus/fleet_devices/devices.csv
printf 'product,key,product_secret\npk1,dk1,ps\n' > fuzz/corpus/fleet_devices/dynamic.csv
# The path of a command announced in CoAP option 2100 (what serve sends).
mkdir -p fuzz/corpus/coap_command
printf '/topic/sys/pk1/dk1/thing/service/measurepoint/set' > fuzz/corpus/coap_command/set
printf '/topic/sys/pk1/dk1/thing/model/down_raw' > fuzz/corpus/coap_command/raw
# A history request's query and --retain's spec.
mkdir -p fuzz/corpus/serve_history
printf 'from=1700000000000&to=1700000060000&limit=100&format=csv' > fuzz/corpus/serve_history/query
printf '7d,100000' > fuzz/corpus/serve_history/retain
# EnOS's replies as serve and the SDKs send them.
mkdir -p fuzz/corpus/enos_reply
printf '{"id":"42","code":200,"data":{},"message":""}' > fuzz/corpus/enos_reply/ok
printf '{"id":7,"code":"1204","message":"model"}' > fuzz/corpus/enos_reply/codes
for target in capabilities answers batch_rows coap_reply coap_command decide http_response registry serve_input serve_connect serve_multipart load_reports fleet_devices device_test_evidence serve_history enos_reply; do
  echo "== fuzz $target for ${seconds}s"
  log=$(mktemp)
  status=0
  cargo fuzz run --sanitizer none "$target" -- -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1 || status=$?
  # Only the summary lines are shown; a build error or a crash shows the end of the log, and
  # cargo fuzz's own exit status decides.
  grep -E "^Done|stat::number_of_executed_units|SUMMARY|panicked|ERROR" "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$log"
    rm -f "$log"
    echo "fuzz target $target failed (exit $status)"
    exit "$status"
  fi
  rm -f "$log"
done
