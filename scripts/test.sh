#!/usr/bin/env bash
# The whole test suite: the code style, unit tests, the manifest check, and the image with every container of
# the manifests run from it as a kubelet would, on the host; then every kernel test in one VM guest, then the agent's
# three-node scenario in a second guest (kernel WireGuard), the ten-node faults and figures in a third, the
# three-node scenario on the host (wireguard-go), then the demo; last, every Node write those scenarios
# recorded, replayed through the admission policies.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
echo "== host: the code style (scripts/check-format.sh)"
bash scripts/check-format.sh
bash scripts/setup.sh
echo "== host: swift test (XCTest) (kernel tests skip themselves here and run in the VM below)"
# The wireguard-go tests (root, /dev/net/tun, wireguard-go) and the `nft -c` check (nftables) have what they need
# from scripts/setup.sh: here a missing need fails them instead of skipping them. Then exactly the kernel tests
# must have skipped (scripts/check-skips.sh).
mkdir -p .e2e
host_status=0
WGMESH_REQUIRE_USERSPACE=1 WGMESH_REQUIRE_NFT=1 swift test --disable-swift-testing 2>&1 | tee .e2e/host-tests.log \
  | grep -vE "^Test (Case|Suite) .* started at" || host_status=1
bash scripts/check-skips.sh host .e2e/host-tests.log || host_status=1
if [ $host_status != 0 ]; then
  echo "test: FAIL: the host's swift test (above; its whole output is in .e2e/host-tests.log)" >&2
  exit 1
fi
echo "== host: manifests/ rendered, validated and checked against the wgmesh binary (scripts/check-manifests.sh)"
swift build --product wgmesh >/dev/null
bash scripts/check-manifests.sh
echo "== host: the image (scripts/build-image.sh), checked from the inside (scripts/check-image.sh), and every container of manifests/ run from it as a kubelet would (scripts/check-containers.sh)"
bash scripts/build-image.sh
archive=build/wgmesh-$(.build/debug/wgmesh --version).oci.tar
bash scripts/check-image.sh "$archive"
bash scripts/check-containers.sh "$archive"
echo "== VM kernel: scripts/vm-test.sh"
bash scripts/vm-test.sh 2>&1 | grep -vE "^Test (Case|Suite) .* started at"
echo "== VM: three nodes, controller and agents (scripts/e2e-agent.sh)"
swift build --product wgmesh >/dev/null
swift build --product TestAPIServerTool >/dev/null
# Three agents, a controller, the API server and wireguard-go: more than the kernel tests' 2 GiB.
WGMESH_VM_MEMORY=3G bash scripts/vm-run.sh 'bash scripts/e2e-agent.sh'
# Each guest's writes, kept for the replay at the end (vm-run.sh empties .vm/out on every run).
keep_writes() { mkdir -p .e2e && { cp ".vm/out/$1/writes.jsonl" ".e2e/vm-$1-writes.jsonl" 2>/dev/null || rm -f ".e2e/vm-$1-writes.jsonl"; }; }
keep_writes e2e-kernel
echo "== VM: faults and figures on ten nodes (scripts/e2e.sh)"
WGMESH_VM_MEMORY=3G bash scripts/vm-run.sh 'bash scripts/e2e.sh'
keep_writes e2e-faults
echo "== host: three nodes with the userspace backend (WGMESH_E2E_BACKEND=userspace scripts/e2e-agent.sh)"
WGMESH_E2E_BACKEND=userspace bash scripts/e2e-agent.sh
echo "== host: the demo (scripts/demo.sh)"
mkdir -p .e2e
WGMESH_RECORD="$root/.e2e/demo-writes.jsonl" bash scripts/demo.sh
echo "== host: every Node write the scenarios recorded, replayed through the admission policies (check-admission-policies.py --replay)"
kubectl kustomize manifests/ >.e2e/wgmesh.yaml
.venv-validate/bin/python scripts/check-admission-policies.py --replay .e2e/wgmesh.yaml .e2e/e2e-userspace/writes.jsonl .e2e/demo-writes.jsonl \
  .e2e/vm-e2e-kernel-writes.jsonl .e2e/vm-e2e-faults-writes.jsonl
