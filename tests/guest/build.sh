#!/bin/sh
# Build the tiny bootable test guest: a Debian cloud kernel plus a busybox
# initramfs on a whole-disk FAT image booted by syslinux, converted to qcow2.
#
#   tests/guest/build.sh [OUTPUT]      default: <repo>/.state/guest/tiny.qcow2
#
# The disk is 33 MiB: a 32 MiB FAT filesystem, then 1 MiB that belongs to no
# filesystem (bytes 32 MiB..33 MiB, sectors 65536..67583) for tests to write raw
# markers into with dd from the guest's shell (tests/guest/serial.py). Keep
# DISK_RESERVED_* in tests/guest/guest.py in step with FS_MIB and RESERVED_MIB.
#
# No root and no mounts needed. The result is cached: nothing is done when
# OUTPUT exists and is newer than this script. Downloaded .deb files are kept in
# $(dirname OUTPUT)/cache (override with WEBVIRT_GUEST_CACHE).
set -eu

SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
SCRIPT="$SCRIPT_DIR/$(basename "$0")"
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
OUT=${1:-$REPO/.state/guest/tiny.qcow2}
case $OUT in /*) ;; *) OUT=$(pwd)/$OUT ;; esac
OUT_DIR=$(dirname "$OUT")
CACHE=${WEBVIRT_GUEST_CACHE:-$OUT_DIR/cache}

if [ -f "$OUT" ] && [ "$OUT" -nt "$SCRIPT" ]; then
    echo "tiny guest: up to date: $OUT"
    exit 0
fi

for tool in dpkg-deb cpio gzip mkfs.fat mcopy syslinux qemu-img; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "tiny guest: missing tool: $tool (packages: dpkg cpio gzip dosfstools mtools syslinux qemu-utils)" >&2
        exit 1
    }
done
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] && ! LC_ALL=C grep -q '/lib64/ld-linux-x86-64.so' "$BUSYBOX" \
    || { echo "tiny guest: need a static $BUSYBOX (package busybox-static)" >&2; exit 1; }

mkdir -p "$OUT_DIR" "$CACHE"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/webvirt-guest.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM

# --- kernel ------------------------------------------------------------------
# linux-image-cloud-amd64 is a metapackage; its dependency is the real kernel.
PKG=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null \
      | sed -n 's/^ *Depends: *\(linux-image-[0-9].*-cloud-amd64\) *$/\1/p' | head -n1 || true)
DEB=
if [ -n "$PKG" ]; then
    DEB=$(ls "$CACHE/${PKG}_"*.deb 2>/dev/null | sort -V | tail -n1 || true)
    if [ -z "$DEB" ]; then
        echo "tiny guest: downloading $PKG"
        if ! (cd "$CACHE" && apt-get download "$PKG" 2>/dev/null); then
            if [ "$(id -u)" = 0 ]; then
                apt-get update -qq
                (cd "$CACHE" && apt-get download "$PKG")
            else
                echo "tiny guest: apt-get download $PKG failed (apt-get update needs root)" >&2
                exit 1
            fi
        fi
        DEB=$(ls "$CACHE/${PKG}_"*.deb 2>/dev/null | sort -V | tail -n1)
    fi
else
    # apt metadata unavailable: fall back to any cached cloud kernel.
    DEB=$(ls "$CACHE"/linux-image-*-cloud-amd64_*.deb 2>/dev/null | sort -V | tail -n1 || true)
fi
[ -n "$DEB" ] && [ -f "$DEB" ] || { echo "tiny guest: no cloud kernel package found" >&2; exit 1; }
echo "tiny guest: kernel package $(basename "$DEB")"

# Only the kernel and the few modules the guest needs; the cloud kernel builds
# all of them as modules (none is in its modules.builtin), and the .deb has no
# modules.dep, so /init loads them with insmod in the order given here:
#   ACPI power button: evdev, button (no dependencies);
#   the virtio disk /dev/vda: virtio_ring; virtio (needs virtio_ring);
#   virtio_pci_modern_dev, virtio_pci_legacy_dev; virtio_pci (needs the four
#   before it); virtio_blk (needs virtio, virtio_ring). The six virtio modules
#   add 270 KiB to the initramfs, 70 KiB gzipped.
#   a cloud-init seed on an IDE CD-ROM (machine 'pc': the PIIX controller that
#   webvirt.virt.seed.attach puts the seed on; the cloud kernel has no AHCI, so
#   not SATA on q35): scsi_common; scsi_mod (needs scsi_common); libata (needs
#   scsi_mod, scsi_common); ata_piix (needs libata), which finds the drives.
#   Then, in CDROM_MODULES, only when ata_piix found a CD-ROM drive: cdrom;
#   sr_mod (needs scsi_mod, cdrom, scsi_common), its /dev/sr0; isofs (needs
#   cdrom), the filesystem. These seven add 1.7 MiB to the initramfs, 0.6 MiB
#   gzipped; loading the first four (and ata_piix's probe) adds about 0.4 s to
#   every boot, the last three 0.1 s more to one with a CD-ROM.
MODULES="drivers/input/evdev drivers/acpi/button
         drivers/virtio/virtio_ring drivers/virtio/virtio
         drivers/virtio/virtio_pci_modern_dev drivers/virtio/virtio_pci_legacy_dev
         drivers/virtio/virtio_pci drivers/block/virtio_blk
         drivers/scsi/scsi_common drivers/scsi/scsi_mod drivers/ata/libata drivers/ata/ata_piix"
CDROM_MODULES="drivers/cdrom/cdrom drivers/scsi/sr_mod fs/isofs/isofs"
set -- './boot/vmlinuz-*'
for m in $MODULES $CDROM_MODULES; do set -- "$@" "*/kernel/$m.ko"; done
mkdir -p "$WORK/pkg"
dpkg-deb --fsys-tarfile "$DEB" | tar -x -C "$WORK/pkg" --wildcards "$@"
VMLINUZ=$(ls "$WORK"/pkg/boot/vmlinuz-* | head -n1)

