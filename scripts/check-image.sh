#!/usr/bin/env bash
# Checks the image scripts/build-image.sh wrote, from the inside: unpacks the OCI archive with umoci and
# runs its programs in a chroot of its root filesystem, with an empty environment and nothing of the
# host mounted. Run as root, after scripts/build-image.sh:
#   bash scripts/check-image.sh [build/wgmesh-<version>.oci.tar]
#   bash scripts/check-image.sh --rebuild   also builds the image a second time (minutes: the release
#                                           binary is reused) and compares the two layers' file lists
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

rebuild=false
archive=
for arg in "$@"; do
  case $arg in
    --rebuild) rebuild=true ;;
    -*) echo "check-image: unknown option $arg (use --rebuild)" >&2; exit 2 ;;
    *) archive=$arg ;;
  esac
done
image=${WGMESH_IMAGE:-ghcr.io/wgmesh/wgmesh}
limit=150000000  # bytes unpacked: 150 MB

failures=0
pass() { echo "check-image: ok   $*"; }
bad() { echo "check-image: FAIL $*" >&2; failures=$((failures + 1)); }
fail() { echo "check-image: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "run as root (chroot): sudo bash scripts/check-image.sh"
need=()
for tool in umoci jq; do command -v "$tool" >/dev/null || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ -z "$archive" ]; then
  found=(build/wgmesh-*.oci.tar)
  [ ${#found[@]} = 1 ] && [ -e "${found[0]}" ] ||
    fail "give the archive to check (found ${#found[@]} build/wgmesh-*.oci.tar; build one with: bash scripts/build-image.sh)"
  archive=${found[0]}
fi
[ -f "$archive" ] || fail "no archive $archive: build it with: bash scripts/build-image.sh"
version=$(basename "$archive" .oci.tar)
version=${version#wgmesh-}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/layout"
tar -xf "$archive" -C "$work/layout"
ref=$(jq -r '.manifests[0].annotations["org.opencontainers.image.ref.name"] // empty' "$work/layout/index.json")
if [ "$ref" = "$image:$version" ]; then
  pass "the archive names the image $ref"
else
  bad "the archive names the image '$ref', not $image:$version"
fi
# umoci reads a tag without the registry's colons: give the one manifest a plain one.
jq '.manifests[0].annotations["org.opencontainers.image.ref.name"] = "check"' "$work/layout/index.json" > "$work/index.json"
mv "$work/index.json" "$work/layout/index.json"
umoci unpack --image "$work/layout:check" "$work/bundle" >/dev/null
rootfs=$work/bundle/rootfs
config=$work/config.json
manifest=$(jq -r '.manifests[0].digest' "$work/layout/index.json" | sed 's/^sha256://')
jq -r .config.digest "$work/layout/blobs/sha256/$manifest" | sed 's/^sha256://' | { read -r c; cat "$work/layout/blobs/sha256/$c"; } > "$config"

# Size.
unpacked=$(du -sb --apparent-size "$rootfs" | cut -f1)
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1000000 }'; }
if [ "$unpacked" -lt "$limit" ]; then
  pass "unpacked size $(mb "$unpacked") < $(mb "$limit") (archive $(mb "$(stat -c %s "$archive")"))"
else
  bad "unpacked size $(mb "$unpacked") is not under $(mb "$limit")"
fi

# Runs a program of the image in a chroot of its rootfs, as a container runtime would: no host file, no
# environment, a /proc of its own PID namespace (Swift reads its arguments from /proc/self/cmdline).
# Options before the program go to chroot (--userspec).
in_image() {
  local opts=()
  while [[ $1 == --* ]]; do opts+=("$1"); shift; done
  env -i PATH=/usr/sbin:/usr/bin unshare --mount --pid --fork --mount-proc="$rootfs/proc" chroot "${opts[@]}" "$rootfs" "$@"
}

if out=$(in_image /usr/bin/wgmesh --version 2>&1) && [ "$out" = "$version" ]; then
  pass "wgmesh --version in a chroot of the image: $out"
else
  bad "wgmesh --version in the image: '$out' (want $version)"
fi
if out=$(in_image --userspec=65532:65532 /usr/bin/wgmesh controller --help 2>&1) && [[ $out == *"USAGE: wgmesh controller"* ]]; then
  pass "wgmesh controller --help as uid 65532"
else
  bad "wgmesh controller --help as uid 65532: $out"
fi
for p in bridge host-local portmap loopback; do
  if out=$(in_image "/opt/wgmesh/cni/bin/$p" 2>&1) && [[ $out == "CNI $p plugin "* ]]; then
    pass "/opt/wgmesh/cni/bin/$p runs: ${out%%$'\n'*}"
  else
    bad "/opt/wgmesh/cni/bin/$p: $out"
  fi
done
cni_version=$(cat "$rootfs/opt/wgmesh/cni/VERSION" 2>/dev/null || true)
if [[ $cni_version =~ ^[0-9]+\.[0-9]+\.[0-9]+ ]]; then
  pass "/opt/wgmesh/cni/VERSION: $cni_version"
else
  bad "/opt/wgmesh/cni/VERSION holds '$cni_version'"
fi
if out=$(in_image wireguard-go --version 2>&1) && [[ $out == "wireguard-go v"* ]]; then
  pass "wireguard-go on PATH: ${out%%$'\n'*}"
else
  bad "wireguard-go --version in the image: $out"
fi
if [ -s "$rootfs/etc/ssl/certs/ca-certificates.crt" ] && grep -q "BEGIN CERTIFICATE" "$rootfs/etc/ssl/certs/ca-certificates.crt"; then
  pass "CA bundle: $(grep -c "BEGIN CERTIFICATE" "$rootfs/etc/ssl/certs/ca-certificates.crt") certificates"
else
  bad "no CA bundle at /etc/ssl/certs/ca-certificates.crt"
fi

# The forwarding init container's command, in a network namespace of its own with forwarding off.
if out=$(env -i PATH=/usr/sbin:/usr/bin unshare --net --mount --pid --fork --mount-proc="$rootfs/proc" sh -c '
  f4=/proc/sys/net/ipv4/ip_forward f6=/proc/sys/net/ipv6/conf/all/forwarding
  echo 0 > $f4 && echo 0 > $f6 && chroot "$1" /usr/bin/wgmesh agent --forwarding-only && echo "after: $(cat $f4) $(cat $f6)"' _ "$rootfs" 2>&1) &&
  [ "$(grep -c "forwarding enabled" <<<"$out")" = 2 ] && [[ $out == *"after: 1 1" ]]; then
  pass "wgmesh agent --forwarding-only turned on IPv4 and IPv6 forwarding"
else
  bad "wgmesh agent --forwarding-only in a new network namespace: $out"
fi

# The CNI init container's command, on a stand-in for the node's /opt/cni/bin with a plugin of its own.
mkdir -p "$rootfs/node-cni-bin"
printf '#!/bin/sh\necho "CNI macvlan plugin v9.9.9" >&2\n' > "$rootfs/node-cni-bin/macvlan"
chmod 0755 "$rootfs/node-cni-bin/macvlan"
if out=$(in_image /usr/bin/wgmesh install-cni --to /node-cni-bin 2>&1); then
  listed=$(cd "$rootfs/node-cni-bin" && ls -A | tr '\n' ' ')
  if [ "$listed" = ".wgmesh-cni-plugins bridge host-local loopback macvlan portmap " ] &&
    cmp -s "$rootfs/node-cni-bin/bridge" "$rootfs/opt/wgmesh/cni/bin/bridge" &&
    [ "$(stat -c %a "$rootfs/node-cni-bin/portmap")" = 755 ] &&
    grep -q "^bridge ${cni_version%%+*} " "$rootfs/node-cni-bin/.wgmesh-cni-plugins"; then
    pass "wgmesh install-cni put the four plugins beside the node's own: $listed"
  else
    bad "wgmesh install-cni left: $listed; record: $(cat "$rootfs/node-cni-bin/.wgmesh-cni-plugins" 2>&1); output: $out"
  fi
else
  bad "wgmesh install-cni in the image: $out"
fi

# The image's configuration: who runs, what runs, the labels.
user=$(jq -r .config.User "$config")
uid=${user%%:*}
if [ -n "$uid" ] && [ "$uid" != 0 ] && [ "$uid" != root ] && grep -q "^wgmesh:x:$uid:" "$rootfs/etc/passwd"; then
  pass "default user $user (wgmesh in /etc/passwd), for the controller"
else
  bad "default user is '$user', not a non-root user of /etc/passwd"
fi
if [ "$(jq -c .config.Entrypoint "$config")" = '["/usr/bin/wgmesh"]' ]; then
  pass "entrypoint /usr/bin/wgmesh"
else
  bad "entrypoint $(jq -c .config.Entrypoint "$config")"
fi
if [[ $(jq -r '.config.Env[]' "$config") == *PATH=*/usr/bin* ]]; then
  pass "PATH includes /usr/bin"
else
  bad "PATH: $(jq -c .config.Env "$config")"
fi
for label in version revision source; do
  value=$(jq -r ".config.Labels[\"org.opencontainers.image.$label\"] // empty" "$config")
  if [ -n "$value" ]; then
    pass "label org.opencontainers.image.$label=$value"
  else
    bad "no label org.opencontainers.image.$label"
  fi
done
[ "$(jq -r '.config.Labels["org.opencontainers.image.version"]' "$config")" = "$version" ] || bad "the version label is not $version"
if [ ! -e "$rootfs/bin/sh" ] && [ ! -e "$rootfs/usr/bin/apt" ]; then
  pass "no shell, no apt"
else
  bad "a shell or apt is in the image"
fi

# The manifests, where this checkout has them: every container runs this image, and what it runs is in it.
if [ -f manifests/kustomization.yaml ]; then
  kubectl kustomize manifests/ > "$work/manifests.yaml"
  if problems=$(python3 - "$work/manifests.yaml" "$image:$version" "$rootfs" "$config" <<'PY'
import json, os, sys, yaml
rendered, want, rootfs, config = sys.argv[1:]
entrypoint = json.load(open(config))["config"].get("Entrypoint") or []
count = 0
for o in yaml.safe_load_all(open(rendered)):
    spec = ((o or {}).get("spec") or {}).get("template", {}).get("spec")
    if not spec:
        continue
    for c in spec.get("initContainers", []) + spec.get("containers", []):
        count += 1
        where = f"{o['kind']}/{o['metadata']['name']} {c['name']}"
        if c.get("image") != want:
            print(f"{where}: image {c.get('image')}, not {want}")
        program = (c.get("command") or entrypoint or [""])[0]
        if not os.path.isfile(os.path.join(rootfs, program.lstrip("/"))):
            print(f"{where}: runs {program}, which the image does not have")
if count == 0:
    print("no containers in the rendered manifests")
PY
  ) && [ -z "$problems" ]; then
    pass "kubectl kustomize manifests/: every container runs $image:$version and a program the image has"
  else
    bad "kubectl kustomize manifests/: $problems"
  fi
fi

if $rebuild; then
  first=build/wgmesh-$version.files
  [ -s "$first" ] || fail "no $first: build with scripts/build-image.sh first"
  echo "check-image: building the image a second time into build/rebuild"
  WGMESH_IMAGE_OUT=build/rebuild bash scripts/build-image.sh | sed 's/^/  /'
  second=build/rebuild/wgmesh-$version.files
  if cmp -s "$first" "$second"; then
    pass "two builds list the same $(wc -l < "$first") files"
  else
    bad "two builds list different files:"
    diff "$first" "$second" | head -20 >&2
  fi
  if cmp -s "$archive.digest" "build/rebuild/wgmesh-$version.oci.tar.digest"; then
    echo "check-image: note: the two builds have the same digest, $(cat "$archive.digest")"
  else
    echo "check-image: note: the digests differ ($(cat "$archive.digest") and $(cat "build/rebuild/wgmesh-$version.oci.tar.digest")): the file list is what is promised"
  fi
fi

[ "$failures" = 0 ] || fail "$failures check(s) failed"
echo "check-image: all checks passed for $archive"
