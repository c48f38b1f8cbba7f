#!/usr/bin/env bash
# The lab's laptop (scripts/lab.sh: lab_laptop, laptop_up, laptop_down, laptop_capture_*) checked without wgmesh and
# without a build, in seconds: where scripts/e2e-agent.sh's Peer section fails, this tells the lab's plumbing from
# the product. As root: an underlay bridge (wgl-lan), one "node" (wgl-n1, 192.0.2.1) with a WireGuard interface made
# by hand (wireguard-go on a kernel without WireGuard, as on the host; the kernel's otherwise) that holds the laptop
# as a peer without an endpoint, as a gateway node holds a Peer; the NAT and the laptop behind it; a wg-quick config
# for the laptop as `wgmesh peer add` writes one (docs/operations.md#outside-peers). Then: the node cannot reach the
# laptop before its first handshake; wg-quick up; the laptop and the node ping each other's tunnel addresses, IPv4
# and IPv6; the node learned the NAT's address as the laptop's endpoint; the underlay carried the laptop only as
# WireGuard between the NAT and the node, never a private or tunnel address in the clear; nothing from the underlay
# reaches the laptop unasked; wg-quick down ends its wireguard-go. Its namespaces are wgl-*, its interfaces and
# wireguard-go sockets wgl-*: it runs beside a scenario (wge-*) without touching it. Everything it made goes at the
# end. One result line per check; exits non-zero when one fails.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.build/debug"  # not used: lab.sh's functions that run wgmesh are not called here
work="$root/.e2e/laptop-selftest"
rm -rf "$work" && mkdir -p "$work"
lab_prefix=wgl
. "$root/scripts/lab.sh"
goal_prefix=lab-laptop-selftest
result() {  # lab.sh's, with this script's prefix
  if [ "$2" = ok ]; then echo "$goal_prefix: PASS $1: $3"; passes=$((passes + 1)); else echo "$goal_prefix: FAIL $1: $3"; failures=$((failures + 1)); fi
}

exec {selftest_lock}>/tmp/wgmesh-lab-laptop-selftest.lock
flock -n "$selftest_lock" || { echo "$goal_prefix: another one runs" >&2; exit 1; }
namespaces=(wgl-laptop wgl-nat wgl-n1 wgl-lan)
node_if=wgl-n1
node_wg_pid=""
cleanup() {
  local ns p
  laptop_cleanup
  if [ -n "$node_wg_pid" ]; then kill "$node_wg_pid" 2>/dev/null; wait "$node_wg_pid" 2>/dev/null; fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null; done
  return 0
}
trap cleanup EXIT
cleanup  # what an earlier run, ended before its own cleanup, left

if ip link add wgl-probe type wireguard 2>/dev/null; then ip link del wgl-probe; backend=kernel; else backend=userspace; fi

# --- the underlay and the node: 192.0.2.1, a WireGuard interface with a private key and a listen port, the laptop
# its one peer without an endpoint, allowed-ips the laptop's tunnel addresses ---
node_v4=10.244.1.1; node_v6=fd00:10:244:1::1
laptop_v4=10.250.0.2; laptop_v6=fd00:10:250::2
ip netns add wgl-lan
ip -n wgl-lan link set lo up
ip -n wgl-lan link add wgl-br0 type bridge && ip -n wgl-lan link set wgl-br0 up
ip -n wgl-lan addr add 192.0.2.254/24 dev wgl-br0
ip netns add wgl-n1
ip -n wgl-lan link add wgl-n1 type veth peer name eth0 netns wgl-n1
ip -n wgl-lan link set wgl-n1 master wgl-br0 up
ip -n wgl-n1 link set lo up && ip -n wgl-n1 link set eth0 up
ip -n wgl-n1 addr add 192.0.2.1/24 dev eth0
ip -n wgl-n1 route add default via 192.0.2.254
ip netns exec wgl-n1 sysctl -qw net.ipv4.ip_forward=1
if [ "$backend" = userspace ]; then
  ip netns exec wgl-n1 wireguard-go -f "$node_if" >"$work/node-wireguard-go.txt" 2>&1 &
  node_wg_pid=$!
  wait_for 10 test -S "/var/run/wireguard/$node_if.sock" || { echo "$goal_prefix: wireguard-go did not start: $(cat "$work/node-wireguard-go.txt")"; exit 1; }
else
  ip -n wgl-n1 link add "$node_if" type wireguard
