#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# What including SimSiam costs a translation unit, next to LibTorch alone: g++ -O2 -c of three
# one-line files, `#include <torch/torch.h>`, `#include <simsiam/simsiam.hpp>` (the umbrella)
# and every public header, each compiled RUNS times (default 4; the minimum is reported, as
# this machine's timings swing by 20% between runs), with their preprocessed line counts.
#   bash benchmarks/compile_time.sh [RUNS]
# Needs LibTorch's headers where find_package(Torch) finds them (Debian: libtorch-dev),
# nlohmann-json3-dev, zlib1g-dev, libturbojpeg0-dev and libgloo-dev (for the data and
# distributed headers).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNS="${1:-4}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The include directories and definitions of a real consumer of SimSiam::data and ::distributed.
cat >"$work/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.18)
project(compile_time CXX)
add_subdirectory("$ROOT" simsiam)
add_library(probe OBJECT probe.cpp)
target_link_libraries(probe PRIVATE SimSiam::data SimSiam::distributed)
CMAKE
echo 'int main() {}' >"$work/probe.cpp"
cmake -S "$work" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >/dev/null
flags="$(python3 - "$work/build/compile_commands.json" <<'PY'
import json, shlex, sys
command = shlex.split(json.load(open(sys.argv[1]))[0]["command"])
# Include directories (-isystem takes the next argument), definitions and language flags.
out, skip = [], False
for a in command[1:]:
    if skip: skip = False; out.append(a); continue
    if a == "-isystem": out.append(a); skip = True; continue
    if a.startswith(("-I", "-D", "-std=", "-f")): out.append(a)
print(shlex.join(out))
PY
)"

printf '#include <torch/torch.h>\n' >"$work/torch.cpp"
printf '#include <simsiam/simsiam.hpp>\n' >"$work/umbrella.cpp"
(cd "$ROOT/include" && find simsiam -name '*.hpp' -not -path '*/detail/*' | sort |
  sed 's/.*/#include <&>/') >"$work/all.cpp"

compile() {  # file -> seconds of the fastest of RUNS compiles
  local best=""
  for ((i = 0; i < RUNS; i++)); do
    local start end
    start=$(date +%s.%N)
    eval "g++ -O2 -w $flags -c $work/$1.cpp -o $work/$1.o"
    end=$(date +%s.%N)
    best=$(python3 -c "t = $end - $start; b = '$best'; print(min(t, float(b)) if b else t)")
  done
  echo "$best"
}
lines() { eval "g++ -E $flags $work/$1.cpp" | wc -l; }

torch_version="$(echo '#include <torch/version.h>' | eval "g++ -E -dM $flags -x c++ -" |
  awk '$2 == "TORCH_VERSION" { print $3 }')"
echo "g++ $(g++ -dumpfullversion), LibTorch $torch_version, fastest of $RUNS runs"
base_time=$(compile torch); base_lines=$(lines torch)
printf '%-34s %10s %8s %14s %8s\n' "translation unit" "seconds" "vs torch" "preprocessed" "vs torch"
for unit in torch umbrella all; do
  if [[ $unit == torch ]]; then t=$base_time; else t=$(compile "$unit"); fi
  n=$(lines "$unit")
  case $unit in
    torch) name="<torch/torch.h>" ;;
    umbrella) name="<simsiam/simsiam.hpp>" ;;
    all) name="every public header ($(wc -l <"$work/all.cpp"))" ;;
  esac
  python3 -c "
t, n, bt, bn = $t, $n, $base_time, $base_lines
print('%-34s %10.2f %+7.1f%% %14d %+7.1f%%' % ('$name', t, 100 * (t / bt - 1), n, 100 * (n / bn - 1)))"
done
