#!/usr/bin/env bash
# Runs every cargo-fuzz target for a fixed budget (FUZZ_SECONDS, default 60) each. Works on the
# stable toolchain with --sanitizer none (coverage-guided libFuzzer, no ASan). A crash stops the
# run with libFuzzer's report and leaves the input in fuzz/artifacts/TARGET/: turn it into a
# regression test, then fix it.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}
for target in capabilities answers batch_rows coap_reply; do
  echo "== fuzz $target for ${seconds}s"
  cargo fuzz run --sanitizer none "$target" -- -max_total_time="$seconds" -print_final_stats=1 2>&1 \
    | grep -E "^Done|stat::number_of_executed_units|SUMMARY|panicked|ERROR" || true
  # grep hides libFuzzer's noise; the exit status below is cargo fuzz's own.
  test "${PIPESTATUS[0]}" -eq 0
done
