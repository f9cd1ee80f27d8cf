#!/usr/bin/env bash
# CUDA checks for a GPU host that has PyTorch (with its libtorch headers), a
# C++ compiler and make, but no Go: build lib/libgptorch.so there against the
# torch Python package, then run the bin/gopruner built on a CPU machine
# (it links only the shim's C ABI). Checks: the version and CUDA report, a
# tensor round trip and a forward/backward on the GPU (a short `train` on
# cuda:0 uploads batches, trains and reads the loss back) with amp off, bf16
# and fp16, a resnet18 training step at
# batch 64, 224x224 through gopruner against a PyTorch eager loop on the same
# GPU (scripts/gpu_eager_step.py), with channels-last off as well, and the
# peak GPU memory of each process, and one my_pruning iteration with
# --cart 0,0 against --cart 0.
#
# Usage (on the GPU host, in the repo root, with bin/gopruner carried over):
#   scripts/gpu_check.sh [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-/tmp/gpu_check}}
mkdir -p "$out"
log() { echo "== $*" | tee -a "$out/gpu_check.log"; }

command -v c++ >/dev/null || command -v g++ >/dev/null || { echo "no C++ compiler" >&2; exit 1; }
[ -x bin/gopruner ] || { echo "bin/gopruner missing: build it on a machine with Go and carry it" >&2; exit 1; }
TORCH_DIR=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')
log "torch at $TORCH_DIR: $(python3 -c 'import torch;print(torch.__version__, torch.version.cuda)')"

log "building the shim against it"
[ -n "${KEEP_SHIM:-}" ] || rm -rf build/shim lib/libgptorch.so
make -j"$(nproc)" shim LIBTORCH="$TORCH_DIR" CXX="$(command -v g++ || command -v c++)" 2>&1 | tail -3 | tee -a "$out/gpu_check.log"
readelf -d lib/libgptorch.so | grep -q 'libtorch_cuda' || { log "FAIL: shim does not link libtorch_cuda"; exit 1; }
export LD_LIBRARY_PATH="$TORCH_DIR/lib:${LD_LIBRARY_PATH:-}"

log "version"
bin/gopruner version | tee -a "$out/gpu_check.log"
bin/gopruner version | grep '^cuda     yes' >/dev/null || { log "FAIL: CUDA not seen"; exit 1; }

log "demo data and models"
work=$(mktemp -d)
bin/gopruner demo --dir "$work/demo" --prepare-only >/dev/null

log "train on cuda:0 (forward/backward, batches to the device), then eval, with amp off, bf16 and fp16"
for amp in off bf16 fp16; do
  bin/gopruner train --model "$work/demo/democnn.pt" --dataset "$work/demo/mnist3" --input-shape 1,1,28,28 \
    --mean 0.5 --std 0.5 --batch-size 64 --lr 0.05 --epochs 1 --seed 1 --device cuda:0 --amp "$amp" \
    --out "$work/demo/t_$amp.pt" 2>&1 | grep -E "val accuracy|images/s, training" | tee -a "$out/gpu_check.log"
done

# withmem FILE CMD...: runs CMD with its stdout (one JSON object) in FILE,
# then adds gpu_mem_mib, the peak of the GPU's used memory that nvidia-smi
# saw every 50 ms while it ran (the whole process: CUDA context, caching
# allocator, workspaces), and appends the object to train_step.jsonl.
withmem() {
  local f=$1; shift
  local smi=""
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 50 >"$work/mem.txt" 2>/dev/null &
    smi=$!
  fi
  "$@" >"$f"
  [ -z "$smi" ] || { kill "$smi"; wait "$smi" 2>/dev/null || true; }
  python3 - "$f" "$work/mem.txt" "$smi" >>"$out/train_step.jsonl" <<'PY'
import json, sys
d = json.loads(open(sys.argv[1]).read())
d.pop("steps_ms", None)
d.setdefault("loop", "gopruner")
if sys.argv[3]:
    mem = [int(l) for l in open(sys.argv[2]) if l.strip().isdigit()]
    d["gpu_mem_mib"] = max(mem) if mem else None
print(json.dumps(d))
PY
}

