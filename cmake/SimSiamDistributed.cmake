# SPDX-License-Identifier: BSD-3-Clause
# SimSiam::distributed: the c10d process group (include/simsiam/distributed/process_group.hpp),
# Gloo on CPUs and NCCL for CUDA tensors when LibTorch has it. SyncBatchNorm, DataParallel and the
# trainer's data parallelism need the core alone.
#
# LibTorch's c10d headers include headers that LibTorch packages do not ship:
#   - Gloo's (gloo/config.h, ...), in every build. Debian: libgloo-dev (for libtorch-dev) or
#     libgloo-cuda-dev (for libtorch-cuda-dev), in /usr/include. LibTorch's own include/ is looked
#     at first, in case a build of it has them.
#   - NCCL's nccl.h, for ProcessGroupNCCL.hpp in CUDA builds. Debian: libnccl-dev. pip: the
#     nvidia-nccl-cu* wheel that a CUDA torch wheel depends on puts it in
#     <site-packages>/nvidia/nccl/include, next to the torch package. Else the CUDA toolkit's.
# Either can be given: -DSIMSIAM_GLOO_INCLUDE_DIR=<folder with gloo/config.h>,
# -DSIMSIAM_NCCL_INCLUDE_DIR=<folder with nccl.h>; -DSIMSIAM_USE_NCCL=OFF leaves NCCL out.
#
# process_group.hpp compiles its NCCL branch when USE_C10D_NCCL is defined and nccl.h is found.
# LibTorch's torch_cuda target exports USE_C10D_NCCL in PyTorch's own NCCL builds; when it does
# not, SimSiam::distributed defines it, if nccl.h was found and LibTorch has ProcessGroupNCCL.hpp.
#
# Included by CMakeLists.txt, which makes the target, and by the installed SimSiamConfig.cmake,
# which sets _SIMSIAM_FUNCTIONS_ONLY and completes the imported target for the consumer's own
# LibTorch: the headers are looked for again there, as the package keeps no paths of this machine.

option(SIMSIAM_USE_NCCL "With a CUDA LibTorch, use NCCL for CUDA tensors when nccl.h is found" ON)

# Looks for Gloo's and NCCL's headers for the LibTorch that find_package(Torch) found. Sets the
# cache variables SIMSIAM_GLOO_INCLUDE_DIR and SIMSIAM_NCCL_INCLUDE_DIR (-NOTFOUND when missing)
# and, in the caller's scope:
#   SIMSIAM_TORCH_CUDA            LibTorch is a CUDA build
#   SIMSIAM_NCCL                  process_group.hpp will compile its NCCL branch
#   SIMSIAM_DEFINE_USE_C10D_NCCL  SimSiam::distributed must define USE_C10D_NCCL itself
#   SIMSIAM_NO_NCCL_REASON        why not, for a CUDA build without SIMSIAM_NCCL
function(simsiam_find_distributed_headers)
  find_path(SIMSIAM_GLOO_INCLUDE_DIR gloo/config.h HINTS ${TORCH_INCLUDE_DIRS}
    DOC "Folder with Gloo's headers (gloo/config.h), which c10d's headers include")
  if(SIMSIAM_GLOO_INCLUDE_DIR AND NOT EXISTS "${SIMSIAM_GLOO_INCLUDE_DIR}/gloo/config.h")
    message(FATAL_ERROR "SimSiam: SIMSIAM_GLOO_INCLUDE_DIR=${SIMSIAM_GLOO_INCLUDE_DIR} has no "
      "gloo/config.h")
  endif()

  set(cuda FALSE)
  set(nccl FALSE)
  set(define FALSE)
  set(reason "")
  if(TARGET torch_cuda)  # LibTorch's CUDA library
    set(cuda TRUE)
  endif()
  if(cuda AND SIMSIAM_USE_NCCL)
    # pip: TORCH_INSTALL_PREFIX is <site-packages>/torch and NCCL's wheel <site-packages>/nvidia,
    # the NCCL that torch was built against, so it comes first.
    get_filename_component(pip_nccl "${TORCH_INSTALL_PREFIX}/../nvidia/nccl/include" ABSOLUTE)
    find_path(SIMSIAM_NCCL_INCLUDE_DIR nccl.h
      HINTS "${pip_nccl}" ${TORCH_INCLUDE_DIRS} $ENV{NCCL_INCLUDE_DIR} "$ENV{NCCL_ROOT}/include"
        ${CUDAToolkit_INCLUDE_DIRS} ${CUDA_INCLUDE_DIRS} "${CUDA_TOOLKIT_ROOT_DIR}/include"
        "$ENV{CUDA_HOME}/include" /usr/local/cuda/include
      DOC "Folder with NCCL's nccl.h, for the NCCL process group of CUDA builds")
    if(SIMSIAM_NCCL_INCLUDE_DIR AND NOT EXISTS "${SIMSIAM_NCCL_INCLUDE_DIR}/nccl.h")
      message(FATAL_ERROR "SimSiam: SIMSIAM_NCCL_INCLUDE_DIR=${SIMSIAM_NCCL_INCLUDE_DIR} has no "
        "nccl.h")
    endif()

    set(has_header FALSE)
    foreach(dir IN LISTS TORCH_INCLUDE_DIRS)
      if(EXISTS "${dir}/torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp")
        set(has_header TRUE)
      endif()
    endforeach()
    set(exported "")
    foreach(target torch_cuda torch)
      if(TARGET ${target})
        get_target_property(defs ${target} INTERFACE_COMPILE_DEFINITIONS)
        if(defs)
          list(APPEND exported ${defs})
        endif()
      endif()
    endforeach()

    if(NOT SIMSIAM_NCCL_INCLUDE_DIR)
      set(reason "NCCL's nccl.h was not found")
    elseif(NOT has_header)
      set(reason "its headers have no torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp")
    else()
      set(nccl TRUE)
      if(NOT "USE_C10D_NCCL" IN_LIST exported)
        set(define TRUE)
      endif()
    endif()
  endif()
  set(SIMSIAM_TORCH_CUDA ${cuda} PARENT_SCOPE)
  set(SIMSIAM_NCCL ${nccl} PARENT_SCOPE)
  set(SIMSIAM_DEFINE_USE_C10D_NCCL ${define} PARENT_SCOPE)
  set(SIMSIAM_NO_NCCL_REASON "${reason}" PARENT_SCOPE)
