#!/usr/bin/env bash
# Builds (or finds in ~/.cache/mvisor) every guest the tests and the demo
# use, and prints their paths as shell assignments:
#   MVISOR_KERNEL=... MVISOR_BZIMAGE=... MVISOR_INITRAMFS=...
# and links them as ~/.cache/mvisor/guest-kit/{vmlinux,bzImage,initramfs.cpio}.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
kdir=$("$here/kernel/build-kernel.sh")
initrd=$("$here/build-initramfs.sh")
# Stable names for the demo and for people: ~/.cache/mvisor/guest-kit/*
cache=${MVISOR_CACHE:-$HOME/.cache/mvisor}
# (Only when they change: inside the nested test host the cache is read-only.)
link() { [ "$(readlink "$2" 2>/dev/null)" = "$1" ] || { mkdir -p "$(dirname "$2")" && ln -sfn "$1" "$2"; }; }
link "$kdir/vmlinux" "$cache/guest-kit/vmlinux"
link "$kdir/bzImage" "$cache/guest-kit/bzImage"
link "$initrd" "$cache/guest-kit/initramfs.cpio"
echo "MVISOR_KERNEL=$kdir/vmlinux"
echo "MVISOR_BZIMAGE=$kdir/bzImage"
echo "MVISOR_INITRAMFS=$initrd"
