#!/usr/bin/env bash
# The mesh lab that scripts/e2e-agent.sh, scripts/e2e.sh and scripts/demo.sh share: Node network namespaces
# (wge-n1…) on one underlay bridge in a namespace of its own (wge-lan, 192.0.2.0/24 and 2001:db8::/64, RFC 5737
# and RFC 3849) that also holds the test API server and `wgmesh controller`; one `wgmesh agent` per node; Pods
# added by the real CNI plugins from the agent's conflist. Source it with root, bin, backend and work set.
# Background processes are started here without a shell function around the command itself, so that
# $! is their own PID; each goes into pids, and lab_cleanup ends exactly those and the namespaces.
# Each client has its own identity at the test API server, as on a real cluster: the controller its
# ServiceAccount ($work/kubeconfig.controller), each agent its node's Pod ($work/kubeconfig.agent-NODE, for
# the nodes in agent_nodes, all of nodes unless set), the people's commands kubernetes-admin
# ($work/kubeconfig), and the scenario's own setup and faults (kapi) a harness identity. Every Node write
# is recorded in $WGMESH_RECORD ($work/writes.jsonl unless set), for check-admission-policies.py --replay.
# Traffic goes only to addresses of these namespaces. Here too, once for every scenario: the result lines and
# their count, `wg show` of a node's interface, Node registration, and the underlay's namespaces. A laptop outside
# the cluster (a Peer) behind a NAT of its own is built here too (lab_laptop, at the end).
# wireguard-go's sockets share one folder across namespaces: each node's interface needs its own name.
ifname() { if [ "$backend" = userspace ]; then echo "wgm-$1"; else echo wgmesh0; fi; }
lan() { ip netns exec wge-lan "$@"; }
api=192.0.2.254
nodes=(n1 n2 n3)
clusterv4=10.244.0.0/16
clusterv6=fd00:10:244::/48
# The outside peers' ranges (`--peer-cidr`: the Peers' tunnel addresses), one per family, as the controller and
# every agent get them.
peerv4=10.250.0.0/16
peerv6=fd00:10:250::/112
peercidrs=$peerv4,$peerv6
. "$(dirname "${BASH_SOURCE[0]}")/goals.sh"
record_file="${WGMESH_RECORD:-$work/writes.jsonl}"
pids=()
passes=0
failures=0

# One result line per check, counted: result NAME ok|fail DETAIL prints "e2e: PASS NAME: DETAIL" (or FAIL) and
# adds one to passes (or failures); a scenario ends with its count and exits non-zero when failures is not 0.
result() {  # result NAME ok|fail DETAIL
  if [ "$2" = ok ]; then echo "e2e: PASS $1: $3"; passes=$((passes + 1)); else echo "e2e: FAIL $1: $3"; failures=$((failures + 1)); fi
}

# wgs NODE [ARGS...]: `wg show` of NODE's interface in its namespace (wg show's errors go to stderr).
wgs() { ip netns exec "wge-$1" wg show "$(ifname "$1")" "${@:2}"; }
# peer_count NODE: how many peers NODE's interface has; 0, with wg show's error on stderr, where it has none.
peer_count() { wgs "$1" peers | wc -l; }

# Ends what runs in this scenario's namespaces (the agents' wireguard-go included: it holds its tun
# device, and with it the namespace, alive), then removes the namespaces.
remove_namespaces() {
  for ns in $(ip netns list | awk '/^wge-/{print $1}'); do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill "$p" 2>/dev/null; done
  done
  sleep 0.5
  for ns in $(ip netns list | awk '/^wge-/{print $1}'); do ip netns del "$ns"; done
}

