#!/usr/bin/env bash
# A/B of the send path: base worktree vs new worktree, alternating, one sitting.
# usage: ab.sh OUTDIR BASE_DIR NEW_DIR ROUNDS
set -uo pipefail
out=$1; base=$2; new=$3; rounds=${4:-2}
mkdir -p "$out"
n=0
COMMON="--duration 5 --runs 2 --transports rest-envoy --workloads spread,hot --concurrency 16,64 --no-chart --postgres-url postgresql://postgres@127.0.0.1:5432/livechat_bench_ab"
run_side() {
  local side=$1 dir=$2 extra=""
  [ "$side" = new ] && extra="--senders 2000 --callers 2000 --history-per-sender 25"
  n=$((n+1))
  echo "$(date -u +%T) file $n $side load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/log.txt"
  (cd "$dir" && .venv/bin/python bench/run.py $COMMON $extra --results-dir "$out/$n-$side" > "$out/$n-$side.log" 2>&1) || echo "file $n failed" | tee -a "$out/log.txt"
}
for r in $(seq 1 "$rounds"); do
  if (( r % 2 )); then run_side base "$base"; run_side new "$new"; else run_side new "$new"; run_side base "$base"; fi
done
echo "$(date -u +%T) done $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/log.txt"
