#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# What including SimSiam costs a translation unit, next to LibTorch alone: g++ -O2 -c of three
# one-line files, `#include <torch/torch.h>`, `#include <simsiam/simsiam.hpp>` (the umbrella)
# and every public header, each compiled RUNS times (default 4, in alternating rounds; the
# minimum is reported, as this machine's timings swing by 20% between runs), with the
# compiler's memory total and the preprocessed line counts, which do not swing.
#   bash benchmarks/compile_time.sh [RUNS]
#   CXX=clang++ bash benchmarks/compile_time.sh [RUNS]   (any compiler; the memory column is g++'s)
# Needs LibTorch's headers where find_package(Torch) finds them (Debian: libtorch-dev),
# zlib1g-dev, libturbojpeg0-dev and libgloo-dev (for the data and distributed headers).
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

CXX="${CXX:-g++}"
torch_version="$(echo '#include <torch/version.h>' | eval "$CXX -E -dM $flags -x c++ -" |
  awk '$2 == "TORCH_VERSION" { print $3 }')"
echo "$CXX $($CXX -dumpversion), LibTorch $torch_version, fastest of $RUNS rounds"
# Rounds alternate the three units, so a slow spell of the machine hits all of them alike. CPU
# seconds (user + system of the compiler) swing less than wall seconds. g++'s memory total
# (-fmem-report) does not swing at all, but it is garbage-collected memory, not work: it can
# grow with a header that costs no measurable time.
python3 - "$work" "$RUNS" "$flags" "$CXX" <<'PY'
import os, re, shlex, subprocess, sys, time
work, runs, flags, cxx = sys.argv[1], int(sys.argv[2]), shlex.split(sys.argv[3]), sys.argv[4]
flags = ["-std=gnu++17", "-O2", "-w", *flags]
gnu = "clang" not in subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
units = [("torch", "<torch/torch.h>"), ("umbrella", "<simsiam/simsiam.hpp>"),
         ("all", "every public header (%d)" % len(open(work + "/all.cpp").read().splitlines()))]

def compile_once(unit):
    source = "%s/%s.cpp" % (work, unit)
    start = time.monotonic()
    process = subprocess.Popen([cxx, *flags, "-c", source, "-o", source + ".o"])
    _, status, usage = os.wait4(process.pid, 0)
    assert status == 0, cxx + " failed on " + source
    return time.monotonic() - start, usage.ru_utime + usage.ru_stime

wall, cpu = {u: [] for u, _ in units}, {u: [] for u, _ in units}
for _ in range(runs):
    for unit, _ in units:
        w, c = compile_once(unit)
        wall[unit].append(w)
        cpu[unit].append(c)

def lines(unit):
    out = subprocess.run([cxx, "-E", *flags, "%s/%s.cpp" % (work, unit)], check=True,
                         capture_output=True, text=True).stdout
    return out.count("\n")

def memory(unit):
    if not gnu: return float("nan")
    err = subprocess.run([cxx, "-fmem-report", *flags, "-c",
                          "%s/%s.cpp" % (work, unit), "-o", "/dev/null"], check=True,
                         capture_output=True, text=True).stderr
    total = re.search(r"^Total\s+(\d+)([kMG]?)", err, re.M)
    return int(total.group(1)) * {"": 1e-6, "k": 1e-3, "M": 1.0, "G": 1e3}[total.group(2)]

print("%-34s %15s %15s %16s %17s" % ("translation unit", "wall s (vs)", "CPU s (vs)",
                                      "g++ MB (vs)", "lines (vs)"))
base = None
for unit, name in units:
    row = (min(wall[unit]), min(cpu[unit]), memory(unit), lines(unit))
    base = base or row
    print("%-34s" % name + "".join(
        " %7.2f (%+5.1f%%)" % (v, 100 * (v / b - 1)) if i < 2 else
        " %8.0f (%+5.1f%%)" % (v, 100 * (v / b - 1)) for i, (v, b) in enumerate(zip(row, base))))
PY