# running PID: the process runs (a zombie has ended).
running() { [ -e "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }

# A process that still runs 10 s after SIGTERM is named and killed, so that a hung shutdown cannot hang the run.
lab_cleanup() {
  local p end=$((SECONDS + 10))
  laptop_cleanup
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do while running "$p" && [ $SECONDS -lt $end ]; do sleep 0.2; done; done
  for p in "${pids[@]}"; do
    running "$p" && { echo "lab: still running 10 s after SIGTERM, killed: $(tr '\0' ' ' <"/proc/$p/cmdline" | cut -c1-120)" >&2; kill -KILL "$p" 2>/dev/null; }
  done
  wait 2>/dev/null
  remove_namespaces
}

# Waits up to $1 seconds (of the clock, however slow each try is under emulation) for the command in
# the rest of the arguments to succeed.
wait_for() {
  local end=$((SECONDS + $1)); shift
  while [ $SECONDS -lt $end ]; do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  "$@" >/dev/null 2>&1
}

# packets CAPTURE [FILTER...]: how many packets of a capture file match the tcpdump filter (all without one).
packets() { local file=$1; shift; tcpdump -r "$file" -nn "$@" 2>/dev/null | wc -l; }
# The filter for packets to or from a Pod address or a Peer's tunnel address: none may cross the underlay outside
# WireGuard.
pod_traffic="net $clusterv4 or net $clusterv6 or net $peerv4 or net $peerv6"
# A WireGuard message (its header: a type from 1 to 4, then three reserved zero bytes), whatever its outer
# addresses: the kernel sent one from the tunnel's own address while a node's underlay had none.
wireguard_message="udp and udp[8] >= 1 and udp[8] <= 4 and udp[9:2] = 0 and udp[11] = 0"
# A leak: a packet to or from a Pod or Peer address that is not a WireGuard message.
pod_leak="($pod_traffic) and not ($wireguard_message)"

# --- The leak capture: every packet to or from a Pod or Peer address on the underlay, filtered in the kernel
# (WireGuard's outer headers carry node addresses, so they never match and the capture stays small however much the
# mesh carries), headers only (-s 128), in a 16 MiB buffer. What the kernel dropped is read back from tcpdump: a
# capture that dropped a packet proves nothing, so any drop fails the check. At the stop, one canary (a UDP
# datagram to a Pod address, sent in the clear by the outside host wge-ext) must be in it: the capture and its
# filter see what they are there to see. lab_api starts the one that runs over the whole scenario; a section
# may run one of its own beside it, named (capture_start NAME ... capture_check NAME): its files and result
# lines carry the name.
# shellcheck disable=SC2120  # NAME is optional: lab_api's capture has none
capture_start() {  # capture_start [NAME]
  local name=${1:+-$1}
  ip netns exec wge-lan tcpdump -i wge-br0 -nn -U -s 128 -B 16384 -w "$work/underlay$name.pcap" "$pod_traffic" 2>"$work/capture$name.txt" &
  pids+=($!)
  eval "capture_pid_${1:-all}=$!"
  # Only once it listens does it see every packet that follows.
  wait_for 10 grep -q "listening on" "$work/capture$name.txt"
}
# capture_drops STDERR: the packets the kernel dropped, from the statistics tcpdump printed to STDERR as it ended.
capture_drops() { sed -n 's/^\([0-9]*\) packets\{0,1\} dropped by kernel.*/\1/p' "$1"; }
canary_address=10.244.255.254
canary="src host 192.0.2.100 and dst host $canary_address and udp dst port 9"
# capture_check [NAME]: the canary sent, the capture stopped, and its figures in result lines: leak-check[-NAME] (no
# Pod- or Peer-addressed packet outside WireGuard but the canary, the canary seen) and capture-drops[-NAME] (none);
# both functional goals.
capture_check() {
  local name=${1:+-$1} pid
  eval "pid=\${capture_pid_${1:-all}:-}"
  ip -n wge-ext route replace "$canary_address/32" dev eth0
  ip -n wge-ext neigh replace "$canary_address" lladdr 02:00:00:00:00:fe dev eth0 nud permanent
  ip netns exec wge-ext bash -c "echo wgmesh-canary >/dev/udp/$canary_address/9"
  sleep 1
  kill -INT "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  local pcap="$work/underlay$name.pcap" total leaked seen outer dropped stats
  total=$(packets "$pcap")
  leaked=$(packets "$pcap" "($pod_leak) and not ($canary)")
  seen=$(packets "$pcap" "$canary")
  # WireGuard messages whose outer source is a tunnel address: encrypted, but sent while a node's underlay
  # had no address (an address change); counted apart.
  outer=$(packets "$pcap" "$wireguard_message")
  dropped=$(capture_drops "$work/capture$name.txt")
  stats=$(grep -E 'packets? (captured|received|dropped)' "$work/capture$name.txt" | paste -sd, -)
  if [ "$leaked" -eq 0 ] && [ "$seen" -ge 1 ]; then
    result "leak-check$name" ok "0 Pod- or Peer-addressed packets outside WireGuard on the underlay; the capture (kernel filter: Pod and Peer addresses) held $total: the canary, $outer WireGuard messages with a tunnel address as outer source"
  else
    result "leak-check$name" fail "$leaked Pod- or Peer-addressed packets outside WireGuard on the underlay, canary seen $seen times (of 1 sent): $(tcpdump -r "$pcap" -nn "($pod_leak) and not ($canary)" 2>/dev/null | head -3 | cut -c1-150)"
  fi
  goal functional "leaked packets${1:+ ($1)}" "$(met [ "$leaked" -eq 0 -a "$seen" -ge 1 ])" "$leaked (canary seen: $seen)" "0, canary seen" reported
  if [ "$dropped" = 0 ]; then
    result "capture-drops$name" ok "the capture dropped nothing: $stats"
  else
    result "capture-drops$name" fail "the capture dropped packets, so it proves nothing: $stats"
  fi
  goal functional "capture drops${1:+ ($1)}" "$(met [ "$dropped" = 0 ])" "${dropped:-unknown}" "0" reported
}

# --- One loss measure for every scenario and the demo ---
# ping_start NAME NAMESPACE ADDRESS: a 10 ms ping from NAMESPACE to ADDRESS in the background (ping -D: each
# answer stamped as it arrives); it returns once the first answer is in (up to 30 s), non-zero if none came,
# so that what follows is measured on traffic that flowed.
ping_start() {
  ip netns exec "$2" ping -D -i 0.01 -W 1 "$3" >"$work/ping-$1.txt" 2>&1 &
  eval "ping_pid_${1//[^a-zA-Z0-9]/_}=$!"
  echo "$EPOCHREALTIME" >"$work/ping-$1.start"
  wait_for 30 grep -q ' bytes from .*icmp_seq=' "$work/ping-$1.txt"
}
# ping_stop NAME: stops it (SIGINT, so ping prints how many it sent) and measures it:
# - sent: ping's own transmitted count; answered: distinct echo replies (an ICMP error, such as the "Destination
#   Host Unreachable" of a node without a peer for the address, is no answer; it is counted apart);
# - lost: the sequence numbers up to the last answered one that were never answered; in flight at the stop:
#   those sent after the last answer, counted as lost too where traffic is not back (an outage that never ended);
# - longest silence: the longest time without an answer, from the first answer to the moment of the stop, and
#   how many ping sent in it (few in a long silence: ping itself was not running, or waited for answers);
# - the tail: from the last answer to the stop. Traffic is back (ping_back=1) when something was answered and
#   the tail is under 500 ms: a data plane that dies and stays dead fails, however few it lost before.
# Sets ping_figures (the text), ping_lost, ping_silence (ms), ping_back.
ping_stop() {
  local pid stop sent answered lost after errors tail within
  eval "pid=\${ping_pid_${1//[^a-zA-Z0-9]/_}:-}"
  kill -INT "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  stop=$EPOCHREALTIME  # once it has ended: every answer it printed came before
  read -r sent answered lost after errors ping_silence tail within < <(awk -v start="$(cat "$work/ping-$1.start")" -v stop="$stop" '
    / bytes from .*icmp_seq=[0-9]/ && !/DUP!/ {
      match($0, /icmp_seq=[0-9]+/); s = substr($0, RSTART + 9, RLENGTH - 9) + 0
      if (s in seen) next
      seen[s] = 1; answered++; if (s > max) max = s
      t = substr($1, 2, length($1) - 2) + 0
      if (last && t - last > gap) { gap = t - last; within = s - last_s - 1 }
      last = t; last_s = s }
    /From .*icmp_seq=[0-9]/ { errors++ }
    /packets transmitted/ { sent = $1 }
    END {
      if (sent == "") sent = -1
      lost = 0; for (i = 1; i <= max; i++) if (!(i in seen)) lost++
      tail = last ? stop - last : stop - start
      if (tail > gap) { gap = tail; within = sent - last_s }
      printf "%d %d %d %d %d %d %d %d\n", sent, answered, lost, (sent > max ? sent - max : 0), errors, gap * 1000, tail * 1000, within }' \
    "$work/ping-$1.txt")
  ping_lost=$lost
  ping_back=0
  if [ "$answered" -gt 0 ] && [ "$tail" -lt 500 ]; then ping_back=1; fi
  local lost_text="lost $lost, $after in flight at the stop"
  if [ $ping_back = 0 ]; then ping_lost=$((lost + after)); lost_text="lost $ping_lost ($after after the last answer: traffic not back)"; fi
  ping_figures="sent $sent, answered $answered, $lost_text, $errors ICMP errors, longest silence $ping_silence ms (ping sent $within in it), last answer $tail ms before the stop"
  if [ "$sent" -lt 0 ]; then ping_back=0; ping_figures="ping printed no count (did it run?): $(tail -2 "$work/ping-$1.txt" | tr '\n' ' ')"; fi
}
# ping_goal NAME [reported]: the functional goal every ping under a fault has: traffic back at the stop
# ("reported": the caller's result line fails on it already).
ping_goal() {
  goal functional "$1: traffic back" "$(met [ "$ping_back" = 1 ])" "$ping_figures" "answered, last answer < 500 ms before the stop" "${2:-}"
}

# kapi ARGS...: curl to the test API server as the harness identity; a request unanswered in 60 s fails (the
# API server stopped on purpose must not hang the scenario).
kapi() { lan curl -s -m 60 -H 'Content-Type: application/merge-patch+json' -H 'Authorization: Bearer test-harness' "$@"; }
node_json() { kapi "http://$api:6443/api/v1/nodes/$1"; }
annotation() { node_json "$1" | jq -r --arg k "wgmesh.dev/$2" '.metadata.annotations[$k] // empty'; }
patch_annotations() { kapi -X PATCH "http://$api:6443/api/v1/nodes/$1" -d "{\"metadata\":{\"annotations\":$2}}" >/dev/null; }
# wgm ARGS...: a `wgmesh` command as the people run it (kubernetes-admin), from the underlay's namespace.
wgm() { lan "$bin/wgmesh" "$@" --kubeconfig "$work/kubeconfig"; }
# create_node JSON: a Node created at the test API server (by the harness identity), from its JSON.
create_node() { kapi -X POST -H 'Content-Type: application/json' "http://$api:6443/api/v1/nodes" -d "$1" >/dev/null; }
# register_node NAME IP [hostname]: a Node as its kubelet registers it: its InternalIP, and with "hostname" its
# Hostname address (its name) as well.
register_node() {
  local addresses="{\"type\":\"InternalIP\",\"address\":\"$2\"}"
  if [ "${3:-}" = hostname ]; then addresses+=",{\"type\":\"Hostname\",\"address\":\"$1\"}"; fi
  create_node "{\"apiVersion\":\"v1\",\"kind\":\"Node\",\"metadata\":{\"name\":\"$1\"},\"status\":{\"addresses\":[$addresses]}}"
}

# delete_node NAME: the Node deleted at the test API server (by the harness identity).
delete_node() { kapi -X DELETE "http://$api:6443/api/v1/nodes/$1" >/dev/null; }

# lab_namespace NAME I [ipv6] [routed]: network namespace wge-NAME, lo up and eth0 up, eth0 a veth on the
# underlay bridge at 192.0.2.I/24; with "ipv6" at 2001:db8::I/64 as well; with "routed" a default route via the
# bridge's address ($api).
lab_namespace() {
  local ns="wge-$1" i=$2 opt ipv6=0 routed=0
  for opt in "${@:3}"; do
    case $opt in
      ipv6) ipv6=1 ;;
      routed) routed=1 ;;
      *) echo "lab_namespace: unknown option $opt (ipv6, routed)" >&2; return 2 ;;
    esac
  done
  ip netns add "$ns"
  ip -n wge-lan link add "$ns" type veth peer name eth0 netns "$ns"
  lan ip link set "$ns" master wge-br0 up
  ip -n "$ns" link set lo up
  ip -n "$ns" link set eth0 up
  ip -n "$ns" addr add "192.0.2.$i/24" dev eth0
  if [ $ipv6 = 1 ]; then ip -n "$ns" addr add "2001:db8::$i/64" dev eth0 nodad; fi
  if [ $routed = 1 ]; then ip -n "$ns" route add default via $api; fi
}
# node_namespace NAME I: a node's namespace: 192.0.2.I and 2001:db8::I, its default route via $api.
node_namespace() { lab_namespace "$1" "$2" ipv6 routed; }

