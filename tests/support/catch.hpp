// SPDX-License-Identifier: BSD-3-Clause
// Catch2 v2 (Debian 12) and v3 (Debian 13) behind one include: the suite is written once, with
// `Approx` and `Contains` (substring matcher) as below.
#pragma once

#if __has_include(<catch2/catch_all.hpp>)
#include <catch2/catch_approx.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

using Catch::Approx;

/// Matches a string that contains `text` (v2's Catch::Contains).
inline Catch::Matchers::StringContainsMatcher Contains(const std::string& text) {
  return Catch::Matchers::ContainsSubstring(text);
}
#else
#include <catch2/catch.hpp>

using Catch::Contains;
#endif
