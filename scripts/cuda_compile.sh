#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The CUDA compile check: compiles the examples, the tools and one translation unit that includes
# every public header against a CUDA LibTorch 2.x (Debian 13's libtorch-cuda-dev from contrib,
# with libnccl-dev and nvidia-cuda-dev from non-free), so that the CUDA-only code (the NCCL
# process group, CUDA autocast, pinned memory) is compiled somewhere. Nothing runs, so no GPU is
# needed. Too slow for CI (the first run downloads 2.8 GB into a 7.7 GB chroot and takes about
# 13 minutes on 2 cores, later runs about 8), so it is run by hand; docs/install.md has the last
# result.
#
#   bash scripts/cuda_compile.sh        (as root, on Debian)
#
# It makes (once, then reuses) a Debian 13 chroot in /var/cache/simsiam/debian13-cuda with
# debootstrap, installs the packages there, configures and builds this repository in build-cuda/
# inside it, installs the package into build-cuda/prefix and compiles the every-header unit
# against that (so the installed SimSiamConfig.cmake's NCCL discovery is checked too). Prints
# what compiled, what linked and how long each step took; exits non-zero when a compile fails
# (or a link fails for another reason than the missing cuDNN, or the NCCL branch is not in).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$ROOT/scripts/chroot.sh"

CUDA_CHROOT="$CHROOT_CACHE/debian13-cuda"
CUDA_BUILD="$ROOT/build-cuda"
# LibTorch's CMake package (Caffe2's cuda.cmake) needs nvcc: it enables the CUDA language and
# compares nvcc's version with the headers'. nvidia-cuda-toolkit-gcc brings the g++ 13 that
# CUDA 12.4's nvcc accepts; SimSiam itself is compiled with g++ 14.
CUDA_PACKAGES=(g++ cmake ninja-build binutils libtorch-cuda-dev libnccl-dev nvidia-cuda-dev
  nvidia-cuda-toolkit nvidia-cuda-toolkit-gcc libgloo-cuda-dev zlib1g-dev libturbojpeg0-dev
  libcli11-dev nlohmann-json3-dev)
# The programs, in build order; the imagenet ones exist only with SimSiam::distributed.
CUDA_TARGETS=(simsiam_launch augment_grid fashion_mnist imagenet_pretrain imagenet_linear_eval)
STEPS="$CUDA_BUILD/steps.tsv"  # one "step<TAB>result<TAB>seconds" line per step

step() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$STEPS"; }

# The first line that says why a command failed, from its log.
why() { grep -m1 -E 'error:|undefined reference|not found' "$1" | cut -c1-160 || true; }

# --- Inside the chroot (this script runs itself there with one of these arguments). ---

# nvidia-cudnn is a downloader: its post-install script fetches cuDNN from NVIDIA's servers, and
# fails offline, which leaves libtorch-cuda-2.6 (that depends on it) unconfigured. An empty
# stand-in of a higher version, made with equivs and held, lets dpkg configure everything.
# Compiling needs no cuDNN; running would.
install_packages() {
  dpkg --configure -a  # finishes what an interrupted run left half-installed
  if ! dpkg-query -W -f='${Status}' nvidia-cudnn 2>/dev/null | grep -q "ok installed"; then
    ensure_packages equivs
    local version dir
    version="$(apt-cache show nvidia-cudnn | sed -n 's/^Version: //p' | grep -v simsiam |
      sort -V | tail -n1)+simsiam1"
    dir="$(mktemp -d)"
    cat >"$dir/nvidia-cudnn.ctl" <<EOF
Section: misc
Priority: optional
Standards-Version: 4.7.0
Package: nvidia-cudnn
Version: $version
Maintainer: SimSiam++ CUDA compile check <root@localhost>
Description: empty stand-in for nvidia-cudnn (SimSiam++ CUDA compile check)
 The real package downloads cuDNN from NVIDIA at install time, which this chroot cannot do.
 Compiling against LibTorch does not need cuDNN.
EOF
    (cd "$dir" && equivs-build nvidia-cudnn.ctl >/dev/null)
    dpkg -i "$dir"/nvidia-cudnn_*.deb
    apt-mark hold nvidia-cudnn
    rm -rf "$dir"
  fi
  ensure_packages "${CUDA_PACKAGES[@]}"
  apt-get clean  # the chroot is kept, the downloaded .debs (GBs) need not be
}

