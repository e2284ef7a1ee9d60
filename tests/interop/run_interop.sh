#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# PyTorch <-> C++ weights, both ways: Python writes an official SimSiam checkpoint and a
# torchvision backbone; the C++ program loads them and compares outputs (1e-5), then writes a
# backbone that Python's torchvision loads and compares. Usage: run_interop.sh INTEROP_PROGRAM
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
/usr/bin/python3 "$here/make_official_checkpoint.py" "$work"
"$1" "$work"
/usr/bin/python3 "$here/check_cpp_backbone.py" "$work"
