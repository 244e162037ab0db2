#!/usr/bin/env bash
set -uo pipefail
out=/work/runs/inflight; mkdir -p $out
COMMON="--databases postgres --duration 10 --runs 2 --warmup 2 --transports rest-envoy --workloads spread,hot --concurrency 16,64 --no-chart --no-baseline --senders 2000 --callers 2000 --history-per-sender 25 --postgres-url postgresql://postgres@127.0.0.1:5432/livechat_bench_ab"
n=0
for side in one two two one; do
  n=$((n+1)); extra=""
  [ $side = two ] && extra="--server-env LIVECHAT_DB_BATCHES_IN_FLIGHT=2"
  echo "$(date -u +%T) file $n $side" >> $out/log.txt
  .venv/bin/python bench/run.py $COMMON $extra --results-dir $out/$n-$side > $out/$n-$side.log 2>&1
done
echo "$(date -u +%T) done" >> $out/log.txt