# Runs "$@" with its output in $CUDA_BUILD/logs/NAME.log and records the step; returns its status.
run_step() {
  local name="$1" ok="$2" failed="$3" log="$CUDA_BUILD/logs/$1.log" start=$SECONDS
  shift 3
  if "$@" >"$log" 2>&1; then
    step "$name" "$ok" $((SECONDS - start))
  else
    step "$name" "$failed: $(why "$log")" $((SECONDS - start))
    echo "== $name failed; the end of $log:" >&2
    tail -n 30 "$log" >&2
    return 1
  fi
}

# The object files of a CMake target, as Ninja names them.
objects_of() {
  ninja -C "$CUDA_BUILD" -t targets all | sed -n "s|^\([^:]*CMakeFiles/$1\.dir/[^:]*\.o\): .*|\1|p"
}

# Links a program. LibTorch's libtorch_cuda.so needs cuDNN's library, which the stand-in package
# does not have, so a normal link fails; the same link command with the shared libraries'
# undefined symbols allowed then still checks that every symbol the program itself uses is
# defined (in LibTorch, NCCL, ...). A link that fails for any other reason is an error.
link_program() {
  local target="$1" log="$CUDA_BUILD/logs/link $1.log" start=$SECONDS output command
  if ninja -C "$CUDA_BUILD" "$target" >"$log" 2>&1; then
    step "link $target" linked $((SECONDS - start))
    return 0
  fi
  if ! grep -q 'libcudnn[^ ]*, needed by .* not found' "$log"; then
    step "link $target" "not linked: $(why "$log")" $((SECONDS - start))
    return 1
  fi
  output="$(ninja -C "$CUDA_BUILD" -t targets all |
    sed -n "s|^\(\([^:]*/\)\?$target\): CXX_EXECUTABLE_LINKER.*|\1|p")"
  command="$(ninja -C "$CUDA_BUILD" -t commands "$target" | tail -n1)"
  command="${command/ -o $output / -Wl,--allow-shlib-undefined -o $output.without-cudnn }"
  if (cd "$CUDA_BUILD" && eval "$command") >>"$log" 2>&1; then
    step "link $target" "links only without cuDNN (libcudnn.so.9 missing)" $((SECONDS - start))
  else
    step "link $target" "not linked: $(why "$log")" $((SECONDS - start))
    return 1
  fi
}

