#!/usr/bin/env bash
# Short seeded fuzz runs of every parser and of the channel analysis, for
# `make test`. Usage: scripts/fuzz.sh [BUDGET] (default 5000x per target).
# Longer runs: scripts/fuzz.sh 2000000x, or a duration such as 10m.
#
# The default budget is a count of executions, not a duration: with a
# duration, Go's fuzz coordinator (go1.26) can report "context deadline
# exceeded" as a failure when -fuzztime expires while a worker is mid-call
# on a loaded machine (golang/go#75804, fixed in go1.27), without any
# failing input. A count has no deadline to race, so a loaded CI machine
# only makes the run slower. A real finding still fails: it writes its
# input under testdata/fuzz/ and go test exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
t=${1:-5000x}
targets=(
  "./internal/core/graph FuzzAnalyze"
  "./internal/core/data FuzzParseCSV"
  "./internal/core/config FuzzLoad"
  "./internal/core/safepath FuzzWithin"
  "./internal/core/safepath FuzzComponent"
  "./internal/core/plan FuzzParse"
  "./internal/report FuzzRender"
  "./internal/core/search/cut FuzzCutSequence"
  "./internal/core/fail FuzzTorchScript"
)
for tgt in "${targets[@]}"; do
  set -- $tgt
  echo "fuzz $2 ($1) for $t"
  CGO_ENABLED=0 "$GO" test -run='^$' -fuzz="^$2\$" -fuzztime="$t" "$1"
done
