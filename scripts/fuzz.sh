#!/usr/bin/env bash
# `make fuzz`: a short coverage-guided run of every cargo-fuzz target, one after the other.
# FUZZ_TIME: seconds per target (default 25). FUZZ_TARGETS: a space-separated subset
# (default: every target). Long runs, crashes, minimising: docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")/.."
per_target=${FUZZ_TIME:-25}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
# cargo-fuzz builds with nightly-only flags (-Zsanitizer=address); a stable toolchain
# accepts them with RUSTC_BOOTSTRAP=1.
rustc --version | grep -q nightly || export RUSTC_BOOTSTRAP=1
bash scripts/fuzz_seed.sh
read -r -a targets <<<"${FUZZ_TARGETS:-$(cargo fuzz list | tr '\n' ' ')}"
cargo fuzz build
mkdir -p fuzz/logs
failed=()
for t in "${targets[@]}"; do
  log=fuzz/logs/$t.log
  if cargo fuzz run "$t" -- -max_total_time="$per_target" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 >"$log" 2>&1; then
    status="no crash"
  else
    status="FAILED (see $log and fuzz/artifacts/$t/)"
    failed+=("$t")
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  files=$(find "fuzz/corpus/$t" -type f | wc -l)
  printf '%-20s %12s execs in %ss, corpus %5s files: %s\n' "$t" "${runs:-?}" "$per_target" \
    "$files" "$status"
done
if ((${#failed[@]})); then
  echo "fuzz: ${failed[*]} failed" >&2
  exit 1
fi
