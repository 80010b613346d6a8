#!/usr/bin/env bash
# `make test` on fresh clones of HEAD, as CI runs it: N runs with two CPU-bound processes at
# normal priority beside each (a busy machine), then one run on the idle machine.
#
#   bash tests/stress.sh [N]        (or: make stress N=5)
#
# Each run's log is kept in $STRESS_DIR (default /tmp/tui_ft_stress), with one summary line a
# run in summary.txt; a clone is removed once its run passed. Exits 1 when any run failed.
set -uo pipefail

runs=${1:-5}
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${STRESS_DIR:-/tmp/tui_ft_stress}
mkdir -p "$out"
burners=()

start_burners() {
    for _ in 1 2; do
        python3 -c "while True: pass" &
        burners+=("$!")
    done
}

stop_burners() {
    if ((${#burners[@]})); then
        kill "${burners[@]}" 2>/dev/null
        wait "${burners[@]}" 2>/dev/null
    fi
    burners=()
}
trap stop_burners EXIT

failed=0
run_once() {  # label, busy|idle
    local label=$1 load=$2 dir="$out/$1" began rc seconds summary commit
    rm -rf "$dir"
    git clone -q "$repo" "$dir"
    commit=$(git -C "$dir" rev-parse --short HEAD)  # HEAD may move between runs
    [[ $load == busy ]] && start_burners
    began=$(date +%s)
    (cd "$dir" && make test) >"$out/$label.log" 2>&1
    rc=$?
    seconds=$(($(date +%s) - began))
    stop_burners
    summary=$(grep -E '^[0-9]+ (passed|failed)|[0-9]+ (passed|failed).* in [0-9.]+s' "$out/$label.log" | tail -1)
    printf '%s  %s  %-4s  exit %d  %dm%02ds (setup included)  %s\n' "$(date +%H:%M)" "$commit" "$load" "$rc" \
        $((seconds / 60)) $((seconds % 60)) "${summary:-no pytest summary: see $out/$label.log}" | tee -a "$out/summary.txt"
    if ((rc == 0)); then
        rm -rf "$dir"
    else
        failed=1
        grep -E '^(FAILED|ERROR) ' "$out/$label.log" | head -5
    fi
}

for ((i = 1; i <= runs; i++)); do
    run_once "busy-$i" busy
done
run_once idle idle
exit $failed
