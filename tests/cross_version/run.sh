#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# A checkpoint written on one platform resumes on the other and continues exactly as an
# uninterrupted run there would from the same state: same losses, weights, buffers and optimiser
# state, bit for bit. The two LibTorch versions do not compute the same first epoch to the last
# bit, so "the same state" is the checkpoint's own: each platform rebuilds it from the other's
# checkpoint (weights, position) and a plain-text copy of its optimiser state, saves it itself,
# and resuming that must equal resuming the other platform's file.
#
#   run.sh WORK_DIR NAME_A "COMMAND_A" NAME_B "COMMAND_B"
#
# COMMAND_X runs platform X's simsiam_cross_version (e.g. through scripts/in_chroot.sh); WORK_DIR
# must be visible to both at the same path.
set -euo pipefail
work="$1" name_a="$2" cmd_a="$3" name_b="$4" cmd_b="$5"
rm -rf "$work"
mkdir -p "$work"
failed=0
run() {  # run SIDE MODE DIR OPTIMIZER [CHECKPOINT]
  local side=$1
  shift
  local cmd=$cmd_a
  [[ $side == b ]] && cmd=$cmd_b
  mkdir -p "$2"
  $cmd "$@"
}
name() { if [[ $1 == a ]]; then echo "$name_a"; else echo "$name_b"; fi; }
# Largest absolute difference between two result files' numbers (informational).
largest_difference() {
  paste -d' ' <(grep -oE -- '-?0x[0-9a-f.]+p[-+][0-9]+' "$1") \
    <(grep -oE -- '-?0x[0-9a-f.]+p[-+][0-9]+' "$2") |
    python3 -c 'import sys
worst = 0.0
for line in sys.stdin:
    a, b = (float.fromhex(x) for x in line.split())
    worst = max(worst, abs(a - b))
print(f"{worst:.2g}")'
}

for optimizer in sgd adam; do
  for side in a b; do
    run $side straight "$work/$side-$optimizer-straight" $optimizer
    run $side first "$work/$side-$optimizer-first" $optimizer
  done
  for pair in "a b" "b a"; do
    read -r from to <<<"$pair"
    dir="$work/$to-from-$from-$optimizer"
    mkdir -p "$dir/cross" "$dir/rebuilt"
    cp "$work/$from-$optimizer-first/checkpoint.pt" "$work/$from-$optimizer-first/state.txt" \
      "$dir/cross/"
    cp "$dir/cross/checkpoint.pt" "$dir/cross/state.txt" "$dir/rebuilt/"
    run "$to" rebuild "$dir/rebuilt" $optimizer
    run "$to" resume "$dir/cross" $optimizer checkpoint.pt
    run "$to" resume "$dir/rebuilt" $optimizer rebuilt.pt
    what="$(name "$from")'s checkpoint resumed on $(name "$to")"
    if cmp -s "$dir/cross/result.txt" "$dir/rebuilt/result.txt"; then
      echo "cross-version ($optimizer): $what equals $(name "$to")'s uninterrupted run from the same" \
        "state, bit for bit (largest difference from $(name "$from")'s own continuation:" \
        "$(largest_difference "$dir/cross/result.txt" "$work/$from-$optimizer-straight/result.txt"))"
    else
      echo "cross-version ($optimizer): FAILED: $what differs from $(name "$to")'s uninterrupted run" \
        "from the same state:" >&2
      diff "$dir/cross/result.txt" "$dir/rebuilt/result.txt" | head -20 >&2 || true
      failed=1
    fi
  done
done
exit $failed