log "resnet18 train step, batch 64, 224x224: gopruner (bench-model --train, TorchScript) against a PyTorch eager loop"
python3 scripts/gpu_eager_step.py --save-scripted "$work/r18.pt"
: >"$out/train_step.jsonl"
step() { bin/gopruner bench-model --model "$work/r18.pt" --input-shape 64,3,224,224 --device cuda:0 --train \
  --cudnn-benchmark --warmup 8 --runs 30 --json "$@"; }
for amp in off bf16 fp16; do
  for rep in 1 2; do
    withmem "$work/g.json" step --amp "$amp"
    withmem "$work/e.json" python3 scripts/gpu_eager_step.py --amp "$amp"
  done
  withmem "$work/s.json" python3 scripts/gpu_eager_step.py --amp "$amp" --scripted "$work/r18.pt"
  # The same gopruner step with channels-last off (NCHW batches and weights).
  withmem "$work/n.json" step --amp "$amp" --nchw
done
python3 - "$out/train_step.jsonl" <<'PY' | tee -a "$out/gpu_check.log"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for amp in ("off", "bf16", "fp16"):
    best = {}
    mem = {}
    for r in rows:
        if r["amp"] == amp:
            loop = r["loop"] + ("-nchw" if r.get("nchw") else "")
            best[loop] = min(best.get(loop, 1e9), r["median_ms"])
            if r.get("gpu_mem_mib") is not None:
                mem[loop] = max(mem.get(loop, 0), r["gpu_mem_mib"])
    g, e = best.get("gopruner"), best.get("pytorch-eager")
    s, n = best.get("pytorch-scripted"), best.get("gopruner-nchw")
    print(f"amp {amp:4}: gopruner {g:.2f} ms/step, PyTorch eager {e:.2f}, PyTorch on the TorchScript file {s:.2f}; gopruner/eager {g/e:.2f}x (goal <= 1.1x); gopruner with channels-last off {n:.2f} ({n/g:.2f}x its channels-last step)")
    if mem:
        print("  peak GPU memory used (MiB, whole process): " + ", ".join(f"{k} {v}" for k, v in sorted(mem.items())))
PY

log "one my_pruning iteration of the demo CNN: --cart 0 against --cart 0,0"
: >"$out/iteration.txt"
for rep in 1 2; do
  for cart in 0 0,0; do
    name="it_${cart/,/_}_$rep"
    bin/gopruner prune --model "$work/demo/democnn_trained.pt" --dataset "$work/demo/mnist3" --input-shape 1,1,28,28 \
      --batch-size 64 --lr 0.01 --momentum 0.9 --mean 0.5 --std 0.5 --seed 1 --algorithm my_pruning --P 0.1 \
      --delta-crop 0.2 --long-epochs 0 --device cuda:0 --cart "$cart" --exp-save "$work/exp" --model-name "$name" \
      --out "$work/$name.pt" >/dev/null 2>"$work/$name.err" || { tail -3 "$work/$name.err"; log "FAIL: my_pruning --cart $cart"; exit 1; }
    python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); it=s["iterations"][0]; c=s["timings"]["candidates"]; print(sys.argv[2], sys.argv[3], round(it["seconds"],3), it["candidates"], round(c["fine_tune_ms"]/c["runs"],1), round(c["eval_ms"]/c["runs"],1))' \
      "$work/exp/$name/summary.json" "$cart" "$rep" >>"$out/iteration.txt"
  done
done
python3 - "$out/iteration.txt" <<'PY' | tee -a "$out/gpu_check.log"
import sys
best = {}
for l in open(sys.argv[1]):
    cart, rep, sec, cands, ft, ev = l.split()
    best[cart] = min(best.get(cart, 1e9), float(sec))
    print(f"cart {cart:4} run {rep}: iteration {float(sec):.2f} s, {cands} candidates, per candidate fine-tune {ft} ms, eval {ev} ms")
print(f"one iteration: --cart 0 {best['0']:.2f} s, --cart 0,0 {best['0,0']:.2f} s: speed-up {best['0']/best['0,0']:.2f}x")
PY
log "done"
