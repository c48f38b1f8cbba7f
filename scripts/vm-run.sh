#!/usr/bin/env bash
# Boot the WireGuard-capable Debian kernel once (virtme-ng under qemu, see docs/testing.md
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
# The guest kernel's log, kept in the shared folder as it is written: if the guest dies (an OOM kill of
# its init, a panic), what it last said is on the host.
dmesg -w > "$out/dmesg" 2>&1 &
dmesg -n 4 2>/dev/null || true   # errors and worse (a panic, an OOM kill) on the console as well
( $1 ) > "$out/log" 2>&1
echo \$? > "$out/rc"
GUEST

cd "$root"
# A guest that dies before the command ends (seen rarely: vng exits within seconds, printing nothing, or
# exits with 255 in the middle of a run, with nothing on the console) is booted once more and the command
# run again from the start; what the first guest printed is shown first, and says so.
evidence() {
  echo "vm-run: $1 (vng exit status $status); last console lines:" >&2
  tail -n 40 "$out/console" | tr -d '\r' >&2
  [ -f "$out/log" ] && { echo "vm-run: the command's last lines:" >&2; tail -n 20 "$out/log" >&2; }
  [ -f "$out/dmesg" ] && { echo "vm-run: the guest kernel's last lines:" >&2; tail -n 40 "$out/dmesg" >&2; }
  return 0
}
for attempt in 1 2; do
  rm -f "$out/log" "$out/rc" "$out/dmesg"
  status=0
  PATH="$vm/bin:$vm/venv/bin:$PATH" timeout "${WGMESH_VM_TIMEOUT:-2400}" \
    vng --disable-kvm --cpus "${WGMESH_VM_CPUS:-2}" --memory "${WGMESH_VM_MEMORY:-2G}" \
        --busybox "$vm/busybox" --rwdir="$out" --run "$kernel" \
        --exec "sh $out/guest.sh" </dev/null >"$out/console" 2>&1 || status=$?
  [ -f "$out/rc" ] && break
  [ "$status" = 124 ] && { evidence "the guest ran past ${WGMESH_VM_TIMEOUT:-2400} s"; exit 1; }
  if [ -f "$out/log" ]; then what="guest $attempt died before the command ended"; else what="boot $attempt did not start the command"; fi
  evidence "$what"
  [ "$attempt" = 2 ] && exit 1
  echo "vm-run: booting again and running the command from the start" >&2
done
cat "$out/log"
exit "$(cat "$out/rc")"
