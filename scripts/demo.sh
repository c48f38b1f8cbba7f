#!/usr/bin/env bash
# wgmesh on this machine, without a cluster: the Kubernetes-compatible test API server, `wgmesh controller`
# and three `wgmesh agent`s, each node a network namespace on one underlay bridge, one Pod per node added by
# the real CNI plugins. It shows a Pod-to-Pod ping across nodes, `wgmesh status`, a capture on the underlay
# that holds only WireGuard, `wgmesh rotate-keys --wait` under a 10 ms ping (lab.sh's loss measure), `wgmesh
# audit`, a laptop behind NAT that joins with `wgmesh peer add` and pings a Pod, and the leak capture over the whole demo with its table of figures and goals; it exits non-zero on any
# step that fails. Then it removes everything it made, on Ctrl-C as well. Kernel WireGuard where the kernel has it, else wireguard-go.
# Usage (as root, on a fresh clone): bash scripts/demo.sh
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
[ "$(id -u)" = 0 ] || { echo "demo: run as root (it makes network namespaces): sudo bash scripts/demo.sh"; exit 1; }
bold=""; plain=""
[ -t 1 ] && { bold=$(printf '\033[1m'); plain=$(printf '\033[0m'); }
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
die() { echo "demo: $*"; echo "demo: logs are in $work"; exit 1; }

step "Set-up: packages (scripts/setup.sh) and the build"
bash scripts/setup.sh >/dev/null || { echo "demo: scripts/setup.sh failed; run it alone to see why"; exit 1; }
swift build --product wgmesh 2>&1 | tail -1
swift build --product TestAPIServerTool 2>&1 | tail -1
bin="$root/.build/debug"
work="$root/.demo"
rm -rf "$work" && mkdir -p "$work"

# Kernel WireGuard where this kernel has it, else the userspace backend.
ip netns add wge-probe
if ip -n wge-probe link add wgmesh-probe type wireguard 2>/dev/null; then
  backend=kernel; why="this kernel has WireGuard"
else
  backend=userspace; why="this kernel has no WireGuard module, so the agents run wireguard-go (--backend userspace)"
fi
ip netns del wge-probe
. "$root/scripts/lab.sh"
finish() {
  local status=$?
  trap - EXIT INT TERM
  step "Cleaning up"
  lab_cleanup
  echo "removed the namespaces wge-*, the API server, the controller, the agents and their wireguard-go"
  # The logs stay only when something went wrong.
  [ $status -eq 0 ] && rm -rf "$work"
  exit $status
}
trap finish EXIT
trap 'exit 130' INT TERM

step "Three nodes, each a network namespace on one underlay (192.0.2.0/24), and the test API server"
lab_underlay
lab_api || die "the test API server did not start"
echo "Nodes n1, n2, n3 at 192.0.2.1-3; API server at http://$api:6443; backend: $backend ($why)"

step "wgmesh controller and one wgmesh agent per node"
start_controller
for n in "${nodes[@]}"; do start_agent "$n"; done
printf "waiting for every node to run its key and have its peers"
for _ in $(seq 60); do converged && break; printf "."; sleep 2; done
echo
converged || die "the agents did not converge: $(tail -2 "$work"/n*/agent.log)"
for n in "${nodes[@]}"; do
  echo "$n: Pod CIDRs $(annotation "$n" pod-cidrs), key generation $(annotation "$n" key-generation), $(peer_count "$n") peers"
done

step "One Pod per node, added by the CNI plugins (bridge, host-local, portmap) from the agent's conflist"
for n in "${nodes[@]}"; do cni_add "$n" p1 || die "the CNI plugins failed on $n"; echo "Pod $n/p1: $(paste -sd' ' "$work/$n/p1.ips")"; done
src=$(head -1 "$work/n1/p1.ips"); dst=$(head -1 "$work/n2/p1.ips"); dst3=$(head -1 "$work/n3/p1.ips")

