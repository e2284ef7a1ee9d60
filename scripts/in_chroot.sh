#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Runs a command inside one of the test chroots, in this repository (mounted at the same path):
#   scripts/in_chroot.sh debian13 COMMAND...
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$ROOT/scripts/chroot.sh"
case "${1:-}" in
  debian13) shift; ensure_debian13; in_chroot "$DEBIAN13_CHROOT" "$@" ;;
  *) echo "usage: $0 debian13 COMMAND..." >&2; exit 2 ;;
esac
