#!/usr/bin/env bash
# `make container-check`: checks the GPU container (Dockerfile, .dockerignore,
# dtools/*.sh) as far as a machine without a Docker engine or a GPU can.
#
#  1. builds dtools/dockerfile-check (a nested module: BuildKit stays out of
#     gopruner's go.mod) and lints the Dockerfile with BuildKit's own parser,
#     LLB conversion and `docker build --check` rules, plus gopruner's rules;
#  2. checks the dtools scripts: bash -n, shellcheck when installed, and a dry
#     run of each against a stub docker client;
#  3. replays the build stage (its COPYs from the .dockerignore-filtered context
#     and its `go`/`make` RUN steps) against the local libtorch, then the
#     runtime stage's COPY --from lines, and runs ENTRYPOINT from that layout
#     with the build tree hidden.
#
# Environment:
#   CONTAINER_CHECK_SOURCE  worktree (default: the context docker build would
#                           send) | head (git archive HEAD, plus the worktree's
#                           Dockerfile and .dockerignore)
#   CONTAINER_CHECK_KEEP=1  keep the scratch directory
#   LIBTORCH                libtorch to replay against (include/ + lib/);
#                           else Debian's libtorch-dev, else Python's torch
set -euo pipefail

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}
case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") ;;
  *) usage >&2; exit 2 ;;
esac

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
source_mode=${CONTAINER_CHECK_SOURCE:-worktree}
start=$SECONDS

tmp=$(mktemp -d "${TMPDIR:-/tmp}/gopruner-container-check.XXXXXX")
cleanup() {
  if [ "${CONTAINER_CHECK_KEEP:-0}" = 1 ]; then
    echo "container-check: kept $tmp"
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT

checked=()
failed=()
skipped=()
pass() { checked+=("$1"); echo "--> ok: $1"; }
fail() { failed+=("$1"); echo "--> FAILED: $1"; }
skip() { skipped+=("$1"); echo "--> skipped: $1"; }
section() { printf '\n== %s (%ds)\n' "$1" $((SECONDS - start)); }

# ---------------------------------------------------------------------------
section "1. Dockerfile: BuildKit parser + lint rules, gopruner's rules"
case "$source_mode" in
  worktree) ctx=$root ;;
  head)
    ctx=$tmp/context
    mkdir -p "$ctx"
    git -C "$root" archive --format=tar HEAD | tar -x -C "$ctx"
    cp "$root/Dockerfile" "$root/.dockerignore" "$ctx/"
    echo "context: git HEAD ($(git -C "$root" rev-parse --short HEAD)) + the worktree's Dockerfile and .dockerignore"
    ;;
  *) echo "container-check: CONTAINER_CHECK_SOURCE is worktree or head, not $source_mode" >&2; exit 2 ;;
esac

checker=$tmp/dockerfile-check
if (cd dtools/dockerfile-check && GOWORK=off GOFLAGS="-mod=mod -buildvcs=false" "$GO" build -o "$checker" .); then
  if "$checker" lint -f "$ctx/Dockerfile" -context "$ctx"; then
    pass "Dockerfile lints clean (BuildKit $(sed -n 's/.*moby\/buildkit \(v[^ ]*\).*/\1/p' dtools/dockerfile-check/go.mod)) and follows gopruner's rules; .dockerignore"
  else
    fail "Dockerfile lint"
  fi
else
  fail "building dtools/dockerfile-check"
fi

# ---------------------------------------------------------------------------
section "2. dtools scripts"
scripts=(dtools/docker_build.sh dtools/docker_run.sh dtools/container_check.sh)
syntax_ok=1
for s in "${scripts[@]}"; do
  bash -n "$s" || syntax_ok=0
done
if [ $syntax_ok = 1 ]; then pass "bash -n ${scripts[*]}"; else fail "bash -n"; fi
if command -v shellcheck >/dev/null; then
  if shellcheck "${scripts[@]}"; then
    pass "shellcheck $(shellcheck --version | sed -n 's/^version: //p'): ${scripts[*]}"
  else
    fail "shellcheck"
  fi
else
  skip "shellcheck (not installed; apt-get install shellcheck)"
fi

# Dry runs: a stub docker client prints its arguments, one per line.
stub=$tmp/stub-docker
cat >"$stub" <<'STUB'
#!/bin/sh
for a in "$@"; do printf '%s\n' "$a"; done
STUB
chmod +x "$stub"
ws=$tmp/ws
mkdir -p "$ws"
expect() { # expect NAME OUTPUT ARG...: the ARGs occur among docker's arguments, in order
  local name=$1 out=$2
  shift 2
  if awk 'BEGIN { i = 0; n = 0 } NR == FNR { want[n++] = $0; next } i < n && $0 == want[i] { i++ } END { exit !(i == n) }' \
    <(printf '%s\n' "$@") <(printf '%s\n' "$out"); then
    return 0
  fi
  echo "$name: docker got: $(tr '\n' ' ' <<<"$out")" >&2
  echo "$name: expected, in order: $*" >&2
  return 1
}
dry_ok=1
out=$(cd "$ws" && DTOOLS_DOCKER=$stub DTOOLS_GPUS=0,2 GOPRUNER_P=0.4 \
  "$root/dtools/docker_run.sh" prune --model m.pt --exp-save exp_save </dev/null) || dry_ok=0
