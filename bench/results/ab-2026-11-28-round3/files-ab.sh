#!/usr/bin/env bash
# Isolating A/B of the read side's writes on the send path: main vs main without them.
set -uo pipefail
out=$1; a=$2; b=$3; rounds=${4:-2}
COMMON="--duration 10 --runs 2 --warmup 2 --transports rest-envoy --workloads spread,hot --concurrency 64 --no-chart --no-baseline --senders 2000 --callers 2000 --history-per-sender 25 --postgres-url postgresql://postgres@127.0.0.1:5432/livechat_bench_ab --databases ${DBS:-sqlite,postgres}"
n=0
run_side() {
  local side=$1 dir=$2; n=$((n+1))
  echo "$(date -u +%T) file $n $side load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/log.txt"
  (cd "$dir" && .venv/bin/python bench/run.py $COMMON --results-dir "$out/$n-$side" > "$out/$n-$side.log" 2>&1) || echo "file $n failed" | tee -a "$out/log.txt"
}
for r in $(seq 1 "$rounds"); do
  if (( r % 2 )); then run_side main "$a"; run_side noread "$b"; else run_side noread "$b"; run_side main "$a"; fi
done
echo "$(date -u +%T) done" | tee -a "$out/log.txt"
