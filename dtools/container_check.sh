#!/usr/bin/env bash
# `make container-check`: checks the GPU container (Dockerfile, .dockerignore,
# dtools/*.sh) with Docker's own tools.
#
#  1. dtools scripts: bash -n, shellcheck when installed, and a dry run of
#     each against a stub docker client (no engine needed);
#  2. the Dockerfile's build ARGs agree (libtorch's CUDA flavour matches the
#     CUDA of the base images);
#  3. where a Docker engine is reachable: `docker build --check` (BuildKit's
#     own lint rules), then a real `docker build` of the image and
#     `gopruner version` in it (on the GPUs with CONTAINER_CHECK_GPU=1, which
#     must then report `cuda yes`). Without an engine these steps print
#     "skipped: no Docker engine" and the script still exits 0.
#
# Environment:
#   DTOOLS_DOCKER          docker client (default docker)
#   DTOOLS_IMAGE           image to build (default gopruner:container-check)
#   CONTAINER_CHECK_BUILD  0: lint only, no real build (default 1)
#   CONTAINER_CHECK_GPU    1: run the built image on the GPUs (default 0)
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
docker=${DTOOLS_DOCKER:-docker}
image=${DTOOLS_IMAGE:-gopruner:container-check}
start=$SECONDS

tmp=$(mktemp -d "${TMPDIR:-/tmp}/gopruner-container-check.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

checked=()
failed=()
skipped=()
pass() { checked+=("$1"); echo "--> ok: $1"; }
fail() { failed+=("$1"); echo "--> FAILED: $1"; }
skip() { skipped+=("$1"); echo "--> skipped: $1"; }
section() { printf '\n== %s (%ds)\n' "$1" $((SECONDS - start)); }

# ---------------------------------------------------------------------------
section "1. dtools scripts"
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
section "2. Dockerfile build ARGs"
arg() { sed -n "s/^ARG $1=\(.*\)$/\1/p" Dockerfile | head -n1; }
cuda=$(arg CUDA_VERSION) flavour=$(arg LIBTORCH_CUDA)
want=cu$(cut -d. -f1,2 <<<"$cuda" | tr -d .)
if [ -n "$cuda" ] && [ "$flavour" = "$want" ]; then
  pass "LIBTORCH_CUDA=$flavour matches CUDA_VERSION=$cuda"
else
  fail "LIBTORCH_CUDA=${flavour:-?} does not match CUDA_VERSION=${cuda:-?} (want $want)"
fi

# ---------------------------------------------------------------------------
section "3. docker build --check, docker build, gopruner version in the image"
if ! command -v "$docker" >/dev/null; then
  skip "no Docker engine: no docker client ($docker); BuildKit lint and the real build did not run"
elif ! "$docker" info >/dev/null 2>&1; then
  skip "no Docker engine: '$docker info' cannot reach one; BuildKit lint and the real build did not run"
else
  if "$docker" build --check -f Dockerfile . ; then
    pass "docker build --check (BuildKit lint rules)"
  else
    fail "docker build --check"
  fi
  if [ "${CONTAINER_CHECK_BUILD:-1}" = 0 ]; then
    skip "docker build (CONTAINER_CHECK_BUILD=0)"
  elif DTOOLS_DOCKER=$docker DTOOLS_IMAGE=$image dtools/docker_build.sh --progress=plain; then
    pass "docker build -t $image (libtorch download, shim + binary, libtorch_cuda link guard)"
    gpus=none
    [ "${CONTAINER_CHECK_GPU:-0}" = 1 ] && gpus=all
    if out=$(DTOOLS_DOCKER=$docker DTOOLS_IMAGE=$image DTOOLS_GPUS=$gpus dtools/docker_run.sh version </dev/null); then
      echo "$out"
      if [ "$gpus" = all ] && ! grep -q 'cuda *yes' <<<"$out"; then
        fail "gopruner version on the GPUs does not say cuda yes"
      else
        pass "gopruner version in $image (DTOOLS_GPUS=$gpus)"
      fi
    else
      fail "gopruner version in $image"
    fi
  else
    fail "docker build"
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
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED:"
  for c in "${failed[@]}"; do echo "  ! $c"; done
  echo "container-check: FAILED ($((SECONDS - start))s)"
  exit 1
fi
echo "container-check: ok ($((SECONDS - start))s)"