# The underlay: a bridge in wge-lan, a veth per node, and an outside host (wge-ext, 192.0.2.100).
lab_underlay() {
  # The lab's namespace names are fixed: one scenario at a time on a machine; a second one waits here.
  exec {lab_lock}>/tmp/wgmesh-lab.lock
  flock "$lab_lock"
  remove_namespaces
  ip netns add wge-lan
  lan ip link set lo up
  lan ip link add wge-br0 type bridge && lan ip link set wge-br0 up
  lan ip addr add $api/24 dev wge-br0 && lan ip addr add 2001:db8::fe/64 dev wge-br0 nodad
  local i=0 n
  for n in "${nodes[@]}"; do
    i=$((i + 1))
    node_namespace "$n" "$i"
  done
  lab_namespace ext 100 ipv6
}

# A capture of the underlay (for the leak check) and the test API server with one Node per node, serving the
# Peer resource (manifests/peer-crd.yaml).
lab_api() {
  # shellcheck disable=SC2119  # the scenario's own capture: no name
  capture_start
  ip netns exec wge-lan "$bin/TestAPIServerTool" $api 6443 "$work/kubeconfig" --agents "${agent_nodes:-${nodes[*]}}" \
    --record "$record_file" --crd "$root/manifests/peer-crd.yaml" >"$work/apiserver.log" 2>&1 &
  pids+=($!)
  apiserver=$!
  wait_for 30 lan curl -sf "http://$api:6443/api/v1/nodes" || { echo "the test API server did not start"; cat "$work/apiserver.log"; return 1; }
  local i=0 n
  for n in "${nodes[@]}"; do
    i=$((i + 1))
    register_node "$n" "192.0.2.$i" hostname
  done
}

