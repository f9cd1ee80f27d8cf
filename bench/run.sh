#!/usr/bin/env bash
# gopruner benchmarks (`make bench` runs this after building bin/gopruner and
# the fixtures). Builds the driver, runs it from the repository root, and
# leaves bench/results.json and bench/results.md; scratch goes to bench/out/
# (gitignored). Extra arguments go to benchrun (e.g. -only 1,2 or -v=false;
# see `bench/out/bin/benchrun -h`).
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-$(command -v go 2>/dev/null || echo /usr/local/go/bin/go)}
export PATH="$(dirname "$GO"):$PATH" # GoMNIST is located through `go list -m`
mkdir -p bench/out/bin
"$GO" build -o bench/out/bin/ ./bench/cmd/benchrun ./bench/mkmnist
exec bench/out/bin/benchrun "$@"
