#!/usr/bin/env bash
# Benchmark: configure N peers from scratch through wgmesh's netlink code and through `wg setconf`,
# on the same wg(8) file, in the VM kernel; then change one peer of 10,000. Prints times and ours/wg.
# Usage: scripts/bench-netlink.sh [repetitions]   (default 3; the median is reported)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
reps=${1:-3}
bash scripts/setup.sh
# The binary as a node image would carry it: release, with the Swift runtime and Foundation linked in
# statically (it needs no Swift installed, and binds far fewer libraries at start). Its own build folder,
# so that switching flags never rebuilds the development tree.
swift build -c release --static-swift-stdlib --product wgmesh --scratch-path "$root/.build-static" >/dev/null
bin="$root/.build-static/release/wgmesh"
work="$root/.vm/bench"
mkdir -p "$work"
python3 - "$work" <<'PY'
import base64, os, sys
work = sys.argv[1]
def key(): return base64.b64encode(os.urandom(32)).decode()
for n in (1000, 10000):
    lines = ["[Interface]", "PrivateKey = " + key(), ""]  # no ListenPort: several devices coexist
    for i in range(n):
        lines += ["[Peer]", "PublicKey = " + key(),
                  "Endpoint = 192.0.2.%d:%d" % (i % 250 + 1, 20000 + i % 1000),
                  "AllowedIPs = 10.%d.%d.0/24, fd00:10:244:%x::/64" % (i // 256 % 256, i % 256, i), ""]
    open(os.path.join(work, "peers-%d.conf" % n), "w").write("\n".join(lines))
PY

cat > "$work/guest.sh" <<GUEST
set -e
ns() { date +%s%N; }
fail() { echo "bench-netlink: FAIL: \$*"; exit 1; }
# One repetition, in this shell (no pipeline, no subshell): runs the command and appends its time in ms to file
# \$1. A command that fails fails the whole benchmark, naming itself; no median is taken over it.
timed() {
  file=\$1
  shift
  status=0
  t0=\$(ns)
  "\$@" >/dev/null 2>/tmp/wgb-err || status=\$?
  t1=\$(ns)
  if [ \$status != 0 ]; then fail "\$* exited \$status: \$(cat /tmp/wgb-err)"; fi
  echo \$(( (t1 - t0) / 1000000 )) >> \$file
}
# The median of the times in file \$1, written to file \$2; every one of the $reps repetitions must have left one.
median() {
  count=\$(grep -cxE '[0-9]+' \$1 2>/dev/null || true)
  lines=\$(cat \$1 2>/dev/null | wc -l)
  if [ "\$count" != $reps ] || [ "\$lines" != $reps ]; then
    fail "\$1 holds \$count times in \$lines lines, not the $reps repetitions: \$(cat \$1 2>/dev/null | tr '\n' ' ')"
  fi
  sort -n \$1 | awk '{a[NR]=\$1} END {print a[int((NR+1)/2)]}' > \$2
}
# A new link for every run: deleting one with 10,000 peers costs the kernel minutes under emulation
# (an RCU grace period per peer), and the guest is thrown away afterwards anyway.
links=0
fresh() { links=\$((links + 1)); dev=wgb\$links; ip link add \$dev type wireguard || fail "ip link add \$dev failed"; }
peers() {
  got=\$(wg show \$dev peers | wc -l)
  if [ "\$got" != \$1 ]; then fail "\$2 left \$got peers on \$dev, not \$1"; fi
}
times=\$WGMESH_VM_OUT/times
mkdir -p \$times
for n in 1000 10000; do
  for tool in wg ours; do
    for r in \$(seq $reps); do
      fresh
      if [ \$tool = wg ]; then
        timed \$times/\$tool-\$n wg setconf \$dev $work/peers-\$n.conf
      else
        timed \$times/\$tool-\$n $bin wg setconf \$dev $work/peers-\$n.conf
      fi
      peers \$n "\$tool setconf, repetition \$r,"
    done
    median \$times/\$tool-\$n \$WGMESH_VM_OUT/\$tool-\$n.ms
  done
done
fresh
$bin wg setconf --stats \$dev $work/peers-1000.conf > \$WGMESH_VM_OUT/ours-1000.msgs || fail "wgmesh wg setconf --stats (1,000 peers) failed"
fresh
$bin wg setconf --stats \$dev $work/peers-10000.conf > \$WGMESH_VM_OUT/ours-10000.msgs || fail "wgmesh wg setconf --stats (10,000 peers) failed"
peers 10000 "wgmesh wg setconf --stats"
key=\$(wg show \$dev peers | sed -n 5000p)
if [ -z "\$key" ]; then fail "no 5,000th peer on \$dev"; fi
for tool in wg ours; do
  for r in \$(seq $reps); do
    if [ \$tool = wg ]; then
      timed \$times/\$tool-one wg set \$dev peer \$key allowed-ips 10.250.\$r.0/24
    else
      timed \$times/\$tool-one $bin wg set-peer \$dev \$key --allowed-ips 10.250.\$r.0/24
    fi
  done
  median \$times/\$tool-one \$WGMESH_VM_OUT/\$tool-one.ms
done
$bin wg set-peer --stats \$dev \$key --allowed-ips 10.251.0.0/24 > \$WGMESH_VM_OUT/ours-one.msgs || fail "wgmesh wg set-peer --stats failed"
# Process start alone (no netlink, no parsing): what every whole-command time above includes.
for tool in wg ours; do
  for r in \$(seq $reps); do
    if [ \$tool = wg ]; then timed \$times/\$tool-start wg --version; else timed \$times/\$tool-start $bin --version; fi
  done
  median \$times/\$tool-start \$WGMESH_VM_OUT/\$tool-start.ms
done
if ! wg show \$dev allowed-ips | grep -q "^\$key.10.251.0.0/24\$"; then fail "the last change is not in the kernel"; fi
GUEST

if ! bash scripts/vm-run.sh "sh $work/guest.sh"; then
  echo "bench-netlink: FAIL: the benchmark failed in the guest (its output above); no figures" >&2
  exit 1
fi
res="$root/.vm/out"
for f in wg-1000 ours-1000 wg-10000 ours-10000 wg-one ours-one wg-start ours-start; do
  if [ ! -s "$res/$f.ms" ] || ! [ "$(cat "$res/$f.ms")" -gt 0 ] 2>/dev/null; then
    echo "bench-netlink: FAIL: no result for $f; the guest said:" >&2
    cat "$res/log" >&2
    exit 1
  fi
done
r() { awk -v a="$(cat "$res/ours-$1.ms")" -v b="$(cat "$res/wg-$1.ms")" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
echo "wgmesh netlink vs wg(8), VM kernel $(basename "$(ls "$root"/.vm/kernel/boot/vmlinuz-*)" | sed 's/vmlinuz-//'), qemu TCG, median of $reps"
printf '%-34s %10s %10s %8s\n' "case" "wg ms" "ours ms" "ours/wg"
printf '%-34s %10s %10s %8s\n' "1,000 peers from scratch" "$(cat "$res/wg-1000.ms")" "$(cat "$res/ours-1000.ms")" "$(r 1000)"
printf '%-34s %10s %10s %8s\n' "10,000 peers from scratch" "$(cat "$res/wg-10000.ms")" "$(cat "$res/ours-10000.ms")" "$(r 10000)"
printf '%-34s %10s %10s %8s\n' "change 1 peer of 10,000" "$(cat "$res/wg-one.ms")" "$(cat "$res/ours-one.ms")" "$(r one)"
printf '%-34s %10s %10s %8s\n' "process start only (--version)" "$(cat "$res/wg-start.ms")" "$(cat "$res/ours-start.ms")" "$(r start)"
# What the agent pays: it is a long-running process that calls the netlink code directly, with no
# process start and no file to parse. Reported apart from the whole-command ratios above.
inproc() { sed -n 's/.*, \([0-9]*\) ms in netlink/\1/p' "$res/ours-$1.msgs"; }
. "$root/scripts/goals.sh"
goal_prefix=bench-netlink
for n in 1000 10000; do
  if [ -z "$(inproc $n)" ]; then
    echo "bench-netlink: FAIL: no --stats result for $n peers" >&2
    exit 1
  fi
  ratio=$(awk -v a="$(inproc $n)" -v b="$(cat "$res/wg-$n.ms")" 'BEGIN { printf "%.2f", a / b }')
  echo "in-process netlink time for $n peers (one run): $(inproc $n) ms; against wg setconf whole command: $ratio"
  goal timing "in-process / wg setconf, $n peers" "$(met below "$ratio" 1)" "$ratio ($(inproc $n) / $(cat "$res/wg-$n.ms") ms)" "≤ 1.0: what the agent pays"
done
for c in 1000 10000 one start; do
  goal timing "whole command / wg, $c" - "$(r $c)" "none: includes our process start"
done
echo "messages: $(cat "$res/ours-10000.msgs" | sed 's/, [0-9]* ms in netlink//'); one-peer change: $(cat "$res/ours-one.msgs")"
goals_table
