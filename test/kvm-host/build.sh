#!/usr/bin/env bash
# Builds the nested KVM test host (see README.md, "Machines without /dev/kvm"):
# Debian's own kernel package and busybox-static, nothing else. Cached in
# ~/.cache/mvisor/kvm-host-<hash>/ keyed by the kernel package and version,
# busybox's version and this recipe (build.sh, init). Prints the directory:
#   vmlinuz     the kernel (boots with -kernel)
#   initrd.gz   busybox, init and the modules below with their dependencies
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${MVISOR_CACHE:-$HOME/.cache/mvisor}

# Modules the test host can load: the first line always (9p root, KVM), the
# rest when a boot asks for them (mvhost.modules=...).
core_modules="virtio_pci 9pnet_virtio 9p kvm-amd"
extra_modules="virtio_net tun veth bridge vfio-pci vfio_iommu_type1 overlay"

pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [ -z "$pkg" ]; then
  apt-get update -qq >&2
  pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
fi
kver=${pkg#linux-image-}
pkgver=$(apt-cache policy "$pkg" | awk '/Candidate:/ {print $2}')
bb=/bin/busybox
file -L "$bb" 2>/dev/null | grep -q 'statically linked' || {
  echo "kvm-host: a static busybox is needed (apt-get install busybox-static)" >&2
  exit 1
}
bbver=$(dpkg-query -W -f='${Version}' busybox-static)
hash=$( (echo "$pkg $pkgver $bbver $core_modules $extra_modules"; cat "$here/build.sh" "$here/init") | sha256sum | cut -c1-16)
out="$cache/kvm-host-$hash"
if [ -f "$out/vmlinuz" ] && [ -f "$out/initrd.gz" ]; then
  echo "$out"
  exit 0
fi
mkdir -p "$cache"
exec 9>"$cache/.kvm-host-build.lock"
flock 9
if [ -f "$out/vmlinuz" ] && [ -f "$out/initrd.gz" ]; then
  echo "$out"
  exit 0
fi
work=$(mktemp -d "$cache/kvm-host-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "kvm-host: building from $pkg $pkgver and busybox-static $bbver" >&2
(cd "$work" && apt-get download "$pkg=$pkgver" >/dev/null 2>&1) || {
  apt-get update -qq >&2
  (cd "$work" && apt-get download "$pkg=$pkgver" >&2)
}
dpkg-deb -x "$work"/linux-image-*.deb "$work/pkg"
depmod -b "$work/pkg" "$kver"
mods="$work/pkg/lib/modules/$kver"
root="$work/root"
mkdir -p "$root/bin" "$root/modules" "$root/proc" "$root/sys" "$root/dev" "$root/mnt" "$root/tmp"
cp "$bb" "$root/bin/busybox"
cp "$here/init" "$root/init"
chmod +x "$root/init"
# One file per module: the .ko files to insmod in order (dependencies first).
for m in $core_modules $extra_modules; do
  modprobe -d "$work/pkg" -S "$kver" --show-depends "$m" | awk '$1 == "insmod" {print $2}' | while read -r ko; do
    base=$(basename "$ko")
    cp -n "$ko" "$root/modules/$base"
    echo "$base"
  done > "$root/modules/$m.list"
done
echo "$core_modules" > "$root/modules/core"
mkdir -p "$work/out"
cp "$work/pkg/boot/vmlinuz-$kver" "$work/out/vmlinuz"
(cd "$root" && find . | LC_ALL=C sort | cpio --quiet -o -H newc --reproducible | gzip -1) > "$work/out/initrd.gz"
echo "$pkg $pkgver busybox-static $bbver" > "$work/out/versions"
rm -rf "$out"
mv "$work/out" "$out"
echo "$out"
