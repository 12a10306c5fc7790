#!/usr/bin/env bash
# Builds (or finds in ~/.cache/mvisor) every guest the tests and the demo
# use, and prints their paths as shell assignments:
#   MVISOR_KERNEL=... MVISOR_BZIMAGE=... MVISOR_INITRAMFS=...
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
kdir=$("$here/kernel/build-kernel.sh")
initrd=$("$here/build-initramfs.sh")
echo "MVISOR_KERNEL=$kdir/vmlinux"
echo "MVISOR_BZIMAGE=$kdir/bzImage"
echo "MVISOR_INITRAMFS=$initrd"
