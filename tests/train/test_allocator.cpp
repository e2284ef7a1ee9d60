// keep_freed_memory: glibc accepts the thresholds; freed blocks are then reused, not unmapped.
#include "simsiam/train/allocator.hpp"

#include <catch2/catch.hpp>

#if defined(__GLIBC__)
TEST_CASE("keep_freed_memory sets glibc's thresholds and keeps freed blocks", "[allocator]") {
  REQUIRE(simsiam::keep_freed_memory());
  CHECK_FALSE(simsiam::keep_freed_memory(1 << 20));  // under 32 MiB: refused, nothing changed
  // A 64 MiB tensor (above glibc's default 32 MiB ceiling) comes from the heap, and freed and
  // allocated again it reuses the arena instead of mapping new pages.
  const auto before = mallinfo2();
  { auto warm = torch::empty({16 << 20}, torch::kFloat); }
  const auto between = mallinfo2();
  { auto again = torch::empty({16 << 20}, torch::kFloat); }
  const auto after = mallinfo2();
  CHECK(between.hblkhd == before.hblkhd);  // not an mmapped block
  CHECK(after.hblkhd == before.hblkhd);
  CHECK(after.arena < between.arena + (size_t{64} << 20));  // the freed block was reused
  CHECK(after.arena >= (size_t{64} << 20));
}
#endif