start_controller() {
  ip netns exec wge-lan "$bin/wgmesh" controller --kubeconfig "$work/kubeconfig.controller" --cluster-cidr $clusterv4 --cluster-cidr $clusterv6 \
    --peer-cidr $peercidrs --cidr-source wgmesh --rotation-grace 2s --lease-namespace default >>"$work/controller.log" 2>&1 &
  controller=$!
  pids+=($controller)
}

# Each agent, and each `wgmesh userspace-device`, runs in a session of its own, as in a container of its own:
# end_container ends it as the container runtime ends a container, every process it started included.
# With wireguard_go=device (as manifests/agent.yaml and device.yaml run them), the agents get
# --external-wireguard-go and start_device runs wireguard-go; otherwise (the default) each agent starts its own.
start_agent() {  # start_agent NODE (resync_period, 3s unless set)
  mkdir -p "$work/$1"
  local external=(); [ "${wireguard_go:-agent}" = device ] && external=(--external-wireguard-go)
  setsid ip netns exec "wge-$1" "$bin/wgmesh" agent --kubeconfig "$work/kubeconfig.agent-$1" --node-name "$1" --backend "$backend" --interface "$(ifname "$1")" \
    --cluster-cidr $clusterv4 --cluster-cidr $clusterv6 --peer-cidr $peercidrs --state-dir "$work/$1/state" \
    --cni-conf-dir "$work/$1/cni" --metrics-bind-address 127.0.0.1:9586 --resync-period "${resync_period:-3s}" "${external[@]}" >>"$work/$1/agent.log" 2>&1 &
  eval "agent_$1=$!"
  pids+=($!)
}

