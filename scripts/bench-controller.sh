#!/usr/bin/env bash
# Time for the controller to bring N new Nodes (default 5,000) to fully annotated against the test API
# server, the API requests it makes per node, and the ratio against a bare client making one write per
# node in the same run. Release build in its own folder (.build-bench), so that it does not wait for or
# disturb a debug build. No thresholds: it prints numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
nodes="${1:-5000}"
swift build -c release --scratch-path .build-bench --product BenchController >&2
.build-bench/release/BenchController "$nodes"
