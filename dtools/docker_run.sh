#!/usr/bin/env bash
# Runs gopruner in the GPU container; every argument goes to gopruner.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: dtools/docker_run.sh [gopruner arguments...]
       dtools/docker_run.sh --usage

Runs gopruner (the image's ENTRYPOINT) in the GPU container, as the calling
user, with the workspace directory mounted at /workspace, the container's
working directory. Paths given to gopruner (--model, --dataset, --config,
--exp-save, --out, --plan-out) must lie inside the workspace: give them
relative to it, or absolute under /workspace. Outputs belong to the caller.
Without arguments the image's CMD runs (gopruner --help).

Environment:
  DTOOLS_IMAGE        image (default gopruner:latest)
  DTOOLS_WORKSPACE    host directory mounted at /workspace (default: $PWD)
  DTOOLS_GPUS         all (default) | none | device list such as 0,1 or
                      device=0,1 | docker's own --gpus value. The container
                      sees the selected GPUs as cuda:0, cuda:1, ...
  DTOOLS_SHM_SIZE     e.g. 16g: --shm-size instead of --ipc=host
  DTOOLS_DOCKER       docker client (default docker)
  DTOOLS_DOCKER_ARGS  extra `docker run` arguments, split on spaces
  GOPRUNER_*          passed into the container (gopruner's own settings)

Examples:
  dtools/docker_run.sh version
  DTOOLS_GPUS=0,1 dtools/docker_run.sh prune --model models/resnet.pt \
      --config Pruning.yaml --cart 0,0,1,1 --exp-save exp_save
USAGE
}

if [ "${1:-}" = "--usage" ]; then
  usage
  exit 0
fi

image=${DTOOLS_IMAGE:-gopruner:latest}
docker=${DTOOLS_DOCKER:-docker}
gpus=${DTOOLS_GPUS:-all}
workspace=${DTOOLS_WORKSPACE:-$PWD}

if [ ! -d "$workspace" ]; then
  echo "docker_run.sh: workspace $workspace is not a directory" >&2
  exit 2
fi
workspace=$(cd "$workspace" && pwd -P)

args=(run --rm --init)
# Progress bars want a terminal; pipes and CI get none.
if [ -t 0 ] && [ -t 1 ]; then
  args+=(-it)
fi

case "$gpus" in
  none | "") ;;
  all) args+=(--gpus all) ;;
  device=*) args+=(--gpus "\"$gpus\"") ;;
  *[!0-9,]*) args+=(--gpus "$gpus") ;;
  *) args+=(--gpus "\"device=$gpus\"") ;;
esac

if [ -n "${DTOOLS_SHM_SIZE:-}" ]; then
  args+=(--shm-size "$DTOOLS_SHM_SIZE")
else
  args+=(--ipc=host)
fi

# The caller's uid/gid: files written under /workspace belong to the caller.
# Such a user has no home in the image; give it a writable one.
args+=(-u "$(id -u):$(id -g)" -e HOME=/tmp)
args+=(-v "$workspace:/workspace" -w /workspace)

# gopruner's own environment settings (GOPRUNER_...) follow it in.
while read -r name; do
  case "$name" in
    GOPRUNER_*) args+=(-e "$name") ;;
  esac
done < <(compgen -e)

if [ -n "${DTOOLS_DOCKER_ARGS:-}" ]; then
  read -r -a extra <<<"$DTOOLS_DOCKER_ARGS"
  args+=("${extra[@]}")
fi

# Only the workspace is mounted: warn about host paths (they do not exist in
# the container). gopruner still runs and says what it cannot open.
for a in "$@"; do
  v=${a#--*=}
  case "$v" in
    /workspace | /workspace/*) ;;
    "$workspace" | "$workspace"/*)
      echo "docker_run.sh: warning: $v is a host path; in the container it is /workspace${v#"$workspace"}" >&2
      ;;
    /*)
      echo "docker_run.sh: warning: $v is outside the workspace ($workspace), which is all the container sees" >&2
      ;;
  esac
done

exec "$docker" "${args[@]}" "$image" "$@"