fi
umask 077
wg genkey >"$work/node.key"; wg genkey >"$work/laptop.key"
node_pub=$(wg pubkey <"$work/node.key"); laptop_pub=$(wg pubkey <"$work/laptop.key")
ip netns exec wgl-n1 wg set "$node_if" private-key "$work/node.key" listen-port 51820 \
  peer "$laptop_pub" allowed-ips "$laptop_v4/32,$laptop_v6/128"
ip -n wgl-n1 addr add "$node_v4/32" dev "$node_if"
ip -n wgl-n1 addr add "$node_v6/128" dev "$node_if" nodad
ip -n wgl-n1 link set "$node_if" up
ip -n wgl-n1 route add "$laptop_v4/32" dev "$node_if"
ip -n wgl-n1 route add "$laptop_v6/128" dev "$node_if"

# --- the NAT and the laptop; the laptop's config as `wgmesh peer add` writes it ---
lab_laptop || { echo "$goal_prefix: lab_laptop failed"; exit 1; }
conf="$work/wgl-laptop.conf"
cat >"$conf" <<EOF
[Interface]
PrivateKey = $(cat "$work/laptop.key")
Address = $laptop_v4/32, $laptop_v6/128

[Peer]
PublicKey = $node_pub
Endpoint = 192.0.2.1:51820
PersistentKeepalive = 25
AllowedIPs = $clusterv4, $clusterv6
EOF
umask 022

if ip -n wgl-laptop route get 192.0.2.1 | grep -q "via $laptop_router dev eth0" && [ "$(ip -n wgl-laptop route show | wc -l)" = 2 ]; then
  result laptop-routes ok "the laptop has its link and a default route via the NAT, nothing else: $(ip -n wgl-laptop route show | sed 's/ *$//' | paste -sd';')"
else
  result laptop-routes fail "$(ip -n wgl-laptop route show | sed 's/ *$//' | paste -sd';')"
fi

laptop_capture_start
# No endpoint: the node has nowhere to send to the laptop until the laptop's first handshake.
if ! ip netns exec wgl-n1 ping -c 1 -W 1 "$laptop_v4" >/dev/null 2>&1 && [ "$(ip netns exec wgl-n1 wg show "$node_if" endpoints | cut -f2)" = "(none)" ]; then
  result no-endpoint ok "before the laptop's first handshake the node holds it without an endpoint and cannot reach it"
else
  result no-endpoint fail "endpoints: $(ip netns exec wgl-n1 wg show "$node_if" endpoints)"
fi

# --- wg-quick up in the laptop's namespace ---
if laptop_up "$conf"; then
  keepalive=$(ip netns exec wgl-laptop wg show wgl-laptop persistent-keepalive | cut -f2)
  routes=$(ip -n wgl-laptop route show dev wgl-laptop proto boot; ip -6 -n wgl-laptop route show dev wgl-laptop proto boot)
  routes=$(awk '{print $1}' <<<"$routes" | sort | paste -sd' ')
  if { [ "$backend" = kernel ] || { [ -n "$laptop_wg_pid" ] && [ "$(cat "/proc/$laptop_wg_pid/comm")" = wireguard-go ]; }; } \
    && [ "$keepalive" = 25 ] && [ "$routes" = "$clusterv4 $clusterv6" ]; then
    result wg-quick-up ok "wg-quick up $(basename "$conf") ($backend; wireguard-go pid ${laptop_wg_pid:-none}): addresses $(ip -n wgl-laptop -o addr show dev wgl-laptop scope global | awk '{print $4}' | paste -sd' '), keepalive $keepalive, routes $routes"
  else
    result wg-quick-up fail "wireguard-go pid '$laptop_wg_pid' (processes in wgl-laptop: $(ip netns pids wgl-laptop | paste -sd' ')), keepalive '$keepalive', routes '$routes'"
  fi
else
  result wg-quick-up fail "$(cat "$work/wg-quick-wgl-laptop.txt")"
fi

# --- the laptop reaches the node, then the node reaches the laptop at the address the NAT gave it ---
wait_for 10 ip netns exec wgl-laptop ping -c 1 -W 1 "$node_v4"
ip netns exec wgl-laptop ping -c 1 -w 5 "$node_v4" >/dev/null 2>&1; a=$?
ip netns exec wgl-laptop ping -c 1 -w 5 "$node_v6" >/dev/null 2>&1; b=$?
if [ $a = 0 ] && [ $b = 0 ]; then
  result laptop-to-node ok "the laptop pinged the node's $node_v4 and $node_v6 through the tunnel"
