#!/usr/bin/env bash
# The agent's three-node scenario. scripts/test.sh runs it twice: in the VM guest with kernel WireGuard
# (`bash scripts/vm-run.sh 'bash scripts/e2e-agent.sh'`), and on the host with the userspace backend
# (`WGMESH_E2E_BACKEND=userspace bash scripts/e2e-agent.sh`, as root): three Node network namespaces on
# one underlay bridge (IPv4 and IPv6) in a namespace of its own that also holds the test API server and
# `wgmesh controller`, one `wgmesh agent` per node with the flags the DaemonSet passes and one `wgmesh
# userspace-device` (the wgmesh-device DaemonSet; it does nothing on kernel WireGuard), each in a session of
# its own as in a container of its own, and two Pods per node added by the real CNI plugins from the agent's conflist. Only the backend differs between the runs.
# Every check prints one result line; the script exits non-zero when one fails.
# Traffic goes only to addresses of these namespaces (documentation ranges RFC 5737 / RFC 3849).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.build/debug"
backend="${WGMESH_E2E_BACKEND:-kernel}"
work="${WGMESH_VM_OUT:-$root/.e2e}/e2e-$backend"
rm -rf "$work" && mkdir -p "$work"
. "$root/scripts/lab.sh"
# device (the default): wireguard-go in `wgmesh userspace-device`, a process of its own per node (the wgmesh-device
# DaemonSet), the agents given --external-wireguard-go, as the manifests run them; agent: each agent starts its own.
wireguard_go="${WGMESH_E2E_WIREGUARD_GO:-device}"
agent_nodes="${nodes[*]} n4"  # n4 joins on wireguard-go below (interop)
trap lab_cleanup EXIT

lab_underlay
lab_api || exit 1

# --- on a kernel without WireGuard, --backend kernel stops at once and names the way out ---
if [ "$backend" = userspace ]; then
  if ip -n wge-n1 link add wge-probe type wireguard 2>/dev/null; then
    ip -n wge-n1 link del wge-probe
    echo "e2e: SKIP kernel-refused: this kernel has WireGuard, so --backend kernel works here"
  else
    out=$(ip netns exec wge-n1 timeout 20 "$bin/wgmesh" agent --backend kernel --kubeconfig "$work/kubeconfig.agent-n1" --node-name n1 \
      --cluster-cidr $clusterv4 --state-dir "$work/refused" --cni-conf-dir "$work/refused" --metrics-bind-address 127.0.0.1:9586 2>&1); rc=$?
    made=$(ip -n wge-n1 link show type wireguard 2>/dev/null; ls "$work/refused" 2>/dev/null)
    if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q -- "--backend userspace" <<<"$out" && [ -z "$made" ]; then
      result kernel-refused ok "--backend kernel without kernel WireGuard: exit status $rc, nothing made, \"$(head -1 <<<"$out" | cut -c1-160)…\""
    else
      result kernel-refused fail "exit status $rc, made: ${made:-nothing}: $out"
    fi
  fi
fi

# --- the controller and one agent per node converge; then two Pods per node ---
start_controller
if [ "$wireguard_go" = device ]; then for n in "${nodes[@]}"; do start_device "$n"; done; fi
for n in "${nodes[@]}"; do start_agent "$n"; done
if wait_for 120 converged; then
  result converge ok "every agent runs its key and has a peer for each other node"
else
  result converge fail "agents did not converge"; for n in "${nodes[@]}"; do tail -5 "$work/$n/agent.log"; done; exit 1
fi
pods_ok=1
for n in "${nodes[@]}"; do for p in p1 p2; do cni_add "$n" "$p" || pods_ok=0; done; done
# --- who runs wireguard-go: with the device launch, `wgmesh userspace-device` (or nothing, on kernel WireGuard); no agent ---
wg_go_of() { for p in $(session_pids "$1"); do [ "$(cat "/proc/$p/comm" 2>/dev/null)" = wireguard-go ] && echo "$p"; done; }
if [ "$wireguard_go" = device ]; then
  devices_ok=1; detail=""
  for n in "${nodes[@]}"; do
    dev=$(eval echo \$device_$n); agent=$(eval echo \$agent_$n)
    [ -n "$(wg_go_of "$agent")" ] && { devices_ok=0; detail+=" $n: the agent started a wireguard-go;"; }
    if [ "$backend" = userspace ]; then
      [ -n "$(wg_go_of "$dev")" ] || { devices_ok=0; detail+=" $n: no wireguard-go under userspace-device;"; }
      grep -q "started by .wgmesh userspace-device" "$work/$n/agent.log" || { devices_ok=0; detail+=" $n: the agent does not say whose wireguard-go it uses;"; }
    else
      grep -q "nothing to do: " "$work/$n/device.log" && [ -e "/proc/$dev" ] || { devices_ok=0; detail+=" $n: userspace-device did not say it has nothing to do;"; }
    fi
  done
  if [ $devices_ok = 1 ] && [ "$backend" = userspace ]; then
    result device ok "each node's wireguard-go runs under wgmesh userspace-device, in a session of its own (n1: pid $(wg_go_of "$device_n1")); no agent started one"
  elif [ $devices_ok = 1 ]; then
    result device ok "wgmesh userspace-device on kernel WireGuard does nothing and waits: \"$(grep -o 'nothing to do: .*' "$work/n1/device.log" | head -1 | cut -c1-120)\""
  else
    result device fail "$detail"
  fi
