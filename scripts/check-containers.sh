#!/usr/bin/env bash
# Runs every container of `kubectl kustomize manifests/` from the image scripts/build-image.sh wrote, as a
# kubelet with containerd and runc would on a node (its user, capabilities, read-only paths, mounts,
# environment and command: scripts/check-containers.py says what is modelled), without a container engine:
# unshare, nsenter and a chroot of the image unpacked with umoci. One network namespace plays the node's
# host network; the test API server listens on its loopback over HTTPS, as the Pods reach it in-cluster
# (KUBERNETES_SERVICE_HOST, the service-account token and ca.crt), with a Node for the stand-in node. The
# init containers must exit 0; the controller and the agent must run and pass their readiness probes. Then,
# as docs/operations.md's uninstall does, the controller and the agent are deleted and manifests/cleanup/ applied: its
# container must leave the node clean (no interface, nftables table, CNI file, enrollment key, agent
# annotation or condition) and keep running.
# Run as root, after scripts/build-image.sh:
#   bash scripts/check-containers.sh [--rendered FILE]... [ARCHIVE]   (default build/wgmesh-$(wgmesh --version).oci.tar)
#     --rendered FILE   rendered manifests to run, each after the workloads of the one before are deleted
#                       (default: kubectl kustomize manifests/, then manifests/cleanup/)
# Environment: WGMESH_TEST_APISERVER, the TestAPIServerTool binary (default: .build/debug, built if missing);
# WGMESH_CHECK_KEEP=1 keeps the work folder (the containers' logs, the stand-in node's files).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

rendered=()
archive=
while [ $# -gt 0 ]; do
  case $1 in
    --rendered) rendered+=("$(realpath "$2")"); shift ;;
    -*) echo "check-containers: unknown option $1 (use --rendered FILE)" >&2; exit 2 ;;
    *) archive=$1 ;;
  esac
  shift
done
fail() { echo "check-containers: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "run as root (namespaces, mounts, chroot): sudo bash scripts/check-containers.sh"
need=()
for tool in umoci jq curl; do command -v "$tool" >/dev/null || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
venv=$root/.venv-validate
[ -x "$venv/bin/python" ] || fail "$venv is missing: run scripts/setup.sh"
[ -c /dev/net/tun ] || fail "this host has no /dev/net/tun (the agent's hostPath CharDevice): modprobe tun"

[ -n "$archive" ] || archive=build/wgmesh-$("$root/.build/debug/wgmesh" --version 2>/dev/null).oci.tar
[ -f "$archive" ] || fail "no archive $archive: build it with: bash scripts/build-image.sh"

apiserver=${WGMESH_TEST_APISERVER:-$root/.build/debug/TestAPIServerTool}
if [ -z "${WGMESH_TEST_APISERVER:-}" ]; then
  out=$(swift build --product TestAPIServerTool 2>&1) || { echo "$out" >&2; fail "swift build --product TestAPIServerTool failed"; }
fi
[ -x "$apiserver" ] || fail "no $apiserver: swift build --product TestAPIServerTool"

work=$(mktemp -d /tmp/wgmesh-check-containers.XXXXXX)
if [ -n "${WGMESH_CHECK_KEEP:-}" ]; then
  trap 'echo "check-containers: kept $work (the containers'"'"' logs: $work/run/pods/*/containers/*/log)"' EXIT
else
  trap 'rm -rf "$work"' EXIT
fi
if [ ${#rendered[@]} = 0 ]; then
  kubectl kustomize manifests/ >"$work/manifests.yaml"
  rendered=("$work/manifests.yaml")
  if [ -f manifests/cleanup/kustomization.yaml ]; then
    kubectl kustomize manifests/cleanup/ >"$work/manifests-cleanup.yaml"
    rendered+=("$work/manifests-cleanup.yaml")
  fi
fi

# The image as check-image.sh unpacks it: its root filesystem and its configuration (User, Env, Entrypoint).
mkdir "$work/layout"
tar -xf "$archive" -C "$work/layout"
jq '.manifests[0].annotations["org.opencontainers.image.ref.name"] = "check"' "$work/layout/index.json" >"$work/index.json"
mv "$work/index.json" "$work/layout/index.json"
umoci unpack --image "$work/layout:check" "$work/bundle" >/dev/null
manifest=$(jq -r '.manifests[0].digest' "$work/layout/index.json" | sed 's/^sha256://')
config=$(jq -r .config.digest "$work/layout/blobs/sha256/$manifest" | sed 's/^sha256://')
cp "$work/layout/blobs/sha256/$config" "$work/image-config.json"
echo "check-containers: $archive (user $(jq -r .config.User "$work/image-config.json")); $(for r in "${rendered[@]}"; do
  printf '%s objects from %s, ' "$(grep -c '^kind:' "$r")" "$(basename "$r")"; done | sed 's/, $//')"

phases=()
for r in "${rendered[@]}"; do phases+=(--rendered "$r"); done
"$venv/bin/python" scripts/check-containers.py run "${phases[@]}" --rootfs "$work/bundle/rootfs" \
  --image-config "$work/image-config.json" --apiserver "$apiserver" --work "$work/run"
