#!/usr/bin/env bash
# Builds the wgmesh container image from this checkout, without a container engine or a registry:
# wgmesh in release with the static Swift stdlib, a minimal Debian root filesystem extracted by
# mmdebstrap from the Debian archive this machine's apt uses, assembled by buildah FROM scratch, and
# written as an OCI archive build/wgmesh-<version>.oci.tar with its digest.
#
# Run as root on Debian (the rootfs is the host's release: the binary links the host's libmnl and
# libnftables). Environment:
#   WGMESH_IMAGE         image name in the archive (default ghcr.io/wgmesh/wgmesh, as manifests/ name it)
#   WGMESH_IMAGE_SOURCE  org.opencontainers.image.source label (default https://github.com/wgmesh/wgmesh)
#   WGMESH_IMAGE_OUT     output directory (default build)
#   WGMESH_DEBIAN_SOURCES  apt sources for the rootfs: a file or a mirror URL (default: the host's
#                        /etc/apt/sources.list.d/debian.sources, else /etc/apt/sources.list)
#   SOURCE_DATE_EPOCH    time stamp of every file and of the image (default: the commit's time)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

image=${WGMESH_IMAGE:-ghcr.io/wgmesh/wgmesh}
source_url=${WGMESH_IMAGE_SOURCE:-https://github.com/wgmesh/wgmesh}
out=${WGMESH_IMAGE_OUT:-build}
# What the binary and the agent need at run time, and nothing else. Their dependencies come with them;
# the ones only their maintainer scripts or a dropped program need are removed again below (drop_packages).
packages=(base-files netbase libc6 libgcc-s1 libstdc++6 zlib1g libmnl0 libnftables1 wireguard-go containernetworking-plugins ca-certificates)
# iptables (and the libraries only it uses): portmap runs iptables on the node, from the node's PATH, not
# the image's. openssl, debconf: ca-certificates' postinst, replaced by the bundle written below.
# mawk: base-files' awk dependency, for its maintainer scripts.
drop_packages=(iptables libip4tc2 libip6tc2 libnetfilter-conntrack3 libnfnetlink0 openssl libssl3 debconf mawk)
# The plugins the agent's CNI configuration runs (bridge with host-local IPAM, portmap) and loopback,
# which the runtime runs for every Pod.
cni_plugins=(bridge host-local portmap loopback)
controller_uid=65532

say() { echo "build-image: $*"; }
fail() { echo "build-image: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "run as root (mmdebstrap and buildah write root-owned files): sudo bash scripts/build-image.sh"
. /etc/os-release
[ "${ID:-}" = debian ] && [ -n "${VERSION_CODENAME:-}" ] ||
  fail "this builds on Debian only (found ${PRETTY_NAME:-unknown}): the image's libraries must be the ones the binary was built against"
suite=$VERSION_CODENAME

need=()
for tool in buildah mmdebstrap skopeo jq; do command -v "$tool" >/dev/null || need+=("$tool"); done
command -v strip >/dev/null || need+=(binutils)
command -v pkg-config >/dev/null || need+=(pkg-config)
pkg-config --exists libmnl 2>/dev/null || need+=(libmnl-dev)
pkg-config --exists libnftables 2>/dev/null || need+=(libnftables-dev)
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

sources=${WGMESH_DEBIAN_SOURCES:-}
if [ -z "$sources" ]; then
  for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
    if [ -s "$f" ]; then sources=$f; break; fi
  done
fi
[ -n "$sources" ] || fail "no Debian apt sources found: set WGMESH_DEBIAN_SOURCES to a mirror, e.g. http://deb.debian.org/debian"

export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
revision=$(git rev-parse HEAD)
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  say "warning: the working tree has uncommitted changes; the image's revision label says ${revision}-dirty"
  revision+=-dirty
fi

say "swift build -c release --static-swift-stdlib --product wgmesh (10 to 20 minutes from scratch on 2 cores)"
swift build -c release --static-swift-stdlib --product wgmesh --scratch-path .build-release
binary=$(swift build -c release --static-swift-stdlib --product wgmesh --scratch-path .build-release --show-bin-path)/wgmesh
[ -x "$binary" ] || fail "the release build made no $binary (see the errors above)"
version=$("$binary" --version)
[[ $version =~ ^[0-9A-Za-z._-]+$ ]] || fail "wgmesh --version printed '$version', which is no image tag"

mkdir -p "$out"
archive=$out/wgmesh-$version.oci.tar
work=$(mktemp -d "$out/.image-XXXXXX")
work=$(cd "$work" && pwd)
buildah_cmd=(buildah --root "$work/storage" --runroot "$work/run" --storage-driver vfs)
container=
cleanup() {
  if [ -n "$container" ]; then "${buildah_cmd[@]}" rm "$container" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
rootfs=$work/rootfs

say "mmdebstrap $suite from $sources: ${packages[*]}"
# extract: the packages' files only, no maintainer scripts, so no shell, no dpkg, no apt in the image.
mmdebstrap --quiet --variant=extract --mode=root --skip=cleanup/apt/cache \
  --setup-hook=/usr/share/mmdebstrap/hooks/merged-usr/setup00.sh \
  --include="$(IFS=,; echo "${packages[*]}")" "$suite" "$rootfs" "$sources" >/dev/null  # (the hook's dpkg talks on stdout)

debs=$rootfs/var/cache/apt/archives
deb_of() { local f=("$debs/$1"_*.deb); [ -e "${f[0]}" ] || fail "mmdebstrap fetched no $1"; echo "${f[0]}"; }

# Remove the dropped packages' files (not their directories, which others may share).
for p in "${drop_packages[@]}"; do
  compgen -G "$debs/${p}_*.deb" >/dev/null || continue
  dpkg-deb --fsys-tarfile "$(deb_of "$p")" | tar -t | while read -r f; do
    f=${f#./}
    case $f in ''|*/) continue ;; esac
    if [ -L "$rootfs/$f" ] || [ ! -d "$rootfs/$f" ]; then rm -f "$rootfs/$f"; fi
  done
done

# The package list a scanner reads (status.d, as distroless images have it), and the versions for the log.
mkdir -p "$rootfs/var/lib/dpkg/status.d"
kept=()
for deb in "$debs"/*.deb; do
  name=$(dpkg-deb -f "$deb" Package)
  [[ " ${drop_packages[*]} " == *" $name "* ]] && continue
  dpkg-deb -f "$deb" > "$rootfs/var/lib/dpkg/status.d/$name"
  kept+=("$name=$(dpkg-deb -f "$deb" Version)")
done
cni_version=$(dpkg-deb -f "$(deb_of containernetworking-plugins)" Version)

# CNI plugins: only the four, where `wgmesh install-cni` looks for them, with the version they do not
# report themselves (Debian's builds print "version unknown").
mkdir -p "$rootfs/opt/wgmesh/cni/bin"
for p in "${cni_plugins[@]}"; do mv "$rootfs/usr/lib/cni/$p" "$rootfs/opt/wgmesh/cni/bin/$p"; done
rm -rf "$rootfs/usr/lib/cni"
echo "$cni_version" > "$rootfs/opt/wgmesh/cni/VERSION"

# The CA bundle update-ca-certificates would make (every certificate of the package, in order).
mkdir -p "$rootfs/etc/ssl/certs"
find "$rootfs/usr/share/ca-certificates" -name '*.crt' | LC_ALL=C sort | xargs cat > "$rootfs/etc/ssl/certs/ca-certificates.crt"
[ -s "$rootfs/etc/ssl/certs/ca-certificates.crt" ] || fail "ca-certificates gave no certificates"

# Users: root for the agent, wgmesh (non-root) for the controller and the image's default.
cat > "$rootfs/etc/passwd" <<EOF
root:x:0:0:root:/root:/usr/sbin/nologin
wgmesh:x:$controller_uid:$controller_uid:wgmesh:/nonexistent:/usr/sbin/nologin
EOF
cat > "$rootfs/etc/group" <<EOF
root:x:0:
wgmesh:x:$controller_uid:
EOF
printf 'passwd: files\ngroup: files\nhosts: files dns\nservices: files\nprotocols: files\n' > "$rootfs/etc/nsswitch.conf"
rm -rf "$rootfs/var/run" && ln -s /run "$rootfs/var/run"

# Not needed at run time: documentation (the copyright files stay: the licences travel with the
# binaries), manual pages, translations, lintian overrides, gcc's gdb helpers; glibc's iconv modules
# for other character sets (8 MB; nothing here converts text); the dhcp plugin's systemd units, the
# motd script and update-ca-certificates (shell scripts, and there is no shell); apt's, dpkg's and
# mmdebstrap's leftovers; the build host's hostname and resolv.conf (the runtime provides both); device
# nodes (the runtime mounts /dev). The package list stays, as status.d above.
find "$rootfs/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
find "$rootfs/usr/share/doc" -mindepth 1 -depth -type d -empty -delete
rm -rf "$rootfs"/usr/share/{man,info,locale,lintian,bug,gdb,gcc} \
  "$rootfs"/var/cache/apt "$rootfs"/var/lib/apt "$rootfs"/etc/apt "$rootfs"/etc/dpkg \
  "$rootfs"/var/log/* "$rootfs"/etc/hostname "$rootfs"/etc/resolv.conf "$rootfs"/etc/fstab \
  "$rootfs"/usr/lib/*-linux-gnu*/gconv "$rootfs"/usr/lib/systemd "$rootfs"/etc/update-motd.d "$rootfs"/usr/sbin/update-ca-certificates \
  "$rootfs"/dev/* "$rootfs"/var/lib/dpkg/{alternatives,info,triggers,updates,status,status-old,arch,available,cmethopt,diversions,statoverride,lock*}

strip --strip-unneeded -o "$rootfs/usr/bin/wgmesh" "$binary"
chmod 0755 "$rootfs/usr/bin/wgmesh"
# Every file as of the commit: mmdebstrap leaves package files at their own times, the rest at now.
find "$rootfs" -newermt "@$SOURCE_DATE_EPOCH" -exec touch --no-dereference --date="@$SOURCE_DATE_EPOCH" {} +
unpacked=$(du -sb --apparent-size "$rootfs" | cut -f1)

say "buildah: FROM scratch, the rootfs, /usr/bin/wgmesh; user $controller_uid"
container=$("${buildah_cmd[@]}" from --quiet scratch)
mount=$("${buildah_cmd[@]}" mount "$container")
cp -a "$rootfs/." "$mount/"
"${buildah_cmd[@]}" umount "$container" >/dev/null
created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
"${buildah_cmd[@]}" config \
  --os linux --arch "$(dpkg --print-architecture)" \
  --entrypoint '["/usr/bin/wgmesh"]' \
  --user "$controller_uid:$controller_uid" --workingdir / \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --label org.opencontainers.image.title=wgmesh \
  --label "org.opencontainers.image.description=WireGuard between Kubernetes Nodes: wgmesh controller, wgmesh agent, wgmesh install-cni" \
  --label "org.opencontainers.image.version=$version" \
  --label "org.opencontainers.image.revision=$revision" \
  --label "org.opencontainers.image.source=$source_url" \
  --label "org.opencontainers.image.created=$created" \
  --label "org.opencontainers.image.base.name=debian:$suite" \
  "$container"
rm -f "$archive"
"${buildah_cmd[@]}" commit --quiet --format oci --disable-compression=false --identity-label=false \
  --timestamp "$SOURCE_DATE_EPOCH" --rm "$container" "oci-archive:$archive:$image:$version" >/dev/null
container=

digest=$(skopeo inspect "oci-archive:$archive" | jq -r .Digest)
echo "$digest" > "$archive.digest"
printf '%s\n' "${kept[@]}" | LC_ALL=C sort > "$out/wgmesh-$version.packages"
# The layer's file list, to compare two builds (scripts/check-image.sh --rebuild does).
layout=$work/layout
mkdir -p "$layout" && tar -xf "$archive" -C "$layout"
manifest=$(jq -r '.manifests[0].digest' "$layout/index.json" | sed 's/^sha256://')
jq -r '.layers[].digest' "$layout/blobs/sha256/$manifest" | sed 's/^sha256://' | while read -r layer; do
  tar -tf "$layout/blobs/sha256/$layer"
done | LC_ALL=C sort > "$out/wgmesh-$version.files"

size=$(stat -c %s "$archive")
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1000000 }'; }
say "image:   $image:$version (revision $revision)"
say "archive: $archive"
say "digest:  $digest"
say "size:    $(mb "$size") archive (compressed), $(mb "$unpacked") unpacked; $(wc -l < "$out/wgmesh-$version.files") files"
say "rootfs:  ${#kept[@]} Debian packages ($out/wgmesh-$version.packages); CNI plugins ${cni_plugins[*]} $cni_version"
