#!/usr/bin/env bash
# Install what a fresh Debian machine lacks to build and test wgmesh (idempotent; run as root).
set -euo pipefail
pkgs=()
command -v pkg-config >/dev/null || pkgs+=(pkg-config)
pkg-config --exists libmnl 2>/dev/null || pkgs+=(libmnl-dev)
pkg-config --exists libnftables 2>/dev/null || pkgs+=(libnftables-dev)
# FirewallRulesetTests' `nft -c` check looks for nft in these places (scripts/test.sh makes its skip a failure).
[ -x /usr/sbin/nft ] || [ -x /sbin/nft ] || [ -x /usr/bin/nft ] || pkgs+=(nftables)
[ -x /usr/lib/cni/bridge ] || pkgs+=(containernetworking-plugins)
command -v tcpdump >/dev/null || pkgs+=(tcpdump)
command -v iperf3 >/dev/null || pkgs+=(iperf3)  # scripts/e2e.sh: throughput
command -v curl >/dev/null || pkgs+=(curl)
command -v jq >/dev/null || pkgs+=(jq)
command -v wg >/dev/null || pkgs+=(wireguard-tools)
# UserspaceContractTests and UserspaceDeviceTests look for wireguard-go here (and need root and /dev/net/tun, below).
[ -x /usr/bin/wireguard-go ] || [ -x /usr/sbin/wireguard-go ] || pkgs+=(wireguard-go)
command -v ip >/dev/null || pkgs+=(iproute2)
# Every program a test runs comes from here; scripts/vm-test.sh checks the ones the kernel tests run.
command -v ping >/dev/null || pkgs+=(iputils-ping)
command -v qemu-system-x86_64 >/dev/null || pkgs+=(qemu-system-x86)
command -v depmod >/dev/null || pkgs+=(kmod)
python3 -m venv --help >/dev/null 2>&1 || pkgs+=(python3-venv)
# kubectl renders manifests/ (`kubectl kustomize`); Debian's has kustomize v2 built in, which the manifests keep to.
command -v kubectl >/dev/null || pkgs+=(kubernetes-client)
if [ ${#pkgs[@]} -gt 0 ]; then
  echo "setup: installing ${pkgs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi
# wireguard-go's tun device; a container may lack the node though its kernel has it.
if [ ! -c /dev/net/tun ]; then
  echo "setup: creating /dev/net/tun"
  mkdir -p /dev/net
  if ! mknod -m 666 /dev/net/tun c 10 200; then
    echo "setup: cannot create /dev/net/tun; the wireguard-go tests will fail (scripts/test.sh requires them)" >&2
  fi
fi
# The manifest check's Python tools (kubernetes-validate, a CEL implementation), pinned, in a git-ignored
# venv of the repo's own; installed again only when scripts/requirements-manifests.txt changes.
root=$(cd "$(dirname "$0")/.." && pwd)
venv=$root/.venv-validate
if ! cmp -s "$root/scripts/requirements-manifests.txt" "$venv/requirements.txt" 2>/dev/null; then
  echo "setup: installing scripts/requirements-manifests.txt into .venv-validate"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$root/scripts/requirements-manifests.txt"
  cp "$root/scripts/requirements-manifests.txt" "$venv/requirements.txt"
fi
