#!/usr/bin/env bash
# Builds the guest-kit initramfs (busybox-static + init + a facts file the
# kernel test module reads back to prove the initrd was loaded), cached in
# ~/.cache/mvisor/initramfs-<hash>.cpio by a hash of its inputs. Uncompressed,
# so that a test can append a second archive with its /test.sh
# (test/helpers/guest-kit.ts) and the kernel unpacks both.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${MVISOR_CACHE:-$HOME/.cache/mvisor}
bb=/bin/busybox
if [ ! -x "$bb" ] || ! file -L "$bb" 2>/dev/null | grep -q static; then
  [ -x /usr/bin/busybox ] && bb=/usr/bin/busybox
fi
if [ ! -x "$bb" ]; then
  echo "build-initramfs: busybox missing (apt-get install busybox-static)" >&2
  exit 1
fi
bbver=$(dpkg-query -W -f='${Version}' busybox-static 2>/dev/null || sha256sum "$bb" | cut -c1-16)
hash=$( (echo "$bbver"; cat "$here/build-initramfs.sh" "$here/initramfs/init") | sha256sum | cut -c1-16)
out="$cache/initramfs-$hash.cpio"
if [ -f "$out" ]; then
  echo "$out"
  exit 0
fi
mkdir -p "$cache"
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/dev"
cp "$bb" "$root/bin/busybox"
cp "$here/initramfs/init" "$root/init"
echo "mvisor-initramfs-$hash" > "$root/mvisor-facts"
(cd "$root" && find . | LC_ALL=C sort | cpio --quiet -o -H newc --reproducible) > "$out.tmp"
mv "$out.tmp" "$out"
echo "$out"