# --- initramfs ---------------------------------------------------------------
R=$WORK/root
mkdir -p "$R/bin" "$R/sbin" "$R/dev" "$R/proc" "$R/sys" "$R/tmp" "$R/root" "$R/mnt" \
         "$R/etc/acpi/PWRF" "$R/lib/modules" "$R/var/run" "$R/var/log"
cp "$BUSYBOX" "$R/bin/busybox"
ln -s busybox "$R/bin/sh"
find "$WORK/pkg/lib/modules" -name '*.ko' -exec cp {} "$R/lib/modules/" \;
# /init loads them in this (dependency) order.
for m in $MODULES; do echo "${m##*/}"; done > "$R/lib/modules/order"
for m in $CDROM_MODULES; do echo "${m##*/}"; done > "$R/lib/modules/order-cdrom"

# Flush the guest's writes to its disk and drop its caches, so that a read after
# it shows what is on the disk rather than what the guest remembers.
cat > "$R/bin/flush-disk" <<'FLUSH'
#!/bin/sh
sync
echo 3 > /proc/sys/vm/drop_caches
FLUSH
chmod 755 "$R/bin/flush-disk"

cat > "$R/etc/acpi/PWRF/00000080" <<'ACPI'
#!/bin/sh
echo "WEBVIRT-GUEST-POWEROFF" > /dev/ttyS0
echo "Power button pressed: powering off" > /dev/tty0
sync
poweroff -f
ACPI
chmod 755 "$R/etc/acpi/PWRF/00000080"

cat > "$R/etc/profile" <<'PROFILE'
export PATH=/bin:/sbin
export PS1='\h:\w# '
PROFILE

cat > "$R/init" <<'INIT'
#!/bin/sh
# PID 1 of the webvirt tiny test guest.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
exec </dev/console >/dev/console 2>&1

