#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# All tests, on both platforms:
#   debian12  this machine: Debian 12, LibTorch 1.13, g++ 12, Catch2 v2 (build/), then the suite
#             again under ASan + UBSan (build-sanitize/)
#   debian13  a Debian 13 chroot made with debootstrap and kept in /var/cache/simsiam: LibTorch
#             2.6, g++ 14, Catch2 v3 (build-debian13/)
#   cross     a checkpoint of each platform resumed on the other equals that platform's own
#             uninterrupted run
# Each leg builds the tests, examples, benchmarks and tools and runs every ctest test (format
# check, consumer builds, PyTorch interop, examples on miniature data). SIMSIAM_LEGS picks legs
# (default "debian12 debian13 cross"); SIMSIAM_SKIP_SANITIZE=1 skips the sanitized pass.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$ROOT/scripts/chroot.sh"
legs="${SIMSIAM_LEGS:-debian12 debian13 cross}"
timings=()
leg_done() { timings+=("$1: $(($SECONDS - $2)) s"); echo "== $1 passed in $(($SECONDS - $2)) s"; }

# The Debian 13 chroot and its packages come over the network while this machine compiles the
# first leg: made in the background, waited for before the second leg.
setup_pid=""
setup_log="$ROOT/build-debian13-setup.log"
if [[ " $legs " == *" debian13 "* ]]; then
  ensure_packages debootstrap
  (ensure_debian13 && SIMSIAM_CHROOT_ENV="SIMSIAM_FORMAT_CHECK=0" in_chroot "$DEBIAN13_CHROOT" \
    bash -c 'source scripts/common.sh && ensure_packages "${TEST_PACKAGES[@]}"') >"$setup_log" 2>&1 &
  setup_pid=$!
fi

if [[ " $legs " == *" debian12 "* ]]; then
  start=$SECONDS
  bash "$ROOT/scripts/test_leg.sh"
  leg_done "debian12 (LibTorch 1.13, g++ 12, Catch2 v2, + ASan/UBSan)" $start
fi

if [[ " $legs " == *" debian13 "* ]]; then
  start=$SECONDS
  if ! wait "$setup_pid"; then
    cat "$setup_log" >&2
    echo "== debian13: could not make the chroot (log above)" >&2
    exit 1
  fi
  echo "== debian13: chroot ready ($(tail -n 1 "$setup_log"))"
  SIMSIAM_CHROOT_ENV="SIMSIAM_BUILD_DIR=$ROOT/build-debian13 SIMSIAM_SKIP_SANITIZE=1 SIMSIAM_FORMAT_CHECK=0" \
    in_chroot "$DEBIAN13_CHROOT" bash scripts/test_leg.sh
  leg_done "debian13 (LibTorch 2.6, g++ 14, Catch2 v3)" $start
fi

if [[ " $legs " == *" cross "* ]]; then
  start=$SECONDS
  old="$BUILD/tests/simsiam_cross_version"
  new="$ROOT/build-debian13/tests/simsiam_cross_version"
  [[ -x "$old" && -x "$new" ]] || { echo "cross: build both legs first ($old, $new)" >&2; exit 1; }
  bash "$ROOT/tests/cross_version/run.sh" "$ROOT/build-debian13/cross-version" \
    "LibTorch 1.13" "$old" "LibTorch 2.6" "bash $ROOT/scripts/in_chroot.sh debian13 $new"
  leg_done "cross (checkpoints LibTorch 1.13 <-> 2.6)" $start
fi
printf '== %s\n' "${timings[@]}"
