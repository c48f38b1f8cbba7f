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
median() { sort -n | awk '{a[NR]=\$1} END {print a[int((NR+1)/2)]}'; }
# A new link for every run: deleting one with 10,000 peers costs the kernel minutes under emulation
# (an RCU grace period per peer), and the guest is thrown away afterwards anyway.
# The counter lives in a file: the runs below are in pipelines, that is in subshells.
fresh() { links=\$((\$(cat /tmp/wgb-count 2>/dev/null || echo 0) + 1)); echo \$links > /tmp/wgb-count; dev=wgb\$links; ip link add \$dev type wireguard; }
for n in 1000 10000; do
  for tool in wg ours; do
    for r in \$(seq $reps); do
      fresh
      t0=\$(ns)
      if [ \$tool = wg ]; then wg setconf \$dev $work/peers-\$n.conf; else $bin wg setconf \$dev $work/peers-\$n.conf; fi
      t1=\$(ns)
      [ "\$(wg show \$dev peers | wc -l)" = \$n ] || { echo "\$tool set \$(wg show \$dev peers | wc -l) peers, not \$n"; exit 1; }
      echo \$(( (t1 - t0) / 1000000 ))
    done | median > \$WGMESH_VM_OUT/\$tool-\$n.ms
  done
done
fresh
$bin wg setconf --stats \$dev $work/peers-1000.conf > \$WGMESH_VM_OUT/ours-1000.msgs
fresh
$bin wg setconf --stats \$dev $work/peers-10000.conf > \$WGMESH_VM_OUT/ours-10000.msgs
key=\$(wg show \$dev peers | sed -n 5000p)
for tool in wg ours; do
  for r in \$(seq $reps); do
    t0=\$(ns)
    if [ \$tool = wg ]; then wg set \$dev peer \$key allowed-ips 10.250.\$r.0/24; else $bin wg set-peer \$dev \$key --allowed-ips 10.250.\$r.0/24; fi
    t1=\$(ns)
    echo \$(( (t1 - t0) / 1000000 ))
  done | median > \$WGMESH_VM_OUT/\$tool-one.ms
done
$bin wg set-peer --stats \$dev \$key --allowed-ips 10.251.0.0/24 > \$WGMESH_VM_OUT/ours-one.msgs
# Process start alone (no netlink, no parsing): what every whole-command time above includes.
for tool in wg ours; do
  for r in \$(seq $reps); do
    t0=\$(ns)
    if [ \$tool = wg ]; then wg --version; else $bin --version; fi > /dev/null
    t1=\$(ns)
    echo \$(( (t1 - t0) / 1000000 ))
  done | median > \$WGMESH_VM_OUT/\$tool-start.ms
done
wg show \$dev allowed-ips | grep -q "^\$key.10.251.0.0/24\$"
GUEST

bash scripts/vm-run.sh "sh $work/guest.sh"
res="$root/.vm/out"
for f in wg-1000 ours-1000 wg-10000 ours-10000 wg-one ours-one wg-start ours-start; do
  [ -s "$res/$f.ms" ] && [ "$(cat "$res/$f.ms")" -gt 0 ] || { echo "bench-netlink: no result for $f; the guest said:" >&2; cat "$res/log" >&2; exit 1; }
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
for n in 1000 10000; do
  [ -n "$(inproc $n)" ] || { echo "bench-netlink: no --stats result for $n peers" >&2; exit 1; }
  awk -v a="$(inproc $n)" -v b="$(cat "$res/wg-$n.ms")" -v n=$n 'BEGIN { printf "in-process netlink time for %d peers (one run): %d ms; against wg setconf whole command: %.2f\n", n, a, a / b }'
done
echo "messages: $(cat "$res/ours-10000.msgs" | sed 's/, [0-9]* ms in netlink//'); one-peer change: $(cat "$res/ours-one.msgs")"