expect docker_run.sh "$out" run --rm --gpus '"device=0,2"' --ipc=host -u "$(id -u):$(id -g)" \
  -v "$(cd "$ws" && pwd -P):/workspace" -w /workspace -e GOPRUNER_P gopruner:latest prune --model m.pt --exp-save exp_save || dry_ok=0
out=$(cd "$ws" && DTOOLS_DOCKER=$stub DTOOLS_GPUS=none DTOOLS_SHM_SIZE=8g DTOOLS_IMAGE=x/gp:1 \
  "$root/dtools/docker_run.sh" version </dev/null) || dry_ok=0
expect docker_run.sh "$out" run --shm-size 8g x/gp:1 version || dry_ok=0
if grep -qx -- '--gpus\|--ipc=host' <<<"$out"; then echo "docker_run.sh: DTOOLS_GPUS=none/DTOOLS_SHM_SIZE ignored" >&2; dry_ok=0; fi
out=$(DTOOLS_DOCKER=$stub "$root/dtools/docker_build.sh" LIBTORCH_VERSION=2.4.1 GO_VERSION=1.26.8 --progress=plain 2>/dev/null) || dry_ok=0
expect docker_build.sh "$out" build -t gopruner:latest -f "$root/Dockerfile" --build-arg LIBTORCH_VERSION=2.4.1 \
  --build-arg GO_VERSION=1.26.8 --progress=plain "$root" || dry_ok=0
if [ $dry_ok = 1 ]; then
  pass "docker_run.sh/docker_build.sh dry runs against a stub docker (--gpus, --ipc/--shm-size, -u uid:gid, workspace mount, GOPRUNER_* env, build ARGs)"
else
  fail "docker_run.sh/docker_build.sh dry runs"
fi

# ---------------------------------------------------------------------------
section "3. Replay of the build and runtime stages against the local libtorch"
multiarch=$(${CXX:-g++} -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
torch_inc="" torch_lib="" torch_from=""
if [ -n "${LIBTORCH:-}" ] && [ -f "$LIBTORCH/include/torch/script.h" ]; then
  torch_inc=$LIBTORCH/include torch_lib=$LIBTORCH/lib torch_from="LIBTORCH=$LIBTORCH"
elif [ -f /usr/include/torch/script.h ]; then
  torch_inc=/usr/include torch_lib=/usr/lib/$multiarch torch_from="Debian's libtorch-dev"
else
  pydir=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))' 2>/dev/null || true)
  if [ -n "$pydir" ] && [ -f "$pydir/include/torch/script.h" ]; then
    torch_inc=$pydir/include torch_lib=$pydir/lib torch_from="Python torch at $pydir"
  fi
fi
if [ -z "$torch_inc" ] || [ ! -x "$checker" ]; then
  if [ -z "$torch_inc" ]; then
    fail "replay: no local libtorch (set LIBTORCH, or run make deps)"
  else
    fail "replay: no dockerfile-check binary"
  fi
else
  echo "libtorch for the replay: $torch_from"
  replay_log=$tmp/replay.log
  if "$checker" replay -f "$ctx/Dockerfile" -context "$ctx" -work "$tmp/replay" \
    -torch-include "$torch_inc" -torch-lib "$torch_lib" 2>&1 | tee "$replay_log"; then
    local_torch=$(sed -n 's/^ *libtorch *\([0-9][^ ]*\).*/\1/p' "$replay_log" | head -n1)
    pass "replay: the build stage's make shim/make build against $torch_from (libtorch ${local_torch:-?}, CPU), the runtime stage's layout, gopruner version and ENTRYPOINT+CMD from it"
  else
    fail "replay (log above)"
  fi
fi

# ---------------------------------------------------------------------------
section "Summary"
echo "checked:"
for c in "${checked[@]}"; do echo "  + $c"; done
if [ ${#skipped[@]} -gt 0 ]; then
  echo "skipped:"
  for c in "${skipped[@]}"; do echo "  - $c"; done
fi
cat <<'EOF'
not tested here (needs a Docker engine, the network or a GPU):
  - pulling the nvidia/cuda base images (that the tags exist), apt-get in them
  - downloading and unpacking the libtorch CUDA zip and the Go tarball (URLs, sha256)
  - compiling the shim against libtorch 2.x headers and linking libtorch_cuda
    (the image's readelf guard); the replay uses the local libtorch, CPU only
  - the runtime image's own libraries (glibc/libstdc++ of the base, libtorch's
    bundled CUDA/cuDNN), COPY of symlinks by a real BuildKit
  - the GPU: NVIDIA Container Toolkit, --gpus, CUDA in the container
    (`dtools/docker_run.sh version` should then say `cuda yes`)
EOF
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED:"
  for c in "${failed[@]}"; do echo "  ! $c"; done
  echo "container-check: FAILED ($((SECONDS - start))s)"
  exit 1
fi
echo "container-check: ok ($((SECONDS - start))s)"