# The wgmesh-device DaemonSet's process on a node: wireguard-go for the node's interface, or nothing where
# the backend is the kernel's.
start_device() {  # start_device NODE
  mkdir -p "$work/$1"
  setsid ip netns exec "wge-$1" "$bin/wgmesh" userspace-device --interface "$(ifname "$1")" --backend "$backend" >>"$work/$1/device.log" 2>&1 &
  eval "device_$1=$!"
  pids+=($!)
}

# Every node's agent (agent_NODE, for each of nodes) still runs.
agents_alive() { local n; for n in "${nodes[@]}"; do kill -0 "$(eval echo "\$agent_$n")" 2>/dev/null || return 1; done; }

# The processes of session $1 (a process started with setsid above, and whatever it started).
session_pids() { ps -e -o pid=,sid= | awk -v s="$1" '$2 == s {print $1}'; }

# end_container PID: as the container runtime ends a container whose main process is PID: SIGTERM to it,
# SIGKILL after 10 s; once it has ended, SIGKILL to every process left of it (its session: what it started).
# Prints how many were left and their commands.
end_container() {
  local p left what="" end=$((SECONDS + 10))
  kill -TERM "$1" 2>/dev/null
  while running "$1" && [ $SECONDS -lt $end ]; do sleep 0.05; done
  kill -KILL "$1" 2>/dev/null; wait "$1" 2>/dev/null
  left=$(session_pids "$1")
  for p in $left; do what+=" ($(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-40))"; done
  for p in $left; do kill -KILL "$p" 2>/dev/null; done
  end=$((SECONDS + 10))
  for p in $left; do while running "$p" && [ $SECONDS -lt $end ]; do sleep 0.05; done; done
  echo "$(wc -w <<<"$left") left in its session and killed$what"
}

