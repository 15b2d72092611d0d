#!/usr/bin/env bash
# Builds herd's libFuzzer targets (-sanitize=fuzzer,address) and runs each for
# SECONDS (default 60) from its seed corpus in Fuzz/corpus/<target>. New
# inputs go to a scratch corpus; a crash leaves its input in Fuzz/findings/
# and fails the run (turn it into a regression test, add it to the corpus).
#   bash Fuzz/run.sh [SECONDS] [TARGET...]     targets: http route frame heartbeat decide
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(http route frame heartbeat decide)
HERD_FUZZ=1 swift build --scratch-path .build-fuzz --product herd-fuzz -Xswiftc -sanitize=fuzzer,address >/dev/null
fuzzer="$(HERD_FUZZ=1 swift build --scratch-path .build-fuzz --show-bin-path)/herd-fuzz"
mkdir -p Fuzz/findings
# Targets run side by side, one per core (at most 2 unless HERD_FUZZ_JOBS says):
# each still gets SECONDS of its own; the wall time is what CI's budget counts.
jobs="${HERD_FUZZ_JOBS:-$(( $(nproc) < 2 ? 1 : 2 ))}"
status=0
fuzz_one() {
    local target="$1" work rc
    work="$(mktemp -d /tmp/herd-fuzz-$target.XXXXXX)"
    {
        echo "== fuzz $target for ${seconds} s"
        if HERD_FUZZ_TARGET="$target" ASAN_OPTIONS=detect_leaks=1 "$fuzzer" "$work" "Fuzz/corpus/$target" \
            -max_total_time="$seconds" -max_len=16384 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
            -artifact_prefix="Fuzz/findings/$target-" >"$work.log" 2>&1; then
            grep -E "stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)" "$work.log" | tr -s " " | tr "\n" " "; echo
            echo "   corpus: $(ls "$work" | wc -l) new inputs kept"
            rc=0
        else
            echo "FINDING in $target:"; tail -40 "$work.log"; rc=1
        fi
    } >"$work.out"
    cat "$work.out"
    rm -rf "$work" "$work.log" "$work.out"
    return $rc
}
running=0
for target in "${targets[@]}"; do
    if [ "$running" -ge "$jobs" ]; then
        wait -n || status=1
        running=$((running - 1))
    fi
    fuzz_one "$target" &
    running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
    wait -n || status=1
    running=$((running - 1))
done
exit $status