step "Pod-to-Pod across nodes: n1/p1 ($src) pings n2/p1 ($dst) and n3/p1 ($dst3)"
for to in "$dst" "$dst3"; do
  ip netns exec wge-n1-p1 ping -c 3 -W 3 "$to" >"$work/ping-$to.txt" 2>&1; rc=$?
  tail -2 "$work/ping-$to.txt"
  [ $rc = 0 ] || die "n1/p1 did not reach $to"
done

step "wgmesh status"
# A node is ready once its agent has seen a handshake with every peer: the pings above started them.
wait_for 30 wgm status || echo "(not every node is ready yet after 30 s:)"
wgm status || die "wgmesh status says a node is not ready"

step "Encryption on the wire: a capture on the underlay while n1/p1 pings n2/p1"
lan timeout 8 tcpdump -i wge-br0 -nn -U -w "$work/proof.pcap" 2>"$work/proof.txt" &
proof=$!
sleep 1
ip netns exec wge-n1-p1 ping -c 5 -i 0.2 "$dst" >/dev/null || die "n1/p1 did not reach $dst"
sleep 1; kill -INT "$proof" 2>/dev/null; wait "$proof" 2>/dev/null
tcpdump -r "$work/proof.pcap" -nn "udp port 51820" 2>/dev/null | head -4
wireguard=$(packets "$work/proof.pcap" "udp port 51820")
clear=$(packets "$work/proof.pcap" "$pod_leak")
dropped=$(capture_drops "$work/proof.txt")
echo "$wireguard WireGuard packets (UDP 51820) between the nodes; $clear packets with a Pod address on the underlay; ${dropped:-?} dropped by the capture"
[ "$dropped" = 0 ] || die "the capture dropped packets: it proves nothing"
[ "$clear" -eq 0 ] && [ "$wireguard" -gt 0 ] || die "Pod traffic was seen on the underlay outside WireGuard"

step "Key rotation without a gap: wgmesh rotate-keys --node n2 --wait, under a 10 ms Pod-to-Pod ping"
before=$(annotation n2 key-generation)
ping_start rotation wge-n1-p1 "$dst" || die "n1/p1 does not reach $dst before the rotation"
sleep 0.5
wgm rotate-keys --node n2 --wait --timeout 2m; rotate_rc=$?
sleep 1  # the ping goes on for a second after the rotation is over
ping_stop rotation
[ $rotate_rc = 0 ] || die "rotate-keys did not finish"
echo "n2's key generation: $before before, $(annotation n2 key-generation) after"
echo "the ping across the rotation, from before the command to 1 s after it returned: $ping_figures"
ping_goal rotation
goal timing "rotation: silence" "$(met [ "$ping_silence" -lt 100 ])" "$ping_silence ms, $ping_lost lost" "< 100 ms"

step "wgmesh audit: the report a compliance team files"
wgm audit; audit=$?
[ $audit -eq 0 ] || die "the audit failed (exit status $audit)"

step "A laptop outside the cluster, behind NAT: wgmesh peer add laptop, wg-quick up, and a Pod is reached"
lab_laptop || die "could not build the laptop and its NAT"
wgm peer add laptop --output "$work/laptop.conf" --expires-in 1h || die "wgmesh peer add failed"
echo "$work/laptop.conf, its private key left out here:"
grep -v '^PrivateKey' "$work/laptop.conf"
laptop_up "$work/laptop.conf" || die "wg-quick up failed"
# Three answers within 15 s: the first packet waits for the laptop's handshake with its gateway.
ip netns exec wge-laptop ping -c 3 -w 15 "$dst" >"$work/ping-laptop.txt" 2>&1; rc=$?
tail -2 "$work/ping-laptop.txt"
if [ $rc != 0 ]; then
  ip netns exec wge-laptop wg show all; gw=$(grep -m1 '^# node ' "$work/laptop.conf" | cut -d' ' -f3); wgs "$gw"
  die "the laptop did not reach n2/p1 ($dst)"
fi
wgm peer list
wgm peer remove laptop || die "wgmesh peer remove failed"
laptop_down

step "The capture of the underlay over the whole demo (kernel filter: packets to or from a Pod address)"
capture_check
goals_table
[ "$failures" -eq 0 ] || die "$failures check(s) failed"
