# SPDX-License-Identifier: BSD-3-Clause
# Debian chroots for the other CI legs (Debian 13 with LibTorch 2.x, and the CUDA compile leg),
# made with debootstrap from Debian's archive and kept between runs on one machine. Meant to be
# sourced after common.sh.
#
#   ensure_chroot DIR SUITE [COMPONENTS]   makes DIR (minbase) unless a finished one is there
#   chroot_packages DIR PKG...             installs the missing PKGs inside DIR
#   in_chroot DIR COMMAND...               runs COMMAND inside DIR, in this repository (mounted
#                                          at the same path), as root
#
# The mounts (/proc, /dev, /sys, the repository) live in a private mount namespace of the one
# command (unshare), so nothing stays mounted when it ends, however it ends.

# Where the chroots live; a later run on the same machine reuses them.
CHROOT_CACHE="${SIMSIAM_CHROOT_CACHE:-/var/cache/simsiam}"
DEBIAN_MIRROR="${SIMSIAM_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

ensure_chroot() {
  local dir="$1" suite="$2" components="${3:-main}"
  [[ -f "$dir/.simsiam-chroot" ]] && return 0
  ensure_packages debootstrap
  echo "== making the $suite chroot in $dir (debootstrap, minbase)"
  local partial="$dir.partial"
  rm -rf "$partial"
  mkdir -p "$(dirname "$dir")"
  debootstrap --variant=minbase --components="$components" "$suite" "$partial" "$DEBIAN_MIRROR"
  # Components past main (contrib, non-free) for apt inside; no recommends, as on the host.
  printf 'deb %s %s %s\n' "$DEBIAN_MIRROR" "$suite" "${components//,/ }" >"$partial/etc/apt/sources.list"
  printf 'APT::Install-Recommends "false";\n' >"$partial/etc/apt/apt.conf.d/99simsiam"
  # Only a finished chroot gets its marker and its final name: an interrupted debootstrap is
  # started again, never reused.
  echo "$suite $components" >"$partial/.simsiam-chroot"
  rm -rf "$dir"
  mv "$partial" "$dir"
}

in_chroot() {
  local dir="$1"
  shift
  cp -L /etc/resolv.conf "$dir/etc/resolv.conf" 2>/dev/null || true
  mkdir -p "$dir$ROOT"
  # The command runs in $ROOT; HOME and the locale are the chroot's own.
  SIMSIAM_CHROOT_DIR="$dir" SIMSIAM_ROOT="$ROOT" unshare --mount --propagation private -- \
    bash -c '
      set -e
      d="$SIMSIAM_CHROOT_DIR"
      mount -t proc proc "$d/proc"
      mount --rbind /dev "$d/dev"
      mount --rbind /sys "$d/sys"
      mount --bind "$SIMSIAM_ROOT" "$d$SIMSIAM_ROOT"
      cd /
      exec chroot "$d" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" SIMSIAM_IN_CHROOT=1 \
        ${SIMSIAM_CHROOT_ENV:-} bash -c "cd \"\$0\" && exec \"\$@\"" "$SIMSIAM_ROOT" "$@"
    ' bash "$@"
}

chroot_packages() {
  local dir="$1"
  shift
  in_chroot "$dir" bash -c "source scripts/common.sh && ensure_packages $*"
}

# The Debian 13 leg: LibTorch 2.6, g++ 14, Catch2 v3, Google Benchmark 1.9.
DEBIAN13_CHROOT="$CHROOT_CACHE/debian13"
ensure_debian13() { ensure_chroot "$DEBIAN13_CHROOT" trixie main; }
