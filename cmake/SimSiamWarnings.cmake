# Warning flags for the project's own programs (tests, examples, benchmarks). LibTorch comes in
# as an IMPORTED target, so CMake already treats its headers as system headers: -Wall -Wextra
# report our code only.
function(simsiam_set_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra)
endfunction()