else
  result laptop-to-node fail "IPv4 rc $a, IPv6 rc $b; $(ip netns exec wgl-laptop wg show wgl-laptop | tr '\n' ' ')"
fi
endpoint=$(ip netns exec wgl-n1 wg show "$node_if" endpoints | cut -f2)
if [ "${endpoint%:*}" = "$nat_ip" ]; then
  result endpoint-learned ok "the node learned the laptop's endpoint from its handshake: $endpoint, the NAT's address"
else
  result endpoint-learned fail "the node's endpoint for the laptop: $endpoint (the NAT is $nat_ip)"
fi
ip netns exec wgl-n1 ping -c 1 -w 5 "$laptop_v4" >/dev/null 2>&1; a=$?
ip netns exec wgl-n1 ping -c 1 -w 5 "$laptop_v6" >/dev/null 2>&1; b=$?
if [ $a = 0 ] && [ $b = 0 ]; then
  result node-to-laptop ok "the node pinged the laptop's $laptop_v4 and $laptop_v6 back, through the NAT"
else
  result node-to-laptop fail "IPv4 rc $a, IPv6 rc $b"
fi

# --- the underlay: the laptop only as WireGuard between the NAT and the node. A canary, a datagram to a Peer address
# sent in the clear by the node, shows that the capture sees what it is there to see ---
canary_v4=10.250.255.254
ip -n wgl-n1 route add "$canary_v4/32" via 192.0.2.254
ip netns exec wgl-n1 bash -c "echo wgmesh-canary >/dev/udp/$canary_v4/9"
sleep 1
canary_filter="src host 192.0.2.1 and dst host $canary_v4 and udp dst port 9"
laptop_capture_check 192.0.2.1:51820 "$canary_filter"; cap_rc=$?
seen=$(packets "$work/laptop-underlay.pcap" "$canary_filter")
if [ $cap_rc = 0 ] && [ "$seen" = 1 ]; then
  result underlay ok "$laptop_figures; the canary seen"
else
  result underlay fail "$laptop_figures; the canary seen $seen times (of 1): $(tcpdump -r "$work/laptop-underlay.pcap" -nn "not ($canary_filter) and not ($wireguard_message)" 2>/dev/null | head -3 | cut -c1-150)"
fi
ip -n wgl-n1 route del "$canary_v4/32"

# --- nothing from the underlay reaches the laptop unasked: a route to the private link via the NAT, a ping dropped ---
ip -n wgl-n1 route add "$laptop_link" via "$nat_ip"
if ! ip netns exec wgl-n1 ping -c 1 -W 1 "$laptop_ip" >/dev/null 2>&1; then
  result nat-inbound ok "the node, with a route to $laptop_link via the NAT, does not reach the laptop's $laptop_ip: the NAT forwards only answers"
else
  result nat-inbound fail "the node reached $laptop_ip through the NAT unasked"
fi
ip -n wgl-n1 route del "$laptop_link" via "$nat_ip"

# --- wg-quick down: the interface and its wireguard-go end ---
wg_pid=$laptop_wg_pid
laptop_down; down_rc=$?
if [ $down_rc = 0 ] && ! ip -n wgl-laptop link show wgl-laptop >/dev/null 2>&1 && { [ -z "$wg_pid" ] || ! running "$wg_pid"; } \
  && [ ! -e /var/run/wireguard/wgl-laptop.sock ]; then
  result wg-quick-down ok "wg-quick down: interface gone, wireguard-go (pid ${wg_pid:-none}) ended, its socket gone"
else
  result wg-quick-down fail "rc $down_rc: $(tail -3 "$work/wg-quick-wgl-laptop.txt" | tr '\n' ' ')"
fi

cleanup
trap - EXIT
left=$(ip netns list | awk '/^wgl-/{print $1}'; for f in /var/run/wireguard/wgl-*; do [ -e "$f" ] && echo "$f"; done)
left=$(paste -sd' ' <<<"$left")
if [ -z "$left" ]; then
  result cleanup ok "no wgl- namespace or wireguard-go socket left"
else
  result cleanup fail "left: $left"
fi
echo "$goal_prefix ($backend): $passes passed, $failures failed"
[ "$failures" -eq 0 ]
