#!/usr/bin/env bash
# Time for the controller to bring N new Nodes (default 5,000) to fully annotated against the test API
# server, the API requests it makes per node, and the ratio against a bare client making one write per
# node in the same run. Release build in its own folder (.build-bench), so that it does not wait for or
# disturb a debug build. It ends with a table of figures and goals (goals.sh): printed, never enforced.
set -euo pipefail
cd "$(dirname "$0")/.."
nodes="${1:-5000}"
swift build -c release --scratch-path .build-bench --product BenchController >&2
out=$(.build-bench/release/BenchController "$nodes" | tee /dev/stderr)
. scripts/goals.sh
goal_prefix=bench-controller
ratio=$(sed -n 's/^controller\/reference: //p' <<<"$out")
writes=$(sed -n 's/.*node writes per node: \([0-9.]*\).*/\1/p' <<<"$out")
goal timing "bring-up / bare client" "$(met below "$ratio" 1.5)" "$ratio" "≤ 1.5"
goal timing "node writes per node" "$(met below "$writes" 1)" "$writes" "1 (the minimum)"
goals_table
