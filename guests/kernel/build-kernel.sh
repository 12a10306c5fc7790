#!/usr/bin/env bash
# Builds the guest-kit kernel from Debian's linux-source-6.1, cached under
# ~/.cache/mvisor/kernel-<hash> where the hash covers every input (this
# recipe version, the config fragment, the test module and the exact
# linux-source package version). Prints the cache directory on stdout.
# Debian's source, unpatched: the patches the kit once needed (no int3
# self-test, no fwait) were for a KVM that emulated guest kernel code.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${MVISOR_CACHE:-$HOME/.cache/mvisor}
src_tar=/usr/src/linux-source-6.1.tar.xz
if [ ! -f "$src_tar" ]; then
  echo "build-kernel: $src_tar missing (apt-get install linux-source-6.1)" >&2
  exit 1
fi
srcver=$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null || stat -c %s "$src_tar")
# Bump when the build steps below change what they produce.
recipe=3
hash=$( (echo "$srcver recipe $recipe"; cat "$here/fragment.config" "$here/mvisor_test.c") | sha256sum | cut -c1-16)
out="$cache/kernel-$hash"
if [ -f "$out/vmlinux" ] && [ -f "$out/bzImage" ]; then
  echo "$out"
  exit 0
fi
mkdir -p "$cache"
# One build at a time (tests and make may ask together): wait for the other.
exec 9>"$cache/.kernel-build.lock"
flock 9
if [ -f "$out/vmlinux" ] && [ -f "$out/bzImage" ]; then
  echo "$out"
  exit 0
fi
work=$(mktemp -d "$cache/kbuild.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "build-kernel: building into $out (about 10 minutes on 2 cores)" >&2
tar xJf "$src_tar" -C "$work"
cd "$work/linux-source-6.1"
cp "$here/mvisor_test.c" drivers/misc/mvisor_test.c
echo 'obj-y += mvisor_test.o' >> drivers/misc/Makefile
make -s tinyconfig >&2
./scripts/kconfig/merge_config.sh -m .config "$here/fragment.config" >/dev/null
make -s olddefconfig >&2
# Every =y of the fragment must survive olddefconfig (a dropped dependency
# would silently remove a driver the tests rely on).
missing=$(grep -E '^CONFIG_[A-Z0-9_]+=y' "$here/fragment.config" | while read -r l; do grep -qx "$l" .config || echo "$l"; done)
if [ -n "$missing" ]; then
  echo "build-kernel: options dropped by olddefconfig:" $missing >&2
  exit 1
fi
# The test module first: a mistake in it fails in a minute, not after the whole kernel.
make -s -j"$(nproc)" drivers/misc/mvisor_test.o >&2
make -s -j"$(nproc)" vmlinux bzImage >&2
mkdir -p "$out.tmp"
cp vmlinux "$out.tmp/vmlinux"
cp arch/x86/boot/bzImage "$out.tmp/bzImage"
cp .config "$out.tmp/config"
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out"
