#!/usr/bin/env bash
# Which tests skip, checked on XCTest's output. The kernel tests are the tests of every test class whose own
# code declares the need (it calls KernelSupport.requireWireGuard(), Tests/NetlinkTests/KernelTestSupport.swift):
# on the host they, and only they, skip; in the VM (scripts/vm-test.sh) every one of them runs and none skips.
# The tests themselves are listed from the built test bundle (`swift build --build-tests`), not counted by hand.
# Usage: scripts/check-skips.sh classes     the kernel test classes as Module.Class, comma-separated (the VM's filter)
#        scripts/check-skips.sh host LOG    LOG, the whole suite on the host (`swift test`), skipped exactly those
#        scripts/check-skips.sh vm LOG      LOG, scripts/vm-test.sh's guest, ran all of them and skipped none
# Prints a FAIL line for each difference and exits 1 if there is one.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bundle=.build/debug/wgmeshPackageTests.xctest

# Module.Class, one a line: each file that calls KernelSupport.requireWireGuard() must declare one test class.
kernel_classes() {
  local files f module classes
  files=$(grep -rl --include='*.swift' 'KernelSupport.requireWireGuard()' Tests/ | sort)
  if [ -z "$files" ]; then
    echo "check-skips: FAIL: no test calls KernelSupport.requireWireGuard(); the kernel tests cannot be found" >&2
    return 1
  fi
  for f in $files; do
    module=${f#Tests/}
    module=${module%%/*}
    classes=$(grep -oE '^(final )?class [A-Za-z0-9_]+: XCTestCase' "$f" \
      | sed -E 's/^(final )?class ([A-Za-z0-9_]+):.*/\2/')
    if [ "$(wc -w <<<"$classes")" != 1 ]; then
      echo "check-skips: FAIL: $f calls KernelSupport.requireWireGuard() and declares $(wc -w <<<"$classes")" \
        "XCTestCase classes ($(paste -sd' ' - <<<"$classes")); keep each kernel test class in a file of its own" >&2
      return 1
    fi
    echo "$module.$classes"
  done
}

mode=${1:-}
if [ "$mode" = classes ]; then
  kernel_classes | paste -sd, -
  exit 0
fi
if [ "$mode" != host ] && [ "$mode" != vm ] || [ $# != 2 ]; then
  echo "usage: scripts/check-skips.sh classes | host LOG | vm LOG" >&2
  exit 2
fi
log=$2
[ -s "$log" ] || { echo "check-skips: FAIL: $log is missing or empty" >&2; exit 1; }
if [ ! -x "$bundle" ]; then
  echo "check-skips: FAIL: no test bundle at $bundle to list the tests from: run swift build --build-tests" >&2
  exit 1
fi
classes=$(kernel_classes)
names=$(sed 's/^.*\.//' <<<"$classes" | paste -sd' ' -)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Every test of the bundle as Class.test (XCTest's output names no module), and the kernel ones.
"$bundle" --list-tests | sed -nE 's|^([A-Za-z0-9_]+)\.([A-Za-z0-9_]+)/([A-Za-z0-9_]+)$|\1.\2 \2.\3|p' >"$work/listed"
if [ ! -s "$work/listed" ]; then
  echo "check-skips: FAIL: $bundle --list-tests listed no tests" >&2
  exit 1
fi
awk 'NR == FNR { kernel[$1] = 1; next } ($1 in kernel) { print $2 }' <(echo "$classes") "$work/listed" \
  | sort >"$work/expected"
awk '{ print $2 }' "$work/listed" | sort >"$work/all"
if [ ! -s "$work/expected" ]; then
  echo "check-skips: FAIL: the test bundle has no test of the kernel classes ($names)" >&2
  exit 1
fi
# What the log says of each test: Class.test passed|failed|skipped. Not anchored: a test's own output may come first.
grep -aoE "Test Case '[A-Za-z0-9_]+\.[A-Za-z0-9_]+' (passed|failed|skipped)" "$log" \
  | sed -E "s/^Test Case '([^']*)' (.*)$/\1 \2/" | sort >"$work/results" || true
awk '$2 == "skipped" { print $1 }' "$work/results" | sort -u >"$work/skipped"
awk '$2 != "skipped" { print $1 }' "$work/results" | sort -u >"$work/ran"
awk '{ print $1 }' "$work/results" | sort -u >"$work/seen"
# XCTest's last summary: the run's whole count (the top suite prints it last).
summary=$(grep -aE '^[[:space:]]*Executed [0-9]+ tests?, with' "$log" | tail -n 1 | sed 's/^[[:space:]]*//' || true)
executed=$(sed -nE 's/^Executed ([0-9]+) tests?, with.*/\1/p' <<<"$summary")
n_expected=$(wc -l <"$work/expected")
fails=0
fail() {
  echo "check-skips: FAIL: $*" >&2
  fails=$((fails + 1))
}
# A host whose kernel has WireGuard runs the kernel tests too (probed in a network namespace of its own, so the
# host's links stay as they are): there, nothing may skip.
if [ "$mode" = host ] && unshare -n ip link add wgmesh-probe type wireguard 2>/dev/null; then
  echo "check-skips: this host's kernel has WireGuard: every test, the kernel tests included, must run here"
  : >"$work/expected"
  n_expected=0
fi
if [ "$mode" = host ]; then
  grep -aqE "^Test Suite 'All tests' (passed|failed) at" "$log" || fail "$log has no end of the whole run ('All tests')"
  while read -r t; do
    fail "$t skipped on the host, and it is no kernel test (only the tests of $names may skip, and only on a" \
      "kernel without WireGuard)"
  done < <(comm -23 "$work/skipped" "$work/expected")
  while read -r t; do fail "$t ran on the host ($(awk -v t="$t" '$1 == t { print $2 }' "$work/results")); it is a" \
    "kernel test, which must skip here"; done < <(comm -12 "$work/ran" "$work/expected")
  while read -r t; do fail "$t is not in $log: every test must run or skip"; done < <(comm -23 "$work/all" "$work/seen")
  n_all=$(wc -l <"$work/all")
  skipped=$(sed -nE 's/.*, with ([0-9]+) tests? skipped.*/\1/p' <<<"$summary")
  if [ "$executed" != "$n_all" ] || [ "${skipped:-0}" != "$n_expected" ]; then
    # (swift-corelibs-xctest also counts as skipped a test whose setUp threw an error, which fails it too.)
    fail "XCTest's summary says '$summary'; expected $n_all tests executed, $n_expected of them skipped"
  fi
  if [ $fails = 0 ] && [ "$n_expected" = 0 ]; then
    echo "check-skips: host: $executed tests executed, none skipped (the kernel has WireGuard)"
  elif [ $fails = 0 ]; then
    echo "check-skips: host: $executed tests executed, $n_expected skipped: exactly the tests of the kernel classes" \
      "($names)"
  fi
else
  while read -r t; do fail "$t skipped in the VM; a kernel test must run there"; done \
    < <(comm -12 "$work/skipped" "$work/expected")
  while read -r t; do fail "$t did not run in the VM"; done < <(comm -23 "$work/expected" "$work/seen")
  while read -r t; do fail "$t failed in the VM"; done \
    < <(awk '$2 == "failed" { print $1 }' "$work/results" | sort -u | comm -12 - "$work/expected")
  while read -r t; do fail "$t ran in the VM and is no kernel test (the filter is too wide)"; done \
    < <(comm -23 "$work/seen" "$work/expected")
  if [ "${executed:-0}" != "$n_expected" ]; then
    fail "the VM executed ${executed:-no} tests ('$summary'), not the $n_expected tests of $names"
  fi
  if [ $fails = 0 ]; then
    echo "check-skips: vm: $executed tests executed, none skipped: every test of the kernel classes ($names)"
  fi
fi
if [ $fails != 0 ]; then
  exit 1
fi
