// SPDX-License-Identifier: BSD-3-Clause
// Replays the inputs kept from fuzzing (tests/fuzz/regressions/, see scripts/fuzz.sh) and the
// image fixtures, cut and corrupted, through every reader: each decodes or fails with a
// c10::Error, never anything else. Under SIMSIAM_SANITIZE this runs with ASan and UBSan.
#include <filesystem>
#include <string>

#include "support/catch.hpp"
#include "support/exercise_readers.hpp"

TEST_CASE("readers survive the fuzzing regressions and damaged fixtures", "[data][fuzz]") {
  namespace fs = std::filesystem;
  const fs::path fixtures(SIMSIAM_FIXTURES_DIR);
  int inputs = 0;
  for (const auto& dir : {fixtures.parent_path() / "fuzz" / "regressions", fixtures / "images"}) {
    for (const auto& entry : fs::directory_iterator(dir)) {
      const auto bytes = simsiam::detail::read_file_bytes(entry.path().string(), "test");
      INFO(entry.path().string());
      CHECK_NOTHROW(simsiam::testing::exercise_readers(bytes));
      // Cut at several points and with one byte flipped every 97: all must fail cleanly or decode.
      for (size_t cut : {size_t{1}, size_t{8}, bytes.size() / 3, bytes.size() / 2}) {
        CHECK_NOTHROW(simsiam::testing::exercise_readers(bytes.substr(0, cut)));
      }
      auto flipped = bytes;
      for (size_t i = 7; i < flipped.size(); i += 97) flipped[i] = static_cast<char>(~flipped[i]);
      CHECK_NOTHROW(simsiam::testing::exercise_readers(flipped));
      ++inputs;
    }
  }
  CHECK(inputs >= 12);
}