build() {
  mkdir -p "$CUDA_BUILD/logs"
  local status=0 target objects pretrain
  run_step configure configured "configure failed" \
    cmake -S "$ROOT" -B "$CUDA_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DSIMSIAM_BUILD_EXAMPLES=ON -DSIMSIAM_BUILD_TOOLS=ON -DSIMSIAM_BUILD_TESTS=OFF \
    -DSIMSIAM_BUILD_BENCHMARKS=OFF || return 1
  grep '^-- SimSiam' "$CUDA_BUILD/logs/configure.log" || true

  for target in "${CUDA_TARGETS[@]}"; do
    mapfile -t objects < <(objects_of "$target")
    if ((${#objects[@]} == 0)); then
      step "compile $target" "missing: no such target (see logs/configure.log)" 0
      status=1
      continue
    fi
    if run_step "compile $target" compiled "did not compile" \
      ninja -C "$CUDA_BUILD" -j "$(nproc)" "${objects[@]}"; then
      link_program "$target" || status=1
    else
      status=1
    fi
  done

  # The NCCL branch of process_group.hpp is compiled in iff the object that creates process
  # groups refers to c10d::ProcessGroupNCCL (grep without -q: nm must not die of SIGPIPE).
  pretrain="$(objects_of imagenet_pretrain)"
  if [[ -n "$pretrain" && -f "$CUDA_BUILD/$pretrain" ]]; then
    if nm -C "$CUDA_BUILD/$pretrain" | grep 'c10d::ProcessGroupNCCL::ProcessGroupNCCL' >/dev/null
    then
      step "NCCL branch in imagenet_pretrain" "yes (refers to c10d::ProcessGroupNCCL)" 0
    else
      step "NCCL branch in imagenet_pretrain" "NO: no reference to c10d::ProcessGroupNCCL" 0
      status=1
    fi
  fi

  # Every public header in one translation unit, built against the installed package.
  local headers="$CUDA_BUILD/all_headers"
  mkdir -p "$headers"
  {
    echo "// Generated by scripts/cuda_compile.sh: every public header of SimSiam++."
    (cd "$ROOT/include" && find simsiam -name '*.hpp' | LC_ALL=C sort | sed 's|.*|#include <&>|')
    echo "static_assert(SIMSIAM_HAS_NCCL == 1, \"expected the NCCL branch of process_group.hpp:\"" \
      "\" USE_C10D_NCCL defined and nccl.h found\");"
  } >"$headers/all_headers.cpp"
  cat >"$headers/CMakeLists.txt" <<'EOF'
# Generated by scripts/cuda_compile.sh: the installed package as a user's project finds it.
cmake_minimum_required(VERSION 3.18)
project(simsiam_all_headers CXX)
find_package(SimSiam CONFIG REQUIRED COMPONENTS data distributed)
add_library(all_headers OBJECT all_headers.cpp)
target_link_libraries(all_headers PRIVATE SimSiam::simsiam SimSiam::data SimSiam::distributed)
target_compile_options(all_headers PRIVATE -Wall -Wextra)
EOF
  rm -rf "$CUDA_BUILD/prefix" "$headers/build"
  if run_step "install the package" installed "not installed" \
       cmake --install "$CUDA_BUILD" --prefix "$CUDA_BUILD/prefix" &&
     run_step "configure all_headers (find_package)" configured "configure failed" \
       cmake -S "$headers" -B "$headers/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
       -DCMAKE_PREFIX_PATH="$CUDA_BUILD/prefix"; then
    run_step "compile all_headers.cpp (NCCL branch)" compiled "did not compile" \
      cmake --build "$headers/build" || status=1
  else
    status=1
  fi
  return $status
}

# What was built against, for the table's title.
version_of() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null | sed 's/[+~-].*//'; }
describe() {
  echo "Debian $(cat /etc/debian_version), LibTorch $(version_of libtorch-cuda-dev) (CUDA)," \
    "CUDA headers $(version_of nvidia-cuda-dev), NCCL $(version_of libnccl-dev)," \
    "g++ $(g++ -dumpfullversion)"
}

if [[ -n "${1:-}" && "${SIMSIAM_IN_CHROOT:-}" != 1 ]]; then
  echo "usage: $0   (no arguments; $1 is for its own run inside the chroot)" >&2
  exit 2
fi
case "${1:-}" in
  --install-packages) install_packages; exit ;;
  --build) status=0; build || status=$?; describe >"$CUDA_BUILD/built_against.txt"; exit $status ;;
  "") ;;
  *) echo "usage: $0   (no arguments)" >&2; exit 2 ;;
esac

# --- On the host. ---
mkdir -p "$CUDA_BUILD"
: >"$STEPS"
start=$SECONDS
if [[ -f "$CUDA_CHROOT/.simsiam-chroot" ]]; then made=reused; else made="made (debootstrap)"; fi
ensure_chroot "$CUDA_CHROOT" trixie main,contrib,non-free,non-free-firmware
step "chroot $CUDA_CHROOT" "$made" $((SECONDS - start))

start=$SECONDS
in_chroot "$CUDA_CHROOT" bash scripts/cuda_compile.sh --install-packages
step "packages (${#CUDA_PACKAGES[@]} + dependencies)" "installed" $((SECONDS - start))

status=0
in_chroot "$CUDA_CHROOT" bash scripts/cuda_compile.sh --build || status=$?

echo
echo "== CUDA compile check: $(cat "$CUDA_BUILD/built_against.txt" 2>/dev/null || echo '?')"
awk -F'\t' '{ printf "  %-45s %-55s %5d s\n", $1, $2, $3 }' "$STEPS"
if ((status)); then
  echo "== FAILED: see the table above (logs in $CUDA_BUILD/logs/)"
else
  echo "== everything compiled (logs in $CUDA_BUILD/logs/)"
fi
exit $status
