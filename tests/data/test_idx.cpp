// SPDX-License-Identifier: BSD-3-Clause
// IDX reader: raw and gzip files made here, every malformed case, and Debian's Fashion-MNIST.
#include "simsiam/data/idx.hpp"

#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "support/catch.hpp"

namespace {

namespace fs = std::filesystem;

/// A fresh directory under the system temp dir, removed at scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() /
           ("simsiam_idx_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  static int& counter() {
    static int n = 0;
    return n;
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

std::string header(unsigned char type, const std::vector<uint32_t>& dims) {
  std::string out{'\0', '\0', static_cast<char>(type), static_cast<char>(dims.size())};
  for (uint32_t d : dims) {
    for (int shift : {24, 16, 8, 0}) out.push_back(static_cast<char>((d >> shift) & 0xFF));
  }
  return out;
}

void write_raw(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void write_gz(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) ==
          static_cast<int>(bytes.size()));
  gzclose(f);
}

std::string ubyte_payload(int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out.push_back(static_cast<char>(i % 256));
  return out;
}

}  // namespace

TEST_CASE("read_idx reads raw and gzip uint8 files with their dimensions", "[idx]") {
  TempDir dir;
  const auto bytes = header(0x08, {2, 3, 4}) + ubyte_payload(24);
  write_raw(dir.file("a.idx"), bytes);
  write_gz(dir.file("a.idx.gz"), bytes);
  for (const auto& name : {"a.idx", "a.idx.gz"}) {
    INFO(name);
    const auto t = simsiam::read_idx(dir.file(name));
    CHECK(t.scalar_type() == torch::kUInt8);
    CHECK(t.sizes() == torch::IntArrayRef({2, 3, 4}));
    CHECK(torch::equal(t.flatten(), torch::arange(24, torch::kUInt8)));
  }
}

TEST_CASE("read_idx converts big-endian int32 and float values", "[idx]") {
  TempDir dir;
  std::string ints = header(0x0C, {3});
  for (uint32_t v : {1u, 256u, 0xFFFFFFFFu}) {
    for (int shift : {24, 16, 8, 0}) ints.push_back(static_cast<char>((v >> shift) & 0xFF));
  }
  write_gz(dir.file("i.gz"), ints);
  CHECK(
      torch::equal(simsiam::read_idx(dir.file("i.gz")), torch::tensor({1, 256, -1}, torch::kInt)));
  std::string floats = header(0x0D, {1});
  floats += std::string{'\x3f', '\x80', '\0', '\0'};  // 1.0f big-endian
  write_raw(dir.file("f.idx"), floats);
  CHECK(simsiam::read_idx(dir.file("f.idx")).item<float>() == 1.0f);
}

TEST_CASE("malformed IDX files fail with the path and the reason", "[idx][errors]") {
  TempDir dir;
  CHECK_THROWS_WITH(simsiam::read_idx(dir.file("missing.gz")),
                    Contains("cannot open '" + dir.file("missing.gz") + "': no such file"));
  write_raw(dir.file("magic"), std::string("\x1f\x00\x08\x01", 4) + ubyte_payload(8));
  CHECK_THROWS_WITH(simsiam::read_idx(dir.file("magic")),
                    Contains("is not an IDX file: expected a magic number 00 00 <type> "
                             "<1..8 dims>, got 31 0 8 1"));
  write_raw(dir.file("type"), header(0x07, {4}) + ubyte_payload(4));
  CHECK_THROWS_WITH(simsiam::read_idx(dir.file("type")), Contains("got 0x7"));
  write_gz(dir.file("short.gz"), header(0x08, {10, 10}) + ubyte_payload(99));
  CHECK_THROWS_WITH(simsiam::read_idx(dir.file("short.gz")),
                    Contains("is truncated: expected 100 bytes of the values, got 99"));
  write_raw(dir.file("long"), header(0x08, {4}) + ubyte_payload(5));
  CHECK_THROWS_WITH(simsiam::read_idx(dir.file("long")),
                    Contains("is longer than its header declares ([4])"));
  write_raw(dir.file("empty"), "");
  CHECK_THROWS_WITH(simsiam::read_idx(dir.file("empty")),
                    Contains("is truncated: expected 4 bytes of the magic number, got 0"));
  // A gzip stream whose compressed body is damaged.
  write_gz(dir.file("corrupt.gz"), header(0x08, {4000}) + ubyte_payload(4000));
  std::string gz;
  {
    std::ifstream in(dir.file("corrupt.gz"), std::ios::binary);
    gz.assign(std::istreambuf_iterator<char>(in), {});
  }
  for (size_t i = 12; i < gz.size() - 8; i += 3) gz[i] = static_cast<char>(gz[i] ^ 0x5A);
  write_raw(dir.file("corrupt.gz"), gz);
  CHECK_THROWS_WITH(simsiam::read_idx(dir.file("corrupt.gz")), Contains("is corrupt ("));
}

