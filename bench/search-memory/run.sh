#!/bin/bash
# Resident memory of a long my_pruning search, sampled every 0.5 s, against
# the candidates run so far: does it grow without bound (a leak) or level
# off (caches)? Writes OUT/rss (time, VmRSS kB, RssAnon kB), OUT/stderr
# (with GODEBUG=gctrace=1: the Go heap at every GC) and OUT/exp (the run),
# then prints RSS at every 4th iteration's end.
#
# usage: bench/search-memory/run.sh OUT [gopruner flags...]
#   GOPRUNER (default bin/gopruner), DATASET (default bench/out/mnist_12000_2000,
#   written by `bench/run.sh -only 7`), MODEL (default: a ResNet-20 for MNIST
#   made by bench/mkresnet20.py, random weights).
# Example: bench/search-memory/run.sh /tmp/sm --P 0.6
#          ONEDNN_PRIMITIVE_CACHE_CAPACITY=0 bench/search-memory/run.sh /tmp/sm0 --P 0.6
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:?usage: run.sh OUT [gopruner flags...]}; shift
bin=${GOPRUNER:-$root/bin/gopruner}
data=${DATASET:-$root/bench/out/mnist_12000_2000}
[ -d "$data" ] || { echo "run.sh: no dataset at $data (bench/run.sh -only 7 writes it)" >&2; exit 2; }
rm -rf "$out"; mkdir -p "$out"
model=${MODEL:-$out/resnet20.pt}
[ -f "$model" ] || /usr/bin/python3 "$root/bench/mkresnet20.py" "$model"
GODEBUG=gctrace=1 "$bin" prune --model "$model" --dataset "$data" --input-shape 1,1,28,28 \
	--batch-size 32 --lr 0.01 --momentum 0.9 --mean 0.5 --std 0.5 --seed 1 --threads 2 --log-format json \
	--exp-save "$out/exp" --model-name search --out "$out/pruned.pt" --algorithm my_pruning \
	--criterion TaylorFOWeight --taylor-batches 2 --short-steps 3 --long-epochs 0 --eval-samples 200 \
	--delta-crop 0.02 --shortlist 0 --commit-top 1 "$@" >"$out/stdout" 2>"$out/stderr" &
pid=$!
trap 'kill $pid 2>/dev/null' EXIT
while kill -0 $pid 2>/dev/null; do
	r=$(awk '/^VmRSS|^RssAnon/ {printf "%s ", $2}' /proc/$pid/status 2>/dev/null || true)
	[ -n "$r" ] && echo "$(date +%s.%N) $r" >>"$out/rss"
	sleep 0.5
done
wait $pid
trap - EXIT
/usr/bin/python3 "$root/bench/search-memory/summarize.py" "$out"
