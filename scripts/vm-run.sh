#!/usr/bin/env bash
# Boot the WireGuard-capable Debian kernel once (virtme-ng under qemu, see ../shared/kernel-vm.md
# and scripts/vm-setup.sh) and run one shell command in it as root, with the host's file system.
# Prints the guest's output and exits with the guest command's exit status. The command may write
# files to $WGMESH_VM_OUT (.vm/out), the one folder of the host the guest can write.
# Usage: scripts/vm-run.sh 'command'
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/vm-setup.sh" >/dev/null
vm="$root/.vm"
kernel=$(ls "$vm"/kernel/boot/vmlinuz-* | head -n 1)
out="$vm/out"
rm -rf "$out" && mkdir -p "$out"
swift_bin=$(dirname "$(command -v swift)")

# vng does not carry the guest's output or exit status back reliably without a terminal, so the
# guest writes both into the shared folder $out, and the host reads them from there.
cat > "$out/guest.sh" <<GUEST
export PATH="$swift_bin:\$PATH"
export WGMESH_VM_OUT="$out"   # the only folder the guest can write
cd "$root"
modprobe wireguard
( $1 ) > "$out/log" 2>&1
echo \$? > "$out/rc"
GUEST

cd "$root"
# A boot that never reaches the command (seen rarely: vng exits within seconds, printing nothing) is
# tried once more; the command itself has not run, so running it now is its first run.
for attempt in 1 2; do
  status=0
  PATH="$vm/bin:$vm/venv/bin:$PATH" timeout "${WGMESH_VM_TIMEOUT:-2400}" \
    vng --disable-kvm --cpus "${WGMESH_VM_CPUS:-2}" --memory "${WGMESH_VM_MEMORY:-2G}" \
        --busybox "$vm/busybox" --rwdir="$out" --run "$kernel" \
        --exec "sh $out/guest.sh" </dev/null >"$out/console" 2>&1 || status=$?
  [ -f "$out/log" ] && break
  echo "vm-run: boot $attempt did not start the command (vng exit status $status)" >&2
done
if [ ! -f "$out/rc" ]; then
  echo "vm-run: the guest did not finish (vng exit status $status); last console lines:" >&2
  tail -n 40 "$out/console" | tr -d '\r' >&2
  exit 1
fi
cat "$out/log"
exit "$(cat "$out/rc")"
