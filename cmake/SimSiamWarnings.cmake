# SPDX-License-Identifier: BSD-3-Clause
# Warning flags for the project's own programs (tests, examples, benchmarks). LibTorch comes in
# as an IMPORTED target, so CMake already treats its headers as system headers: -Wall -Wextra
# report our code only.
function(simsiam_set_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra)
  # g++ 14 at -O2/-O3 reports a false out-of-bounds memmove (as -Warray-bounds and
  # -Wstringop-overflow) in libstdc++'s std::vector<bool>::reserve, inlined into LibTorch's
  # torch::autograd::Function::apply (custom_function.h) for every custom autograd function, here
  # SyncBatchNorm's. The location is libstdc++'s, so no pragma at the call site reaches it (tried:
  # around the call, and calling apply out of line). g++ 12 reports nothing.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_GREATER_EQUAL 14)
    target_compile_options(${target} PRIVATE -Wno-array-bounds -Wno-stringop-overflow)
  endif()
endfunction()
