#!/usr/bin/env bash
# CUDA checks for a GPU host that has PyTorch (with its libtorch headers), a
# C++ compiler and make, but no Go: build lib/libgptorch.so there against the
# torch Python package, then run the bin/gopruner built on a CPU machine
# (it links only the shim's C ABI). Checks: the version and CUDA report, a
# tensor round trip and a forward/backward on the GPU (a short `train` on
# cuda:0 uploads batches, trains and reads the loss back), forward latency
# on the GPU, and one my_pruning iteration with --cart 0,0 against --cart 0.
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
rm -rf build/shim lib/libgptorch.so
make -j"$(nproc)" shim LIBTORCH="$TORCH_DIR" CXX="$(command -v g++ || command -v c++)" 2>&1 | tail -3 | tee -a "$out/gpu_check.log"
readelf -d lib/libgptorch.so | grep -q 'libtorch_cuda' || { log "FAIL: shim does not link libtorch_cuda"; exit 1; }
export LD_LIBRARY_PATH="$TORCH_DIR/lib:${LD_LIBRARY_PATH:-}"

log "version"
bin/gopruner version | tee -a "$out/gpu_check.log"
bin/gopruner version | grep -q '^cuda     yes' || { log "FAIL: CUDA not seen"; exit 1; }

log "fixtures (demo model and MNIST sample come with the binary)"
work=$(mktemp -d)
python3 scripts/make_fixtures.py "$work/fx" >/dev/null 2>&1 || true

log "train on cuda:0 (forward/backward, tensors to and from the device)"
bin/gopruner demo --dir "$work/demo" --cart cuda:0 2>&1 | tail -25 | tee -a "$out/gpu_check.log"

log "latency on cuda:0"
if [ -f "$work/fx/resnet18_scripted.pt" ]; then
  bin/gopruner bench-model --model "$work/fx/resnet18_scripted.pt" --input-shape 64,3,224,224 --device cuda:0 --runs 20 | tee -a "$out/gpu_check.log"
fi
log "done"
