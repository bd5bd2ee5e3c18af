#!/usr/bin/env bash
# Fuzzing in CI, on stable Rust: lints the fuzz crate, replays every saved input (regressions and seeds) as
# plain tests, installs cargo-fuzz if it is missing, then fuzzes each target for a bounded time. Any crash,
# failed invariant or hang fails the script, and the failing input is left under fuzz/artifacts/<target>/.
#
#   bash fuzz/run-ci.sh                      # from anywhere
#   FUZZ_SECONDS=300 bash fuzz/run-ci.sh     # longer runs
#   FUZZ_TARGETS=actions bash fuzz/run-ci.sh # one target
#   FUZZ_SECONDS=0 bash fuzz/run-ci.sh       # replay only (no cargo-fuzz needed)
#
# The fuzz crate has its own workspace (fuzz/Cargo.toml), so the main `cargo test --workspace` does not see it.
set -euo pipefail
cd "$(dirname "$0")"

FUZZ_SECONDS=${FUZZ_SECONDS:-45}
FUZZ_TARGETS=${FUZZ_TARGETS:-"frame_parser actions"}
CARGO_FUZZ_VERSION=${CARGO_FUZZ_VERSION:-0.13.2}

echo "== fuzz: format and lints"
cargo fmt -- --check
cargo clippy --all-targets -q -- -D warnings

echo "== fuzz: replaying saved inputs (regressions/, seeds/) as tests"
cargo test -q

if [ "$FUZZ_SECONDS" = 0 ]; then
  echo "== fuzz: FUZZ_SECONDS=0, not fuzzing"
  exit 0
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked -q
fi
cargo fuzz --version

# -s none: no sanitizer, which is what works on stable (ustack has no unsafe code to check); cargo-fuzz still
# turns on debug assertions and overflow checks, and the SanitizerCoverage that libFuzzer needs.
echo "== fuzz: building the targets"
(cd .. && cargo fuzz build -s none)

for t in $FUZZ_TARGETS; do
  # corpus/<t> is the working corpus (not committed; it grows across runs on the same machine). The saved crash
  # inputs (regressions/<t>/*.bin, without their .txt and .pcap) join it and seeds/<t> is read too, so every
  # saved input is replayed first.
  mkdir -p "corpus/$t" "seeds/$t"
  if compgen -G "regressions/$t/*.bin" >/dev/null; then cp regressions/"$t"/*.bin "corpus/$t/"; fi
  echo "== fuzz: $t for ${FUZZ_SECONDS}s"
  log=$(mktemp)
  status=0
  (cd .. && cargo fuzz run -s none "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
    -max_total_time="$FUZZ_SECONDS" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$log" 2>&1) || status=$?
  grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' \
    "$log" || true
  if [ "$status" != 0 ]; then
    tail -n 60 "$log"
    echo "fuzz: $t FAILED (exit $status); the input is in fuzz/artifacts/$t/. To inspect it:"
    echo "  cargo run --manifest-path fuzz/Cargo.toml --example replay -- $t fuzz/artifacts/$t/<file> --pcap crash.pcap"
    exit 1
  fi
  rm -f "$log"
done
echo "fuzz: all targets passed"
