#!/usr/bin/env bash
# Run every kernel-dependent test in one VM guest whose kernel has WireGuard. On the host these
# tests skip themselves; here WGMESH_REQUIRE_KERNEL=1 turns a missing kernel feature into a failure, and
# scripts/check-skips.sh checks that every one of them ran.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
swift build --build-tests >/dev/null
# The guest runs the host's programs: every one the kernel tests run (their sh(...) calls) must be here.
for prog in ip ping; do
  command -v "$prog" >/dev/null || { echo "vm-test: the kernel tests run $prog, which is not installed: run scripts/setup.sh" >&2; exit 1; }
done
bundle="$root/.build/debug/wgmeshPackageTests.xctest"
# The test classes that need the kernel: those whose code calls KernelSupport.requireWireGuard().
kernel_tests=$(bash scripts/check-skips.sh classes)
echo "vm-test: running in the VM: $kernel_tests"
log="$root/.vm/vm-test.log"
mkdir -p "$root/.vm"
set +e
bash scripts/vm-run.sh "WGMESH_REQUIRE_KERNEL=1 $bundle $kernel_tests" | tee "$log"
rc=${PIPESTATUS[0]}
set -e
[ -s "$log" ] || { echo "vm-test: no output from the guest" >&2; exit 1; }
# Every test of those classes ran (today 14), none skipped, none else: a typo in the filter, or a guest that ran
# nothing, fails here even where XCTest would exit 0.
if ! bash scripts/check-skips.sh vm "$log"; then
  echo "vm-test: FAIL: the VM did not run exactly the kernel tests (above)" >&2
  exit 1
fi
exit "$rc"
