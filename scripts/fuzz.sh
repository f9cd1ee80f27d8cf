#!/usr/bin/env bash
# Short seeded fuzz runs of every parser and of the channel analysis, for
# `make test`. Usage: scripts/fuzz.sh [DURATION] (default 10s per target).
# Longer runs: scripts/fuzz.sh 10m
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
t=${1:-10s}
targets=(
  "./internal/core/graph FuzzAnalyze"
  "./internal/core/data FuzzParseCSV"
  "./internal/core/config FuzzLoad"
  "./internal/core/safepath FuzzWithin"
  "./internal/core/safepath FuzzComponent"
  "./internal/core/plan FuzzParse"
  "./internal/report FuzzRender"
  "./internal/core/search/cut FuzzCutSequence"
)
for tgt in "${targets[@]}"; do
  set -- $tgt
  echo "fuzz $2 ($1) for $t"
  CGO_ENABLED=0 "$GO" test -run='^$' -fuzz="^$2\$" -fuzztime="$t" "$1"
done