hostname webvirt-tiny
while read -r module; do insmod "/lib/modules/$module.ko" 2>/dev/null; done < /lib/modules/order
# A CD-ROM drive on the IDE bus is a SCSI device of type 5 once ata_piix is loaded.
if grep -qx 5 /sys/bus/scsi/devices/*/type 2>/dev/null; then
    while read -r module; do insmod "/lib/modules/$module.ko" 2>/dev/null; done < /lib/modules/order-cdrom
fi
acpid -c /etc/acpi -l /var/log/acpid.log
# virtio_blk probes asynchronously: READY promises /dev/vda to tests (up to 5 s).
i=0
while [ ! -b /dev/vda ] && [ $i -lt 50 ]; do usleep 100000; i=$((i + 1)); done
disk=none
[ -b /dev/vda ] && disk=/dev/vda

# A cloud-init NoCloud seed: the CD-ROM labelled cidata (webvirt.virt.seed). insmod returns only once
# a module's probing is done (the kernel waits for its async work), so a CD-ROM drive, if the machine
# has one, is /dev/sr* by now, and a machine without one waits for nothing. busybox's findfs knows no
# ISO 9660, so the label is read from the primary volume descriptor (sector 16, bytes 40-71); a drive
# whose medium cannot be read yet is given up to 5 s. What is read then: instance-id and
# local-hostname from meta-data (one pair of YAML quotes removed), and the number of SSH keys in
# user-data, counted as the list items anywhere in it that start with ssh-, ecdsa- or sk- (block-style
# lists, one key a line, as webvirt writes them; keys in a flow-style [a, b] list are not counted).
iso_label() { dd if="$1" bs=1 skip=32808 count=32 2>/dev/null | tr -d ' ' | tr A-Z a-z; }
find_seed() {  # prints the seed's device; fails while a drive is unreadable and none is the seed
    unread=0
    for dev in /dev/sr*; do
        label=$(iso_label "$dev")
        [ "$label" = cidata ] && echo "$dev" && return 0
        [ -z "$label" ] && unread=1
    done
    [ $unread = 0 ]
}
seed="none"
cidata=
if ls /dev/sr* >/dev/null 2>&1; then
    i=0
    while ! cidata=$(find_seed) && [ $i -lt 50 ]; do usleep 100000; i=$((i + 1)); done
fi
if [ -n "$cidata" ] && mkdir -p /mnt/seed && mount -t iso9660 -o ro "$cidata" /mnt/seed; then
    meta() { sed -n "s/^$1:[[:space:]]*//p" /mnt/seed/meta-data | head -n1 | sed "s/^\(['\"]\)\(.*\)\1\$/\2/"; }
    instance_id=$(meta instance-id)
    seed_hostname=$(meta local-hostname)
    keys=$(grep -cE "^[[:space:]]*-[[:space:]]+['\"]?(ssh-|ecdsa-|sk-)" /mnt/seed/user-data)
    [ -n "$seed_hostname" ] && hostname "$seed_hostname"
    seed="instance-id=$instance_id hostname=$seed_hostname keys=$keys"
    umount /mnt/seed
fi

uuid=$(cat /sys/class/dmi/id/product_uuid 2>/dev/null || echo unknown)
{
    printf '\033[2J\033[H\n'
    echo ' #     # ####### ######  #     # ### ######  #######'
    echo ' #  #  # #       #     # #     #  #  #     #    #'
    echo ' #  #  # #####   ######  #     #  #  ######     #'
    echo ' #  #  # #       #     #  #   #   #  #   #      #'
    echo '  ## ##  ####### ######    ###   ### #    #     #'
    echo
    echo '   WEBVIRT TINY GUEST'
    echo
    echo "   hostname: $(hostname)"
    echo "   uuid:     $uuid"
    echo "   kernel:   $(uname -r)"
    echo
} > /dev/tty0

# A root shell on tty1 (VNC) as well, so keystrokes sent over VNC show up. Each start of it is
# announced on the serial port: ^C at its prompt ends it, so a test can see that Ctrl+C arrived.
( while :; do echo "WEBVIRT-TTY1-SHELL" > /dev/ttyS0; setsid -c sh -l </dev/tty1 >/dev/tty1 2>&1; done ) &

stty -F /dev/ttyS0 115200 sane 2>/dev/null
echo "WEBVIRT-SEED $seed" > /dev/ttyS0
echo "WEBVIRT-GUEST-READY hostname=$(hostname) uuid=$uuid disk=$disk" > /dev/ttyS0
# Interactive shell with job control on the serial port, respawned forever.
while :; do
    setsid -c sh -l </dev/ttyS0 >/dev/ttyS0 2>&1
    sleep 1
done
INIT
chmod 755 "$R/init"

(cd "$R" && find . | sort | cpio -o -H newc -R 0:0 --quiet) | gzip -9 > "$WORK/initrd.gz"

# --- disk: whole-disk FAT + syslinux -----------------------------------------
cat > "$WORK/syslinux.cfg" <<'CFG'
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  KERNEL vmlinuz
  APPEND initrd=initrd.gz console=tty0 console=ttyS0,115200 no_timer_check consoleblank=0 quiet
CFG

# The filesystem is FS_MIB (given to mkfs.fat in 1 KiB blocks); the file grows by
# RESERVED_MIB of zeros only after mcopy, so that mtools never sees a file longer
# than its filesystem (it warns) and nothing can write past the filesystem.
FS_MIB=32
RESERVED_MIB=1
IMG=$WORK/disk.img
truncate -s ${FS_MIB}M "$IMG"
mkfs.fat -n WEBVIRT "$IMG" $((FS_MIB * 1024)) >/dev/null
syslinux --install "$IMG"
export MTOOLS_SKIP_CHECK=1
mcopy -i "$IMG" "$VMLINUZ" ::vmlinuz
mcopy -i "$IMG" "$WORK/initrd.gz" ::initrd.gz
mcopy -i "$IMG" "$WORK/syslinux.cfg" ::syslinux.cfg
truncate -s $((FS_MIB + RESERVED_MIB))M "$IMG"

qemu-img convert -f raw -O qcow2 -o compat=1.1 "$IMG" "$WORK/tiny.qcow2"
mv -f "$WORK/tiny.qcow2" "$OUT"
echo "tiny guest: built $OUT ($(du -k "$OUT" | cut -f1) KiB)"
