#!/usr/bin/env bash
# Prepare (idempotently) a Debian kernel with WireGuard, a static busybox and virtme-ng
# in .vm/ (git-ignored), so scripts/vm-test.sh can boot it under qemu. See docs/testing.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
vm="$root/.vm"
mkdir -p "$vm"
cd "$vm"

need_apt=()
command -v qemu-system-x86_64 >/dev/null || need_apt+=(qemu-system-x86)
command -v depmod >/dev/null || need_apt+=(kmod)  # vng runs depmod; the guest runs modprobe
[ -x /usr/lib/qemu/virtiofsd ] || need_apt+=(qemu-system-x86)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# The kernel: resolve the real package behind the 6.12 cloud meta package, unpack it here.
if [ ! -f kernel.ok ]; then
  meta=linux-image-6.12-cloud-amd64
  pkg=$(apt-cache depends "$meta" | awk '/Depends: linux-image-/{print $2; exit}')
  if [ -z "$pkg" ]; then apt-get update -qq; pkg=$(apt-cache depends "$meta" | awk '/Depends: linux-image-/{print $2; exit}'); fi
  [ -n "$pkg" ] || { echo "vm-setup: cannot resolve $meta with apt-cache depends" >&2; exit 1; }
  rm -rf kernel kdeb && mkdir -p kernel kdeb
  (cd kdeb && apt-get download "$pkg" >/dev/null 2>&1)
  dpkg-deb -x kdeb/*.deb kernel
  rm -rf kdeb
  touch kernel.ok
fi

# A static busybox for the guest's init and tools (ping).
if [ ! -x busybox ]; then
  rm -rf bbdeb && mkdir bbdeb
  (cd bbdeb && apt-get download busybox-static >/dev/null 2>&1)
  dpkg-deb -x bbdeb/*.deb bbdeb/x
  cp bbdeb/x/bin/busybox busybox
  rm -rf bbdeb
fi

# virtme-ng in its own venv.
if [ ! -x venv/bin/vng ]; then
  python3 -m venv venv
  venv/bin/pip install -q virtme-ng==1.42
fi

# Debian 12's virtiofsd is qemu's C one; translate the flags vng passes (kernel-vm.md).
mkdir -p bin
cat > bin/virtiofsd <<'SHIM'
#!/usr/bin/env bash
real=/usr/lib/qemu/virtiofsd
sock="" dir="" cache=auto
for a in "$@"; do
  case "$a" in
    --version|-V|--help|-h) exec "$real" "$a" ;;
    --socket-path=*) sock=${a#*=} ;;
    --shared-dir=*) dir=${a#*=} ;;
    --cache=*) cache=${a#*=} ;;
  esac
done
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --socket-path) sock=${args[i+1]} ;;
    --shared-dir) dir=${args[i+1]} ;;
    --cache) cache=${args[i+1]} ;;
  esac
done
[ -n "$sock" ] && [ -n "$dir" ] || { echo "virtiofsd shim: need --socket-path and --shared-dir" >&2; exit 2; }
"$real" --socket-path="$sock" -o source="$dir" -o cache="$cache" -o sandbox=chroot &
child=$!
echo "$child" > "$sock.pid"
for _ in $(seq 1 200); do [ -S "$sock" ] && break; sleep 0.05; done
wait "$child"
SHIM
chmod +x bin/virtiofsd
echo "vm-setup: ready in $vm"
