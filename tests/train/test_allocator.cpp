// SPDX-License-Identifier: BSD-3-Clause
// keep_freed_memory: glibc accepts the thresholds; freed blocks are then reused, not unmapped.
#include "simsiam/train/allocator.hpp"

#include "support/catch.hpp"

#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__)  // ASan replaces glibc's malloc
TEST_CASE("keep_freed_memory sets glibc's thresholds and keeps freed blocks", "[allocator]") {
  REQUIRE(simsiam::keep_freed_memory());
  CHECK_FALSE(simsiam::keep_freed_memory(1 << 20));  // under 32 MiB: refused, nothing changed
  // A 64 MiB tensor (above glibc's default 32 MiB ceiling) comes from the heap, and freed and
  // allocated again it reuses the arena instead of mapping new pages.
  // glibc does not hand the very next aligned request the hole its predecessor left (small
  // objects fill the alignment slack), so the heap first grows by a few blocks; it then settles
  // and further cycles reuse freed blocks (measured: 9 blocks of 64 MiB after ~10 cycles).
  const auto before = mallinfo2();
  const auto cycles = [](int n) {
    for (int cycle = 0; cycle < n; ++cycle) auto block = torch::empty({16 << 20}, torch::kFloat);
  };
  cycles(40);
  const auto settled = mallinfo2();
  cycles(20);
  const auto after = mallinfo2();
  CHECK(settled.hblkhd == before.hblkhd);  // never an mmapped block
  CHECK(after.hblkhd == before.hblkhd);
  CHECK(after.arena == settled.arena);  // 20 more cycles took no new memory
  CHECK(after.arena >= (size_t{64} << 20));
}
#endif
