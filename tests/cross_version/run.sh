#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# A checkpoint written on one platform resumes on the other and continues exactly as an
# uninterrupted run there: same losses, weights, buffers and optimiser state, bit for bit.
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
run() {  # run SIDE MODE DIR OPTIMIZER
  local cmd
  if [[ $1 == a ]]; then cmd=$cmd_a; else cmd=$cmd_b; fi
  mkdir -p "$3"
  $cmd "$2" "$3" "$4"
}
name() { if [[ $1 == a ]]; then echo "$name_a"; else echo "$name_b"; fi; }

for optimizer in sgd adam; do
  for side in a b; do
    run $side straight "$work/$side-$optimizer-straight" $optimizer
    run $side first "$work/$side-$optimizer-first" $optimizer
  done
  if cmp -s "$work/a-$optimizer-straight/result.txt" "$work/b-$optimizer-straight/result.txt"; then
    echo "cross-version ($optimizer): $name_a and $name_b compute the same run bit for bit"
  else
    echo "cross-version ($optimizer): $name_a and $name_b runs differ in the last bits (expected"\
      "across LibTorch versions); each resume is compared with its own platform's run"
  fi
  for pair in "a b" "b a"; do
    read -r from to <<<"$pair"
    dir="$work/$to-from-$from-$optimizer"
    mkdir -p "$dir"
    cp "$work/$from-$optimizer-first/checkpoint.pt" "$dir/"
    run "$to" resume "$dir" $optimizer
    if cmp -s "$dir/result.txt" "$work/$to-$optimizer-straight/result.txt"; then
      echo "cross-version ($optimizer): $(name "$from")'s checkpoint resumed on $(name "$to")"\
        "equals $(name "$to")'s uninterrupted run"
    else
      echo "cross-version ($optimizer): FAILED: $(name "$from")'s checkpoint resumed on"\
        "$(name "$to") differs from $(name "$to")'s uninterrupted run:" >&2
      diff "$dir/result.txt" "$work/$to-$optimizer-straight/result.txt" | head -20 >&2 || true
      failed=1
    fi
  done
done
exit $failed