TEST_CASE("gzip files cut in their trailer or with a wrong checksum are refused", "[idx][errors]") {
  TempDir dir;
  write_gz(dir.file("whole.gz"), header(0x08, {64}) + ubyte_payload(64));
  std::string gz;
  {
    std::ifstream in(dir.file("whole.gz"), std::ios::binary);
    gz.assign(std::istreambuf_iterator<char>(in), {});
  }
  // Without its 8-byte trailer (CRC-32 and length) every value is there, but the file is cut.
  write_raw(dir.file("cut.gz"), gz.substr(0, gz.size() - 8));
  CHECK_THROWS_WITH(simsiam::read_idx(dir.file("cut.gz")),
                    Contains("is truncated: the gzip stream ends before its end marker"));
  std::string bad_crc = gz;
  bad_crc[bad_crc.size() - 8] = static_cast<char>(bad_crc[bad_crc.size() - 8] ^ 0xFF);
  write_raw(dir.file("crc.gz"), bad_crc);
  CHECK_THROWS_WITH(simsiam::read_idx(dir.file("crc.gz")), Contains("is corrupt ("));
  // Two gzip members concatenated (as `cat a.gz b.gz` makes) are one file.
  const auto bytes = header(0x08, {6}) + ubyte_payload(6);
  write_gz(dir.file("a.gz"), bytes.substr(0, 7));
  write_gz(dir.file("b.gz"), bytes.substr(7));
  std::string joined;
  for (const auto& name : {"a.gz", "b.gz"}) {
    std::ifstream in(dir.file(name), std::ios::binary);
    joined.append(std::istreambuf_iterator<char>(in), {});
  }
  write_raw(dir.file("joined.gz"), joined);
  CHECK(torch::equal(simsiam::read_idx(dir.file("joined.gz")), torch::arange(6, torch::kUInt8)));
}

TEST_CASE("read_mnist names the files it looked for", "[idx][errors]") {
  TempDir dir;
  CHECK_THROWS_WITH(simsiam::read_mnist(dir.path.string(), true),
                    Contains("expected '" + dir.file("train-images-idx3-ubyte") + ".gz' or '" +
                             dir.file("train-images-idx3-ubyte") + "', found neither"));
}

TEST_CASE("Debian's Fashion-MNIST test set has 10,000 28x28 images, 1,000 per class", "[idx]") {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  INFO("needs Debian's dataset-fashion-mnist (scripts/test.sh installs it)");
  const auto test = simsiam::read_mnist(dir, /*train=*/false);
  CHECK(test.images.sizes() == torch::IntArrayRef({10000, 1, 28, 28}));
  CHECK(test.images.scalar_type() == torch::kUInt8);
  CHECK(torch::equal(torch::bincount(test.labels), torch::full({10}, 1000, torch::kLong)));
}

TEST_CASE("an IDX file with a zero dimension is an empty tensor", "[data][idx]") {
  // Found by fuzzing: copying an empty payload used to pass a null pointer to memcpy.
  const std::string bytes("\0\0\x08\x02\0\0\0\0\0\0\0\x05", 12);
  const auto empty = simsiam::decode_idx(bytes, "empty.idx");
  CHECK(empty.sizes() == torch::IntArrayRef({0, 5}));
  CHECK(empty.scalar_type() == torch::kUInt8);
}
