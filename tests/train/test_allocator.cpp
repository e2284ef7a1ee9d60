// keep_freed_memory: glibc accepts the thresholds; freed blocks are then reused, not unmapped.
#include "simsiam/train/allocator.hpp"

#include <catch2/catch.hpp>

#if defined(__GLIBC__)
TEST_CASE("keep_freed_memory sets glibc's thresholds and keeps freed blocks", "[allocator]") {
  REQUIRE(simsiam::keep_freed_memory());
  CHECK_FALSE(simsiam::keep_freed_memory(1 << 20));  // below the mmap threshold: refused
  // An 8 MiB tensor freed and allocated again comes back from the heap: the arena keeps it.
  { auto warm = torch::empty({2 << 20}, torch::kFloat); }
  const auto before = mallinfo2();
  { auto again = torch::empty({2 << 20}, torch::kFloat); }
  const auto after = mallinfo2();
  CHECK(after.hblkhd == before.hblkhd);  // no new mmapped block
  CHECK(after.arena >= (size_t{8} << 20));
}
#endif