fi

if [ $pods_ok = 1 ]; then
  result pods ok "$(cat "$work"/n*/p*.ips | wc -l) Pod addresses from host-local: $(cat "$work"/n1/p1.ips | paste -sd' ')…"
else
  result pods fail "a CNI plugin failed"; exit 1
fi

# --- every Pod pings every Pod on the other nodes, IPv4 and IPv6 ---
# A ping unanswered in 3 s is tried again (3 more, 1 s apart) before it counts as lost; each such retry is
# named in the result, and both ends' WireGuard state goes to the output, so a slow first packet stays visible.
sent=0; lost=(); retried=()
for n in "${nodes[@]}"; do for p in p1 p2; do
  for m in "${nodes[@]}"; do [ "$m" = "$n" ] && continue; for q in p1 p2; do
    while read -r ip; do
      sent=$((sent + 1))
      ip netns exec "wge-$n-$p" ping -c 1 -W 3 "$ip" >/dev/null 2>&1 && continue
      retried+=("$n/$p->$m/$q $ip")
      echo "e2e: $n/$p->$m/$q $ip: no answer in 3 s at $(date +%T.%N | cut -c1-12); WireGuard on both ends:"
      for x in "$n" "$m"; do wgs "$x" | sed "s/^/  $x: /"; done
      ip netns exec "wge-$n-$p" ping -c 3 -W 3 "$ip" >/dev/null 2>&1 || lost+=("$n/$p->$m/$q $ip")
    done <"$work/$m/$q.ips"
  done; done
