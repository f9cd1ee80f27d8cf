#!/usr/bin/env bash
# Builds the gopruner GPU image from the repository's Dockerfile.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: dtools/docker_build.sh [NAME=VALUE...] [docker build arguments...]

Builds the gopruner GPU image (CUDA + libtorch 2.x) from the repository root.
Leading NAME=VALUE arguments set the Dockerfile's build ARGs; the rest go to
`docker build` (e.g. --no-cache, --progress=plain, --build-arg ...).

Build ARGs (the Dockerfile's defaults in brackets):
  CUDA_VERSION      CUDA of the nvidia/cuda base images [12.4.1]
  UBUNTU_VERSION    Ubuntu of the base images [22.04]
  LIBTORCH_VERSION  libtorch [2.4.1]
  LIBTORCH_CUDA     libtorch's CUDA flavour, must match CUDA_VERSION [cu124]
  LIBTORCH_URL      the whole libtorch zip address (overrides the two above)
  LIBTORCH_SHA256   sha256 of the zip, checked when set
  GO_VERSION        Go toolchain [1.26.8]
  GO_SHA256         sha256 of go${GO_VERSION}.linux-amd64.tar.gz, checked when set

Environment:
  DTOOLS_IMAGE      image name (default gopruner:latest)
  DTOOLS_DOCKER     docker client (default docker)

Example:
  dtools/docker_build.sh LIBTORCH_VERSION=2.5.1 --progress=plain
USAGE
}

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
esac

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
image=${DTOOLS_IMAGE:-gopruner:latest}
docker=${DTOOLS_DOCKER:-docker}

build_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    CUDA_VERSION=* | UBUNTU_VERSION=* | LIBTORCH_VERSION=* | LIBTORCH_CUDA=* | \
      LIBTORCH_URL=* | LIBTORCH_SHA256=* | GO_VERSION=* | GO_SHA256=*)
      build_args+=(--build-arg "$1")
      shift
      ;;
    [A-Z]*=*)
      echo "docker_build.sh: unknown build ARG ${1%%=*} (see --help)" >&2
      exit 2
      ;;
    *) break ;;
  esac
done

# The libtorch zip and the Go tarball are x86_64 builds.
set -x
exec "$docker" build --platform linux/amd64 -t "$image" -f "$root/Dockerfile" \
  ${build_args[@]+"${build_args[@]}"} "$@" "$root"