endfunction()

# Adds what simsiam_find_distributed_headers found to `target`'s usage requirements; with
# BUILD_INTERFACE, for this build tree only (install(EXPORT) leaves them out).
function(simsiam_distributed_usage target)
  cmake_parse_arguments(arg "BUILD_INTERFACE" "" "" ${ARGN})
  set(dirs "")
  set(defs "")
  set(found "${SIMSIAM_GLOO_INCLUDE_DIR}")
  if(SIMSIAM_NCCL)
    list(APPEND found "${SIMSIAM_NCCL_INCLUDE_DIR}")
    if(SIMSIAM_DEFINE_USE_C10D_NCCL)
      set(defs USE_C10D_NCCL)
    endif()
  endif()
  foreach(dir IN LISTS found)
    # Never the compiler's own /usr/include: -isystem on it breaks libstdc++'s #include_next.
    if(dir AND NOT dir IN_LIST CMAKE_CXX_IMPLICIT_INCLUDE_DIRECTORIES AND NOT dir IN_LIST dirs)
      list(APPEND dirs "${dir}")
    endif()
  endforeach()
  if(arg_BUILD_INTERFACE)
    list(TRANSFORM dirs REPLACE ".+" "$<BUILD_INTERFACE:\\0>")
    list(TRANSFORM defs REPLACE ".+" "$<BUILD_INTERFACE:\\0>")
  endif()
  if(dirs)
    target_include_directories(${target} SYSTEM INTERFACE ${dirs})
  endif()
  if(defs)
    target_compile_definitions(${target} INTERFACE ${defs})
  endif()
endfunction()

# Says what SimSiam::distributed uses; warns when a CUDA LibTorch lacks Gloo's headers (no
# SimSiam::distributed) or NCCL (Gloo only): users of a CUDA build expect both.
function(simsiam_report_distributed)
  if(NOT SIMSIAM_GLOO_INCLUDE_DIR)
    set(mode STATUS)
    if(SIMSIAM_TORCH_CUDA)
      set(mode WARNING)
    endif()
    message(${mode} "SimSiam: Gloo's headers (gloo/config.h) not found, so no "
      "SimSiam::distributed. Debian: apt-get install libgloo-dev (libgloo-cuda-dev with "
      "libtorch-cuda-dev); else -DSIMSIAM_GLOO_INCLUDE_DIR=<folder with gloo/config.h>.")
  elseif(SIMSIAM_NCCL)
    set(how "USE_C10D_NCCL from LibTorch")
    if(SIMSIAM_DEFINE_USE_C10D_NCCL)
      set(how "USE_C10D_NCCL defined by SimSiam::distributed")
    endif()
    message(STATUS "SimSiam: SimSiam::distributed with Gloo (${SIMSIAM_GLOO_INCLUDE_DIR}) and "
      "NCCL (${SIMSIAM_NCCL_INCLUDE_DIR}; ${how})")
  elseif(SIMSIAM_TORCH_CUDA AND SIMSIAM_USE_NCCL)
    message(WARNING "SimSiam: LibTorch is a CUDA build, but ${SIMSIAM_NO_NCCL_REASON}: "
      "SimSiam::distributed has Gloo only, and its backend \"auto\" uses Gloo for CUDA tensors "
      "(slower). Debian: apt-get install libnccl-dev; pip: the nvidia-nccl-cu12 wheel next to "
      "torch; else -DSIMSIAM_NCCL_INCLUDE_DIR=<folder with nccl.h>. -DSIMSIAM_USE_NCCL=OFF "
      "silences this.")
  else()
    message(STATUS "SimSiam: SimSiam::distributed with Gloo (${SIMSIAM_GLOO_INCLUDE_DIR})")
  endif()
endfunction()

if(_SIMSIAM_FUNCTIONS_ONLY)
  return()
endif()

simsiam_find_distributed_headers()
simsiam_report_distributed()
if(SIMSIAM_GLOO_INCLUDE_DIR)
  add_library(simsiam_distributed INTERFACE)
  add_library(SimSiam::distributed ALIAS simsiam_distributed)
  set_target_properties(simsiam_distributed PROPERTIES EXPORT_NAME distributed)
  target_link_libraries(simsiam_distributed INTERFACE simsiam)
  simsiam_distributed_usage(simsiam_distributed BUILD_INTERFACE)
endif()
