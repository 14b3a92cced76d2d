#!/usr/bin/env bash
# Coverage-guided fuzzing with AFL++ on the stable toolchain (the `afl` crate + `cargo afl`).
#   fuzz/run.sh TARGET SECONDS      TARGET: request | response | chunked | all
# Needs once: `cargo install cargo-afl --locked && cargo afl config --build`.
# Builds the instrumented target, fuzzes it for SECONDS from fuzz/seeds/TARGET (resuming
# fuzz/out/TARGET when it exists), prints the execution count, copies every crash to
# fuzz/regressions/TARGET/ (replayed by tests/fuzz_regressions.rs) and fails if there was one.
# CPU-heavy: on a shared machine run it as `nice -n 19 fuzz/run.sh ...`.
set -euo pipefail
self=$(realpath "$0")
cd "$(dirname "$self")"
target=${1:?usage: fuzz/run.sh TARGET SECONDS}
secs=${2:?usage: fuzz/run.sh TARGET SECONDS}
if [ "$target" = all ]; then
  rc=0
  for t in request response chunked; do "$self" "$t" "$secs" || rc=1; done
  exit $rc
fi
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/target}"
if ! cargo afl --version >/dev/null 2>&1; then
  echo "cargo-afl is missing: cargo install cargo-afl --locked && cargo afl config --build" >&2
  exit 2
fi
cargo afl build --release --quiet --features afl --bin "$target"
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 AFL_NO_AFFINITY=1
out="out/$target"
mkdir -p "$out" "regressions/$target"
in="seeds/$target"
[ -d "$out/default/queue" ] && in=-
cargo afl fuzz -V "$secs" -i "$in" -o "$out" "$CARGO_TARGET_DIR/release/$target" >"$out/log" 2>&1 || {
  tail -20 "$out/log" >&2
  exit 1
}
stats="$out/default/fuzzer_stats"
execs=$(awk -F': *' '$1 ~ /^execs_done/ {print $2}' "$stats")
paths=$(awk -F': *' '$1 ~ /^corpus_count/ {print $2}' "$stats")
crashes=0
for f in "$out"/default/crashes/id*; do
  [ -e "$f" ] || continue
  crashes=$((crashes + 1))
  cp "$f" "regressions/$target/$(sha1sum "$f" | cut -c1-12)"
done
echo "fuzz $target: $execs executions in ${secs} s, corpus $paths, crashes $crashes"
[ "$crashes" -eq 0 ]
