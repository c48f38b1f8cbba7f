#!/usr/bin/env bash
# Run every kernel-dependent test in one VM guest whose kernel has WireGuard. On the host these
# tests skip themselves; here WGMESH_REQUIRE_KERNEL=1 turns a missing kernel feature into a failure.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
swift build --build-tests >/dev/null
# The guest runs the host's programs: every one the kernel tests run (their sh(...) calls) must be here.
for prog in ip ping; do
  command -v "$prog" >/dev/null || { echo "vm-test: the kernel tests run $prog, which is not installed: run scripts/setup.sh" >&2; exit 1; }
done
bundle="$root/.build/debug/wgmeshPackageTests.xctest"
# The test classes that need the kernel; keep in step with Tests/*/ (grep KernelSupport.require).
kernel_tests=$(for f in $(grep -l 'KernelSupport.require' Tests/*/*.swift); do
  grep -o '^final class [A-Za-z]*Tests' "$f" | awk -v module="$(basename "$(dirname "$f")")" '{print module "." $3}'
done | paste -sd, -)
echo "vm-test: running in the VM: $kernel_tests"
log="$root/.vm/vm-test.log"
mkdir -p "$root/.vm"
set +e
bash scripts/vm-run.sh "WGMESH_REQUIRE_KERNEL=1 $bundle $kernel_tests" | tee "$log"
rc=${PIPESTATUS[0]}
set -e
[ -s "$log" ] || { echo "vm-test: no output from the guest" >&2; exit 1; }
if grep -q ' skipped' "$log"; then
  echo "vm-test: a kernel test was skipped inside the VM; that is a failure" >&2
  exit 1
fi
exit "$rc"