done; done
first=""; [ ${#retried[@]} -gt 0 ] && first=" (${#retried[@]} only on a second try: ${retried[*]:0:4})"
if [ ${#lost[@]} -eq 0 ]; then
  result pod-to-pod ok "$sent pings between Pods on different nodes, IPv4 and IPv6, all answered$first"
else
  result pod-to-pod fail "${#lost[@]} of $sent unanswered: ${lost[*]:0:4}"
fi

# --- a Pod reached by another Pod sees the sender's own address; the outside sees the node's ---
src=$(head -1 "$work/n1/p1.ips"); dst=$(head -1 "$work/n2/p1.ips")
ip netns exec wge-n2-p1 timeout 10 tcpdump -i eth0 -nn -c 1 "icmp and src $src" >"$work/seen-by-pod.txt" 2>/dev/null &
sleep 1; ip netns exec wge-n1-p1 ping -c 2 -W 2 "$dst" >/dev/null 2>&1; wait $! 2>/dev/null
if grep -q "$src > $dst" "$work/seen-by-pod.txt"; then
  result no-nat ok "Pod $dst saw Pod-to-Pod packets from $src itself"
else
  result no-nat fail "the receiving Pod saw: $(cat "$work/seen-by-pod.txt")"
fi
ip netns exec wge-ext timeout 10 tcpdump -i eth0 -nn -c 1 "icmp and dst 192.0.2.100" >"$work/seen-outside.txt" 2>/dev/null &
sleep 1; ip netns exec wge-n1-p1 ping -c 2 -W 2 192.0.2.100 >/dev/null 2>&1; out_rc=$?; wait $! 2>/dev/null
if grep -q "192.0.2.1 > 192.0.2.100" "$work/seen-outside.txt" && [ $out_rc = 0 ]; then
  result masquerade ok "a Pod reaching 192.0.2.100 (outside the cluster CIDRs) is masqueraded to its node's 192.0.2.1"
else
  result masquerade fail "rc=$out_rc, the outside saw: $(cat "$work/seen-outside.txt")"
fi

# --- the tunnel address is link-scoped: never the source of a packet leaving by the underlay, and still
# the node's own source towards other nodes' Pods ---
if ip -4 -n wge-n1 -o addr show dev "$(ifname n1)" | grep -q " scope link" \
  && ip netns exec wge-n1 ping -c 1 -W 3 "$(head -1 "$work/n2/p1.ips")" >/dev/null 2>&1; then
  result tunnel-address-scope ok "$(ip -4 -n wge-n1 -o addr show dev "$(ifname n1)" | awk '{print $4, $5, $6}'); node n1 itself reaches n2's Pods"
else
  result tunnel-address-scope fail "$(ip -4 -n wge-n1 -o addr show dev "$(ifname n1)")"
fi

# --- the mesh as the kernel runs it agrees with the plan ---
agree=1
for n in "${nodes[@]}"; do
  ip netns exec "wge-$n" "$bin/wgmesh" agent --kubeconfig "$work/kubeconfig.agent-$n" --node-name "$n" --cluster-cidr $clusterv4 \
    --cluster-cidr $clusterv6 --backend "$backend" --interface "$(ifname "$n")" --dry-run >"$work/$n/dry-run.txt" 2>&1
  grep -q "diff: nothing to change" "$work/$n/dry-run.txt" || agree=0
  for m in "${nodes[@]}"; do
    [ "$m" = "$n" ] && continue
    key=$(annotation "$m" public-key); cidrs=$(annotation "$m" pod-cidrs | tr ',' '\n' | sort | paste -sd,)
    have=$(wgs "$n" dump | awk -v k="$key" '$1 == k {print $4}' | tr ',' '\n' | sort | paste -sd,)
    [ "$have" = "$cidrs" ] || { agree=0; echo "  $n: peer $m allowed-ips '$have', plan '$cidrs'"; }
  done
done
if [ $agree = 1 ]; then
  result wg-show-agrees ok "wg show all dump holds every other node's key with exactly its Pod CIDRs; dry-run finds nothing to change"
else
  result wg-show-agrees fail "see $work/n*/dry-run.txt"
fi

# --- an agent restarted under a 10 ms ping, and a key rotation requested through the API ---
# Each ping (lab.sh's ping_start/ping_stop) runs from before the event to 1 s after it is over.
dst=$(head -1 "$work/n2/p1.ips")
ping_start restart wge-n1-p1 "$dst"
sleep 0.5
# As the container runtime ends the agent's container (a rollout, a crash): SIGTERM, then SIGKILL to every
# process left in it, the agent's own wireguard-go included where it started one. The data plane must not
# depend on the agent running: with wireguard-go in its own process, nothing is lost however long it is away.
ended=$(end_container "$agent_n1")
plane="wireguard-go: $wireguard_go's"; [ "$backend" = kernel ] && plane="kernel WireGuard"
sleep 1  # away for a second, as while the kubelet starts the new container (longer on a real cluster)
start_agent n1
wait_for 60 ip netns exec wge-n1 curl -sf http://127.0.0.1:9586/readyz; ready_rc=$?
sleep 1
ping_stop restart; ping_goal restart reported
goal functional "agent restart: lost" "$(met [ "$ping_lost" -le 1 ])" "$ping_lost lost, silence $ping_silence ms" "at most one 10 ms interval" reported
if [ $ready_rc = 0 ] && [ "$ping_lost" -le 1 ] && [ "$ping_back" = 1 ]; then
  result agent-restart ok "n1's agent container ended ($ended; $plane) and restarted 1 s later, ready again, under a 10 ms Pod-to-Pod ping: $ping_figures"
else
  result agent-restart fail "n1's agent container ended ($ended; $plane) and restarted 1 s later (ready: $(if [ $ready_rc = 0 ]; then echo yes; else echo no; fi)) under a 10 ms Pod-to-Pod ping: $ping_figures"
fi

generation=$(annotation n2 key-generation)
ping_start rotation wge-n1-p1 "$dst"
sleep 0.5
patch_annotations n2 "{\"wgmesh.dev/rotate-request\":\"e2e-$(date +%s)\"}"
rotated() { [ "$(annotation n2 key-generation)" = $((generation + 1)) ] && [ "$(annotation n2 applied-key-generation)" = $((generation + 1)) ]; }
wait_for 60 rotated; rot_rc=$?
sleep 1
ping_stop rotation; ping_goal rotation
goal timing "rotation: silence" "$(met [ "$ping_silence" -lt 100 ])" "$ping_silence ms, $ping_lost lost" "< 100 ms"
if [ $rot_rc = 0 ]; then
  result rotation ok "n2 rotated to key generation $((generation + 1)) through the API under a 10 ms Pod-to-Pod ping, from the request to 1 s after both generations were applied: $ping_figures"
else
  result rotation fail "n2 did not rotate (generation $(annotation n2 key-generation), applied $(annotation n2 applied-key-generation)); ping: $ping_figures"
fi
if ip netns exec wge-n1-p1 ping -c 1 -W 3 "$dst" >/dev/null 2>&1 && ip netns exec wge-n3-p1 ping -c 1 -W 3 "$dst" >/dev/null 2>&1; then
  result after-rotation ok "n1's and n3's Pods reach n2's Pods on the new key"
else
  result after-rotation fail "n2's Pods unreachable after the rotation"
fi

# --- drift made by hand is repaired by the next resync ---
n2key=$(annotation n2 public-key); n3v4=$(annotation n3 pod-cidrs | cut -d, -f1)
ip netns exec wge-n1 wg set "$(ifname n1)" peer "$n2key" remove
ip -n wge-n1 route del "$n3v4" proto 0x57
repaired() {
  wgs n1 peers | grep -qx "$n2key" && ip -n wge-n1 route show "$n3v4" proto 0x57 | grep -q "$(ifname n1)"
}
if wait_for 20 repaired; then
  result drift-repair ok "a peer removed with wg set and a route removed with ip route del came back within the resync (3 s)"
else
  result drift-repair fail "not repaired: $(peer_count n1) peers, route '$(ip -n wge-n1 route show "$n3v4")'"
fi

# --- health that tells the truth: while a pass fails, /readyz, the condition, `wgmesh status` and `wgmesh
# audit` all say so, with the reason, and the rest of the mesh keeps working; once a pass succeeds, all clear ---
readyz() { ip netns exec "wge-$1" curl -s -m 3 -w ' %{http_code}' http://127.0.0.1:9586/readyz | tr '\n' ' '; }
mesh_condition() { node_json "$1" | jq -r '.status.conditions[]? | select(.type == "WireGuardMeshReady") | "\(.status) \(.reason)"'; }
# Every signal says NODE fails with REASON.
signals_fail() {
  [[ "$(readyz "$1")" == *"$2"*503 ]] && [ "$(mesh_condition "$1")" = "False $2" ] || return 1
  ! wgm status -o wide >"$work/status.txt" 2>&1 && grep -E "^$1 +False .*$2" "$work/status.txt" >/dev/null || return 1
  ! wgm audit >"$work/audit.txt" 2>&1 && grep -F "$1: WireGuardMeshReady is False ($2)" "$work/audit.txt" >/dev/null
}
# Every signal says NODE is well, and the whole cluster passes status and audit.
signals_ok() {
  [[ "$(readyz "$1")" == *200 ]] && [ "$(mesh_condition "$1")" = "True AllPeersConnected" ] && wgm status >/dev/null 2>&1 && wgm audit >/dev/null 2>&1
}
signals() { echo "readyz '$(readyz "$1")', condition '$(mesh_condition "$1")', status: $(grep -E "^$1 " "$work/status.txt" | tr -s ' ')"; }

# Another program's route (a leftover bridge's) holds the key of wgmesh's route to n3's Pod CIDR on n1 (defect 4: it
# stopped every pass).
n3v4=$(annotation n3 pod-cidrs | cut -d, -f1)
ip -n wge-n1 link add wge-stale type bridge && ip -n wge-n1 link set wge-stale up
ip -n wge-n1 route replace "$n3v4" dev wge-stale proto static
if wait_for 30 signals_fail n1 RouteConflict; then
  if ip netns exec wge-n1-p1 ping -c 1 -W 3 "$(head -1 "$work/n2/p1.ips")" >/dev/null 2>&1; then
    result foreign-route ok "a static route to n3's $n3v4 on n1: $(signals n1); n1's Pods still reach n2's"
  else
    result foreign-route fail "n1's Pods no longer reach n2's while the route to n3 is held: the rest of the pass was not applied"
  fi
else
  result foreign-route fail "not every signal says RouteConflict: $(signals n1)"
fi
ip -n wge-n1 route del "$n3v4" dev wge-stale proto static; ip -n wge-n1 link del wge-stale
if wait_for 30 signals_ok n1 && ip netns exec wge-n1-p1 ping -c 1 -W 3 "$(head -1 "$work/n3/p1.ips")" >/dev/null 2>&1; then
  result foreign-route-gone ok "the other route removed: wgmesh's is back, n1's Pods reach n3's, every signal clear and status and audit pass"
else
  result foreign-route-gone fail "$(signals n1); audit: $(grep -E '^- (PASS|FAIL)' "$work/audit.txt" | tr '\n' ' ')"
fi

# A pass that keeps failing (its CNI file cannot be written: a directory in its place) on n2.
conflist="$work/n2/cni/10-wgmesh.conflist"
rm -f "$conflist" && mkdir "$conflist"
if wait_for 30 signals_fail n2 ReconcileFailed; then
  result failing-pass ok "n2's CNI file cannot be written: $(signals n2)"
else
  result failing-pass fail "not every signal says ReconcileFailed: $(signals n2)"
fi
rmdir "$conflist"
if wait_for 30 signals_ok n2 && [ -f "$conflist" ]; then
  result failing-pass-over ok "the CNI file written again: every signal clear, status and audit pass"
else
  result failing-pass-over fail "$(signals n2)"
fi

# --- uninstall, then install again (defects 6 and 7): the cleanup waits for the node's Pods; after it no
# wgmesh state is left; a new install hands out the Pod CIDRs in another order and every node works ---
cidrs_before=$(for n in "${nodes[@]}"; do annotation "$n" pod-cidrs; done | paste -sd' ')
# The nodes by their IPv4 Pod CIDR, highest first: registered in this order, they get them in reverse.
reverse_order=$(for n in "${nodes[@]}"; do echo "$(annotation "$n" pod-cidrs | cut -d, -f1) $n"; done | sort -V -r | awk '{print $2}')
kill -TERM "$controller"; for n in "${nodes[@]}"; do kill -TERM "$(eval echo \$agent_$n)"; done
wait "$controller" 2>/dev/null; for n in "${nodes[@]}"; do wait "$(eval echo \$agent_$n)" 2>/dev/null; done
cleanup_node() {
  ip netns exec "wge-$1" "$bin/wgmesh" agent --cleanup --kubeconfig "$work/kubeconfig.agent-$1" --node-name "$1" --backend "$backend" \
    --interface "$(ifname "$1")" --cluster-cidr $clusterv4 --cluster-cidr $clusterv6 --state-dir "$work/$1/state" \
    --cni-conf-dir "$work/$1/cni" --ipam-dir "$work/$1/ipam" >"$work/$1/cleanup.txt" 2>&1
}
if cleanup_node n1; then
  result cleanup-waits fail "cleanup went ahead on n1 while its Pods hold addresses: $(cat "$work/n1/cleanup.txt")"
elif grep -q "nothing was removed" "$work/n1/cleanup.txt" && [ -f "$work/n1/cni/10-wgmesh.conflist" ] && ip -n wge-n1 link show "$(ifname n1)" >/dev/null 2>&1; then
  result cleanup-waits ok "$(grep -o 'node n1: nothing was removed: [^(]*' "$work/n1/cleanup.txt")"
else
  result cleanup-waits fail "$(cat "$work/n1/cleanup.txt")"
fi
dels=0; for n in "${nodes[@]}"; do for p in p1 p2; do cni_del "$n" "$p" || dels=1; done; done
# The wgmesh-device DaemonSet goes before the cleanup (manifests/device.yaml): wireguard-go, and the interface, end with it.
if [ "$wireguard_go" = device ]; then for n in "${nodes[@]}"; do end_container "$(eval echo \$device_$n)" >/dev/null; done; fi
left=""
for n in "${nodes[@]}"; do
  cleanup_node "$n" || left+=" $n: cleanup failed: $(tail -1 "$work/$n/cleanup.txt");"
  [ -z "$(ip -n "wge-$n" route show proto 0x57; ip -6 -n "wge-$n" route show proto 0x57)" ] || left+=" $n: wgmesh routes;"
  ip -n "wge-$n" link show "$(ifname "$n")" >/dev/null 2>&1 && left+=" $n: interface;"
  ip -n "wge-$n" link show cni0 >/dev/null 2>&1 && left+=" $n: cni0;"
  ip netns exec "wge-$n" nft list table inet wgmesh >/dev/null 2>&1 && left+=" $n: nftables table;"
  [ -e "$work/$n/cni/10-wgmesh.conflist" ] && left+=" $n: CNI file;"
done
wait_for 30 wgm uninstall --lease-namespace default; uninstall_rc=$?
annotated=$(kapi "http://$api:6443/api/v1/nodes" | jq -r '[.items[].metadata.annotations // {} | keys[] | select(startswith("wgmesh.dev/"))] | length')
if [ $dels = 0 ] && [ -z "$left" ] && [ $uninstall_rc = 0 ] && [ "$annotated" = 0 ]; then
  result uninstall ok "Pods deleted through the conflist, then cleanup on every node and wgmesh uninstall: no interface, wgmesh route, cni0, nftables table, CNI file or wgmesh.dev/ annotation left"
else
  result uninstall fail "CNI DEL ok=$((1 - dels)), left:${left:- nothing}, uninstall rc=$uninstall_rc, $annotated wgmesh.dev/ annotations"
fi
# Installed again on replaced machines: every Node deleted and registered again, one at a time (as new
# kubelets do), in the reverse order of their old Pod CIDRs, so that the allocation comes out otherwise.
for n in "${nodes[@]}"; do delete_node "$n"; done
reinstalled=1
start_controller
if [ "$wireguard_go" = device ]; then for n in "${nodes[@]}"; do start_device "$n"; done; fi
for n in "${nodes[@]}"; do start_agent "$n"; done
has_cidrs() { [ -n "$(annotation "$1" pod-cidrs)" ]; }
for n in $reverse_order; do
  register_node "$n" "192.0.2.${n#n}"
  wait_for 30 has_cidrs "$n" || reinstalled=0
done
cidrs_after=$(for n in "${nodes[@]}"; do annotation "$n" pod-cidrs; done | paste -sd' ')
wait_for 120 converged || reinstalled=0
for n in "${nodes[@]}"; do for p in p1 p2; do cni_add "$n" "$p" || reinstalled=0; done; done
for n in "${nodes[@]}"; do for m in "${nodes[@]}"; do
  [ "$n" = "$m" ] || wait_for 20 ip netns exec "wge-$n-p1" ping -c 1 -W 2 "$(head -1 "$work/$m/p1.ips")" || reinstalled=0
done; done
all_ok() { for n in "${nodes[@]}"; do signals_ok "$n" || return 1; done; }
wait_for 60 all_ok || reinstalled=0
if [ $reinstalled = 1 ] && [ "$cidrs_before" != "$cidrs_after" ]; then
  result reinstall ok "installed again, Pod CIDRs $cidrs_before -> $cidrs_after: Pods on every node reach each other, every signal clear, status and audit pass"
else
  result reinstall fail "reinstalled=$reinstalled, Pod CIDRs $cidrs_before -> $cidrs_after; $(for n in "${nodes[@]}"; do echo "$n: $(readyz "$n") $(mesh_condition "$n");"; done)"
fi
# A stale gateway on the bridge (what an older cleanup left) goes at the next full pass.
ip -n wge-n1 addr add 10.244.250.1/24 dev cni0
if wait_for 20 bash -c "! ip -n wge-n1 addr show dev cni0 | grep -q 10.244.250.1"; then
  result stale-bridge-address ok "a gateway of another Pod CIDR on n1's cni0 was removed by the agent"
else
  result stale-bridge-address fail "10.244.250.1/24 is still on n1's cni0"
fi

# --- bad input: other nodes keep working, nobody crashes ---
bad_key=$(head -c 31 /dev/urandom | base64)
good_key=$(wg genkey | wg pubkey)
create_node "{\"apiVersion\":\"v1\",\"kind\":\"Node\",\"metadata\":{\"name\":\"bad\",
  \"annotations\":{\"wgmesh.dev/public-key\":\"$bad_key\",\"wgmesh.dev/pod-cidrs\":\"10.99.0.0/24\",\"wgmesh.dev/endpoint\":\"192.0.2.50:51820\"}}}"
create_node "{\"apiVersion\":\"v1\",\"kind\":\"Node\",\"metadata\":{\"name\":\"outside\",
  \"annotations\":{\"wgmesh.dev/public-key\":\"$good_key\",\"wgmesh.dev/pod-cidrs\":\"10.99.1.0/24\",\"wgmesh.dev/endpoint\":\"192.0.2.51:51820\",
  \"wgmesh.dev/key-generation\":\"1\",\"wgmesh.dev/sealed-private-key\":\"$(annotation n1 sealed-private-key)\"}}}"
create_node "{\"apiVersion\":\"v1\",\"kind\":\"Node\",\"metadata\":{\"name\":\"twin\",
  \"annotations\":{\"wgmesh.dev/public-key\":\"$(annotation n2 public-key)\",\"wgmesh.dev/pod-cidrs\":\"10.244.200.0/24\",\"wgmesh.dev/endpoint\":\"192.0.2.52:51820\",
  \"wgmesh.dev/key-generation\":\"1\",\"wgmesh.dev/sealed-private-key\":\"$(annotation n2 sealed-private-key)\"}}}"
for n in ov1 ov2; do
  cidr=10.244.100.0/24; [ $n = ov2 ] && cidr=10.244.100.0/25
  create_node "{\"apiVersion\":\"v1\",\"kind\":\"Node\",\"metadata\":{\"name\":\"$n\",
    \"annotations\":{\"wgmesh.dev/public-key\":\"$(wg genkey | wg pubkey)\",\"wgmesh.dev/pod-cidrs\":\"$cidr\",\"wgmesh.dev/endpoint\":\"192.0.2.53:51820\",
    \"wgmesh.dev/key-generation\":\"1\",\"wgmesh.dev/sealed-private-key\":\"$(annotation n1 sealed-private-key)\"}}}"
done
events() { kapi "http://$api:6443/apis/events.k8s.io/v1/namespaces/default/events" | jq -r '.items[] | "\(.regarding.name) \(.reason) \(.reportingController) \(.note)"'; }
# One reporter per problem: the controller, whatever the number of agents that leave the node out.
reported() {
  events | grep -q "^bad InvalidAnnotation wgmesh.dev/controller .*public-key" \
    && events | grep -q "^outside PodCIDRUnmanaged wgmesh.dev/controller .*outside the cluster CIDRs" \
    && events | grep -q "^twin PublicKeyConflict wgmesh.dev/controller .*twin" \
    && events | grep -q "^ov2 PodCIDRConflict wgmesh.dev/controller .*overlaps"
}
wait_for 20 reported; rep_rc=$?
sleep 4  # a resync passes with the bad nodes in the API
by_agents=$(events | grep -E "^(bad|outside|twin|ov1|ov2) [A-Za-z]+ wgmesh.dev/agent " || true)
[ -z "$by_agents" ] || rep_rc=1
alive=1; agents_alive || alive=0
ip netns exec wge-n3-p1 ping -c 1 -W 3 "$(head -1 "$work/n1/p1.ips")" >/dev/null 2>&1; pod_rc=$?
if [ $rep_rc = 0 ] && [ $alive = 1 ] && [ $pod_rc = 0 ]; then
  result bad-input ok "a 31-byte key, a Pod CIDR outside the cluster CIDRs, a key claimed twice, overlapping Pod CIDRs: those nodes are left out with an Event from the controller alone, every agent runs, Pods still reach each other"
else
  result bad-input fail "events=$rep_rc alive=$alive ping=$pod_rc; events: $(events | grep -E '^(bad|outside|twin|ov1|ov2) ' | cut -c1-160 | sort -u)"
fi
for n in bad outside twin ov1 ov2; do delete_node "$n"; done

# --- a sealed key that does not open: a Warning, and the interface untouched ---
kill -TERM "$controller"; wait "$controller" 2>/dev/null
before=$(wgs n3 private-key | sha256sum)
n3sealed=$(annotation n3 sealed-private-key)
patch_annotations n3 "{\"wgmesh.dev/sealed-private-key\":\"$(annotation n1 sealed-private-key)\"}"
warned() { events | grep -q '^n3 SealedKeyInvalid '; }
wait_for 20 warned; sk_rc=$?
sleep 4
after=$(wgs n3 private-key | sha256sum)
if [ $sk_rc = 0 ] && [ "$before" = "$after" ]; then
  result sealed-key-invalid ok "a sealed key that does not open: SealedKeyInvalid Warning on n3, its interface keeps its key"
else
  result sealed-key-invalid fail "event=$sk_rc key unchanged=$(if [ "$before" = "$after" ]; then echo yes; else echo no; fi)"
fi
patch_annotations n3 "{\"wgmesh.dev/sealed-private-key\":\"$n3sealed\"}"

# --- a node whose keys are removed is unreachable; nothing for its Pods leaves in the clear ---
dst=$(head -1 "$work/n2/p1.ips")
patch_annotations n2 '{"wgmesh.dev/public-key":null,"wgmesh.dev/sealed-private-key":null,"wgmesh.dev/key-generation":null,"wgmesh.dev/key-issued-at":null,"wgmesh.dev/sealed-to":null}'
peer_gone() { [ "$(peer_count n1)" -eq 1 ]; }
wait_for 20 peer_gone; gone_rc=$?
ip netns exec wge-n1-p1 ping -c 3 -W 1 "$dst" >/dev/null 2>&1; unreachable=$?
# Without wgmesh's strict route (deleted by hand; each resync puts it back, so delete it again before each
# try) the packet would take the default route: nftables drops it. The agent reads the counter at each pass:
# the baseline is taken one resync after the peer went, so that no earlier drop is counted as this one's.
# The counter alone proves nothing (without strict mode the same rule counts and accepts): a capture on n1's
# underlay interface must see none of the tries' packets leave.
dropped() { ip netns exec wge-n1 curl -s http://127.0.0.1:9586/metrics | awk '/^wgmesh_unencrypted_packets_dropped_total/{print $2}'; }
nft_dropped() { ip netns exec wge-n1 nft -j list counter inet wgmesh unencrypted | jq '[.nftables[].counter? | select(.) | .packets] | first // 0'; }
sleep 4
base=$(dropped); nft_base=$(nft_dropped)
counted() { local d; d=$(dropped); [ -n "$d" ] && [ "${d%.*}" -gt "${base%.*}" ]; }
tries=0; answered_tries=0
leak_try() {
  tries=$((tries + 1))
  ip -n wge-n1 route del $clusterv4 proto 0x57 2>/dev/null
  if ip netns exec wge-n1-p1 ping -c 1 -W 1 "$dst"; then answered_tries=$((answered_tries + 1)); return 1; fi  # it left in the clear
  counted || { sleep 2; counted; }
}
ip netns exec wge-n1 tcpdump -i eth0 -nn -U -w "$work/strict.pcap" "host $dst" 2>"$work/strict-capture.txt" &
strict_capture=$!
sleep 1
wait_for 30 leak_try; strict_rc=$?
sleep 1; kill -INT $strict_capture; wait $strict_capture
left=$(packets "$work/strict.pcap")
dropped=$(dropped); nft_now=$(nft_dropped)
if [ $gone_rc = 0 ] && [ $unreachable != 0 ] && [ $strict_rc = 0 ] && [ $answered_tries = 0 ] && [ "$left" = 0 ] \
  && [ "$((nft_now - nft_base))" -ge 1 ]; then
  result strict ok "n2 without keys: its peer and routes are gone, its Pods unreachable; $tries pings with wgmesh's route deleted, none answered, none on n1's underlay; nftables dropped $((nft_now - nft_base)) packets instead of letting them leave unencrypted; wgmesh_unencrypted_packets_dropped_total $base -> $dropped"
else
  result strict fail "peer gone=$gone_rc unreachable=$unreachable; $tries pings with wgmesh's route deleted, $answered_tries answered, $left packets to $dst on n1's underlay; nftables counter $nft_base -> ${nft_now:-none}, metric ${base:-none} -> ${dropped:-none}"
fi
start_controller
recovered() { [ -n "$(annotation n2 public-key)" ] && [ "$(annotation n2 applied-key-generation)" = "$(annotation n2 key-generation)" ] \
  && ip netns exec wge-n1-p1 ping -c 1 -W 1 "$dst" >/dev/null 2>&1; }
if wait_for 60 recovered; then
  result rejoin ok "the controller issued n2 a new keypair and n1's Pods reach n2's again"
else
  result rejoin fail "n2 did not come back"
fi

# --- the device's own wireguard-go killed (a crash): userspace-device starts a new, empty one, and the agent
# re-applies the configuration when its link goes and comes (rtnetlink), not at the next resync. While the tun
# device is gone its routes are too, and nftables drops what would leave unencrypted: so this runs after the
# checks that want no such drop in `wgmesh audit` ---
if [ "$wireguard_go" = device ] && [ "$backend" = userspace ]; then
  ping_start device-restart wge-n1-p1 "$dst"
  sleep 0.5
  old_wg=$(wg_go_of "$device_n1")
  kill -KILL $old_wg
  replaced() { local w; w=$(wg_go_of "$device_n1"); [ -n "$w" ] && [ "$w" != "$old_wg" ] && ip netns exec wge-n1-p1 ping -c 1 -W 1 "$dst"; }
  wait_for 60 replaced; replaced_rc=$?
  sleep 1
  ping_stop device-restart; ping_goal device-restart reported
  new_wg=$(wg_go_of "$device_n1")
  goal timing "wireguard-go killed: silence" "$(met [ "$ping_silence" -lt 3000 ])" "$ping_silence ms, $ping_lost lost" "< 3 s"
  if [ $replaced_rc = 0 ] && [ "$ping_back" = 1 ]; then
    result device-restart ok "n1's wireguard-go (pid $old_wg) killed: userspace-device started pid $new_wg and the agent re-applied its configuration under a 10 ms Pod-to-Pod ping: $ping_figures"
  else
    result device-restart fail "n1's wireguard-go (pid $old_wg) killed: now ${new_wg:-none}; ping: $ping_figures; $(tail -3 "$work/n1/agent.log")"
  fi
fi

# --- deleting a Node removes its peer and routes on the other nodes ---
n3cidrs=$(annotation n3 pod-cidrs)
delete_node n3
forgotten() {
  for n in n1 n2; do
    [ "$(peer_count "$n")" -eq 1 ] || return 1
    for c in ${n3cidrs//,/ }; do ip -n "wge-$n" route show "$c" proto 0x57 | grep -q . && return 1; done
  done
  return 0
}
if wait_for 20 forgotten; then
  result node-deleted ok "deleting Node n3 removed its peer and its routes ($n3cidrs) on n1 and n2"
else
  result node-deleted fail "n3 still configured on n1 or n2"
fi

# --- interop: a node on the userspace backend joins the kernel nodes' mesh ---
if [ "$backend" = kernel ] && command -v wireguard-go >/dev/null; then
  # wireguard-go needs a tun device; the guest kernel has the module but no device node yet.
  [ -c /dev/net/tun ] || modprobe tun
  node_namespace n4 4
  register_node n4 192.0.2.4
  mkdir -p "$work/n4"
  ip netns exec wge-n4 "$bin/wgmesh" agent --kubeconfig "$work/kubeconfig.agent-n4" --node-name n4 --backend userspace --interface wgm-n4 \
    --cluster-cidr $clusterv4 --cluster-cidr $clusterv6 --state-dir "$work/n4/state" --cni-conf-dir "$work/n4/cni" \
    --metrics-bind-address 127.0.0.1:9586 --resync-period 3s >>"$work/n4/agent.log" 2>&1 &
  pids+=($!)
  joined() { [ "$(annotation n4 applied-key-generation)" = "$(annotation n4 key-generation)" ] && [ -n "$(annotation n4 key-generation)" ] \
    && [ -f "$work/n4/cni/10-wgmesh.conflist" ]; }
  if wait_for 60 joined && cni_add n4 p1; then
    n4ip=$(head -1 "$work/n4/p1.ips"); n1ip=$(head -1 "$work/n1/p1.ips")
    wait_for 20 ip netns exec wge-n1-p1 ping -c 1 -W 1 "$n4ip"; a=$?
    ip netns exec wge-n4-p1 ping -c 3 -W 2 "$n1ip" >/dev/null 2>&1; b=$?
    if [ $a = 0 ] && [ $b = 0 ]; then
      result interop ok "n4 on wireguard-go and n1 on kernel WireGuard reach each other's Pods ($n1ip <-> $n4ip)"
    else
      result interop fail "n1->n4 rc=$a, n4->n1 rc=$b"
    fi
  else
    result interop fail "n4 (userspace) did not join: $(tail -3 "$work/n4/agent.log")"
  fi
fi

# --- the leak check over everything so far ---
capture_check

goals_table
echo "e2e-$backend: $passes passed, $failures failed"
[ $failures -eq 0 ]