# Every agent runs its key, has a peer for each other node and has written its CNI configuration.
converged() {
  for n in "${nodes[@]}"; do
    local gen applied
    gen=$(annotation "$n" key-generation); applied=$(annotation "$n" applied-key-generation)
    [ -n "$gen" ] && [ "$gen" = "$applied" ] || return 1
    [ "$(peer_count "$n" 2>/dev/null)" -eq $((${#nodes[@]} - 1)) ] || return 1
    [ -f "$work/$n/cni/10-wgmesh.conflist" ] || return 1
  done
}

# A Pod through the real CNI plugins, from the agent's conflist (as libcni chains them); its addresses
# go to $work/NODE/POD.ips.
cni_add() {  # cni_add NODE POD
  local ns="wge-$1-$2" conf="$work/$1/cni/10-wgmesh.conflist" prev="" out=""
  ip netns add "$ns"
  local count; count=$(jq '.plugins | length' "$conf")
  for k in $(seq 0 $((count - 1))); do
    local plugin type
    plugin=$(jq -c --argjson k "$k" '.plugins[$k] + {cniVersion: .cniVersion, name: .name}' "$conf")
    [ -n "$prev" ] && plugin=$(jq -c --argjson prev "$prev" '. + {prevResult: $prev}' <<<"$plugin")
    # host-local keeps its leases in a folder of this run, not the machine's /var/lib/cni.
    plugin=$(jq -c --arg d "$work/$1/ipam" 'if .ipam then .ipam.dataDir = $d else . end' <<<"$plugin")
    type=$(jq -r .type <<<"$plugin")
    out=$(ip netns exec "wge-$1" env CNI_COMMAND=ADD CNI_CONTAINERID="$1-$2" CNI_NETNS="/run/netns/$ns" CNI_IFNAME=eth0 \
      CNI_PATH=/usr/lib/cni "/usr/lib/cni/$type" <<<"$plugin") || { echo "CNI $type failed for $ns: $out" >&2; return 1; }
    prev=$out
  done
  jq -r '.ips[].address' <<<"$prev" | cut -d/ -f1 >"$work/$1/$2.ips"
}

# Tears down a Pod that cni_add made, through the same conflist (plugins in reverse order, CNI_COMMAND=DEL),
# as the container runtime does; then removes its namespace.
cni_del() {  # cni_del NODE POD
  local ns="wge-$1-$2" conf="$work/$1/cni/10-wgmesh.conflist" k plugin type out rc=0
  local count; count=$(jq '.plugins | length' "$conf")
  for k in $(seq $((count - 1)) -1 0); do
    plugin=$(jq -c --argjson k "$k" '.plugins[$k] + {cniVersion: .cniVersion, name: .name}' "$conf")
    plugin=$(jq -c --arg d "$work/$1/ipam" 'if .ipam then .ipam.dataDir = $d else . end' <<<"$plugin")
    type=$(jq -r .type <<<"$plugin")
    out=$(ip netns exec "wge-$1" env CNI_COMMAND=DEL CNI_CONTAINERID="$1-$2" CNI_NETNS="/run/netns/$ns" CNI_IFNAME=eth0 \
      CNI_PATH=/usr/lib/cni "/usr/lib/cni/$type" <<<"$plugin") || { echo "CNI DEL $type failed for $ns: $out" >&2; rc=1; }
  done
  ip netns del "$ns"
  return $rc
}

# --- A laptop outside the cluster, behind NAT (a Peer: docs/operations.md#outside-peers) ---
# Two namespaces beside the nodes: PREFIX-nat, a home router on the underlay bridge at $nat_ip that masquerades
# (nftables) what comes from its private link ($laptop_link) and forwards nothing the other way but the answers; and
# PREFIX-laptop at $laptop_ip on that link, its default route via the router and no other: it reaches the underlay only
# through the NAT, and the underlay never sees its own address. IPv4 only on the underlay side, as the nodes'
# endpoints are. PREFIX is lab_prefix, wge (the lab's) unless set: scripts/lab-laptop-selftest.sh builds the same on an
# underlay of its own (PREFIX-lan, bridge PREFIX-br0) beside a running scenario.
nat_ip=192.0.2.150
laptop_link=192.168.77.0/24
laptop_router=192.168.77.1
laptop_ip=192.168.77.2
lab_laptop() {
  local p=${lab_prefix:-wge}
  ip netns add "$p-nat" && ip netns add "$p-laptop" || return 1
  ip -n "$p-lan" link add "$p-nat" type veth peer name eth0 netns "$p-nat"
  ip -n "$p-lan" link set "$p-nat" master "$p-br0" up
  ip -n "$p-nat" link set lo up
  ip -n "$p-nat" link set eth0 up
  ip -n "$p-nat" addr add "$nat_ip/24" dev eth0
  ip -n "$p-nat" link add lan0 type veth peer name eth0 netns "$p-laptop"
  ip -n "$p-nat" link set lan0 up
  ip -n "$p-nat" addr add "$laptop_router/24" dev lan0
  ip -n "$p-laptop" link set lo up
  ip -n "$p-laptop" link set eth0 up
  ip -n "$p-laptop" addr add "$laptop_ip/24" dev eth0
  ip -n "$p-laptop" route add default via "$laptop_router"
  ip netns exec "$p-nat" sysctl -qw net.ipv4.ip_forward=1
  ip netns exec "$p-nat" nft -f - <<NFT
table ip home-router {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "eth0" ip saddr $laptop_link masquerade
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "lan0" oifname "eth0" accept
  }
}
NFT
}

# laptop_up CONFIG [HOST]: `wg-quick up CONFIG` in the laptop's namespace (or PREFIX-HOST's: nat, the router, as a
# site), its output in $work/wg-quick-IFACE.txt (wg-quick names the interface after the file: laptop.conf, laptop).
# Where the kernel has no WireGuard (the host) wg-quick falls back to WG_QUICK_USERSPACE_IMPLEMENTATION,
# wireguard-go, which puts itself in the background: its PID, found in the namespace by its command line, goes to
# laptop_wg_pid (empty on kernel WireGuard), for laptop_down. One is up at a time.
laptop_up() {
  local ns=${lab_prefix:-wge}-${2:-laptop} iface pid
  iface=$(basename "$1" .conf)
  ip netns exec "$ns" env WG_QUICK_USERSPACE_IMPLEMENTATION=wireguard-go wg-quick up "$1" >"$work/wg-quick-$iface.txt" 2>&1 \
    || { echo "lab: wg-quick up $1 failed: $(tail -3 "$work/wg-quick-$iface.txt")" >&2; return 1; }
  laptop_conf=$1
  laptop_ns=$ns
  laptop_wg_pid=""
  for pid in $(ip netns pids "$ns"); do
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = wireguard-go ] && [ "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" = "wireguard-go $iface " ] \
      && laptop_wg_pid=$pid
  done
  return 0
}
# laptop_down: `wg-quick down` of what laptop_up brought up. Its interface gone, wireguard-go ends by itself; one that
# still runs 5 s later is ended (by its PID).
laptop_down() {
  local iface rc end=$((SECONDS + 5))
  [ -n "${laptop_conf:-}" ] || return 0
  iface=$(basename "$laptop_conf" .conf)
  ip netns exec "$laptop_ns" wg-quick down "$laptop_conf" >>"$work/wg-quick-$iface.txt" 2>&1; rc=$?
  if [ -n "${laptop_wg_pid:-}" ]; then
    while running "$laptop_wg_pid" && [ $SECONDS -lt $end ]; do sleep 0.1; done
    running "$laptop_wg_pid" && { echo "lab: wireguard-go of $iface still runs 5 s after wg-quick down: ended" >&2; kill "$laptop_wg_pid"; }
  fi
  laptop_conf=""
  laptop_wg_pid=""
  return $rc
}
# laptop_cleanup: the laptop's WireGuard down, if up (lab_cleanup; the namespaces go with the others).
laptop_cleanup() { laptop_down >/dev/null 2>&1; }

# laptop_capture_start: every IP packet on the underlay bridge to or from the NAT's address, the laptop's private
# link or a Pod or Peer address, headers only, until laptop_capture_check.
laptop_capture_start() {
  local p=${lab_prefix:-wge}
  ip netns exec "$p-lan" tcpdump -i "$p-br0" -nn -U -s 128 -B 16384 -w "$work/laptop-underlay.pcap" \
    "(ip or ip6) and (host $nat_ip or net $laptop_link or $pod_traffic)" 2>"$work/laptop-capture.txt" &
  pids+=($!)
  laptop_capture=$!
  wait_for 10 grep -q "listening on" "$work/laptop-capture.txt"
}
# laptop_capture_check GATEWAY_ENDPOINT [CANARY_FILTER]: stops it and counts: laptop_wg_out and laptop_wg_in, the
# WireGuard messages from the NAT's address to GATEWAY_ENDPOINT (host:port) and back; laptop_other, the NAT's other
# packets; laptop_private, packets with an address of the private link; laptop_leaked, Pod- or Peer-addressed packets
# outside WireGuard (but those CANARY_FILTER matches); laptop_dropped, what the kernel dropped. laptop_figures says it
# all in words. It succeeds when the laptop crossed the underlay as WireGuard both ways between the NAT and the gateway
# and as nothing else, and nothing leaked or was dropped.
laptop_capture_check() {
  local host=${1%:*} port=${1##*:} pcap="$work/laptop-underlay.pcap" total canary_filter=${2:-}
  host=${host#[}; host=${host%]}
  # As capture_check: a second for tcpdump to take what its ring holds (stopped at once, it wrote none of 37).
  sleep 1
  kill -INT "${laptop_capture:-}" 2>/dev/null; wait "${laptop_capture:-}" 2>/dev/null
  total=$(packets "$pcap")
  laptop_wg_out=$(packets "$pcap" "src host $nat_ip and dst host $host and udp dst port $port and ($wireguard_message)")
  laptop_wg_in=$(packets "$pcap" "src host $host and udp src port $port and dst host $nat_ip and ($wireguard_message)")
  laptop_other=$(packets "$pcap" "host $nat_ip and not (host $host and udp port $port and ($wireguard_message))")
  laptop_private=$(packets "$pcap" "net $laptop_link")
  laptop_leaked=$(packets "$pcap" "($pod_leak)${canary_filter:+ and not ($canary_filter)}")
  laptop_dropped=$(capture_drops "$work/laptop-capture.txt")
  laptop_figures="$total packets: $laptop_wg_out WireGuard messages $nat_ip -> $1, $laptop_wg_in back, $laptop_other other packets of the NAT, $laptop_private with a private address, $laptop_leaked Pod- or Peer-addressed outside WireGuard, ${laptop_dropped:-unknown} dropped by the capture"
  [ "$laptop_wg_out" -ge 1 ] && [ "$laptop_wg_in" -ge 1 ] && [ "$laptop_other" = 0 ] && [ "$laptop_private" = 0 ] \
    && [ "$laptop_leaked" = 0 ] && [ "$laptop_dropped" = 0 ]
}
