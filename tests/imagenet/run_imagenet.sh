#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The ImageNet examples end to end on a miniature tree (tests/imagenet/make_tree.py): pretraining
# for 3 epochs with a small ResNet on the CPU, killed (SIGKILL) once its first checkpoint is
# written and resumed; then the linear evaluation of its checkpoint, and of the torchvision
# backbone it wrote. Checks the checkpoints, the metrics and accuracy above chance.
# Usage: run_imagenet.sh IMAGENET_PRETRAIN IMAGENET_LINEAR_EVAL
set -euo pipefail
pretrain="$1"
linear="$2"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

/usr/bin/python3 "$here/make_tree.py" "$work/data"
common=(--arch resnet10 --dim 64 --pred-dim 16 --image-size 32 --workers 1 --threads 1 --seed 1)
"$pretrain" "$work/data" "${common[@]}" --epochs 3 -b 20 --lr 0.05 --knn-per-class 2 -p 5 \
  --out "$work/runs" > "$work/first.log" 2>&1 &
pid=$!
for _ in $(seq 600); do  # up to 60 s for the first epoch's checkpoint
  compgen -G "$work/runs/*/checkpoint_0000.pt" > /dev/null && break
  kill -0 "$pid" 2> /dev/null || break
  sleep 0.1
done
kill -9 "$pid" 2> /dev/null || true
wait "$pid" 2> /dev/null || true
run="$(echo "$work"/runs/*)"
[[ -f "$run/checkpoint_0000.pt" ]] || { cat "$work/first.log"; fail "no checkpoint_0000.pt"; }
grep -q "^done:" "$work/first.log" && fail "the first run finished before it was killed"
echo "killed after epoch 1 checkpoint ($(ls "$run" | tr '\n' ' '))"

"$pretrain" "$work/data" "${common[@]}" --epochs 3 -b 20 --lr 0.05 --knn-per-class 2 -p 5 \
  --resume "$run/checkpoint.pt" > "$work/resumed.log" 2>&1 || { cat "$work/resumed.log"; fail "resume"; }
tail -n 2 "$work/resumed.log"
for file in checkpoint.pt checkpoint_0000.pt checkpoint_0001.pt checkpoint_0002.pt metrics.csv \
  metrics.jsonl backbone_torchvision.pt; do
  [[ -f "$run/$file" ]] || fail "missing $run/$file"
done
# One epoch row per epoch: the resumed run dropped what the killed one wrote of epoch 2.
epochs="$(grep -c '^epoch,' "$run/metrics.csv")"
[[ "$epochs" == 3 ]] || fail "metrics.csv has $epochs epoch rows, expected 3"
head -n 1 "$run/metrics.csv" | grep -q "knn_top1" || fail "no knn_top1 column in metrics.csv"

# SGD: LARS's small relative steps (trust 0.001) need the official 90 epochs of ImageNet steps;
# 50 steps here leave it near chance.
"$linear" "$work/data" "${common[@]}" --pretrained "$run/checkpoint.pt" --epochs 10 -b 40 \
  --no-lars --lr 5 --out "$work/linear" > "$work/linear.log" 2>&1 || { cat "$work/linear.log"; fail "linear"; }
tail -n 1 "$work/linear.log"
/usr/bin/python3 - "$work/linear/linear_eval.json" <<'PY'
import json, sys
result = json.load(open(sys.argv[1]))
assert result["backbone_unchanged"], result
assert result["top1"] > 5 * result["chance"], f"top-1 {result['top1']} vs chance {result['chance']}"
print(f"linear top-1 {result['top1']:.3f}, top-5 {result['top5']:.3f}, chance {result['chance']:.2f}")
PY
"$linear" "$work/data" "${common[@]}" --pretrained "$run/backbone_torchvision.pt" --epochs 1 \
  -b 40 > "$work/linear_tv.log" 2>&1 || { cat "$work/linear_tv.log"; fail "torchvision backbone"; }
echo "ok"
