#!/usr/bin/env bash
# Installs what gopruner needs on a Debian machine when it is missing:
# libtorch (CPU) and a C++ compiler for the shim, OpenBLAS (libtorch's BLAS),
# python3-torch/torchvision for the test fixtures, Chromium for the report's
# browser test. Go modules come through the module proxy.
set -euo pipefail
need=()
for p in g++ libtorch-dev python3-torch python3-torchvision libopenblas0-pthread chromium; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "deps: installing ${need[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
if [ ! -x "$GO" ] && ! command -v "$GO" >/dev/null; then
  echo "deps: Go is missing (want Go >= 1.26 at /usr/local/go or on PATH)" >&2
  exit 1
fi
"$GO" mod download
