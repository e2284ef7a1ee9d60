// SPDX-License-Identifier: BSD-3-Clause
// Entry point of the test suite, for Catch2 v2 and v3.
#if __has_include(<catch2/catch_session.hpp>)
#include <catch2/catch_session.hpp>
#else
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#endif

#if defined(__SANITIZE_ADDRESS__)
// Options of the sanitized build (SIMSIAM_SANITIZE), compiled in so that every way of running
// the tests uses them. Leak detection stays on (LibTorch's static state reports nothing).
extern "C" const char* __asan_default_options() {
  return "abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1";
}
#endif

int main(int argc, char** argv) { return Catch::Session().run(argc, argv); }
