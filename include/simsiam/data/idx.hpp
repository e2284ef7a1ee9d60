// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief Readers for the IDX format of MNIST and Fashion-MNIST, raw or gzip-compressed.
///
/// Needs zlib: link `SimSiam::data`. Format (LeCun et al.): two zero bytes, a type code, the
/// number of dimensions, each dimension as a big-endian uint32, then the values, big-endian.
/// gzip files are recognised by their magic bytes, whatever their name.
#pragma once

#include <torch/torch.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "simsiam/data/batch.hpp"
#include "simsiam/detail/file.hpp"

namespace simsiam {

namespace detail {

/// Decompresses a gzip file held in memory (all members). Unlike zlib's gzread, which accepts a
/// stream cut anywhere in its 8-byte trailer, this requires every member's end marker and
/// checksum, so a truncated download is an error rather than silently accepted data.
inline std::string gunzip(const std::string& compressed, const std::string& path,
                          const char* where) {
  z_stream stream{};
  TORCH_CHECK(inflateInit2(&stream, 15 + 32) == Z_OK, where, ": zlib could not start");
  std::unique_ptr<z_stream, int (*)(z_stream*)> guard(&stream, inflateEnd);
  std::string out;
  if (compressed.size() >= 4) {  // ISIZE, the last member's size mod 2^32: a capacity hint
    const auto* tail =
        reinterpret_cast<const unsigned char*>(compressed.data() + compressed.size() - 4);
    const size_t hint =
        tail[0] | (tail[1] << 8) | (tail[2] << 16) | (static_cast<size_t>(tail[3]) << 24);
    out.reserve(std::min(hint, compressed.size() * 1032));  // deflate expands 1032x at most
  }
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
  stream.avail_in = static_cast<uInt>(compressed.size());
  std::array<char, 1 << 16> chunk{};
  while (true) {
    stream.next_out = reinterpret_cast<Bytef*>(chunk.data());
    stream.avail_out = static_cast<uInt>(chunk.size());
    const int code = inflate(&stream, Z_NO_FLUSH);
    out.append(chunk.data(), chunk.size() - stream.avail_out);
    if (code == Z_STREAM_END) {
      if (stream.avail_in == 0) return out;
      TORCH_CHECK(inflateReset(&stream) == Z_OK, where, ": zlib could not restart");
      continue;  // another gzip member follows
    }
    TORCH_CHECK(code == Z_OK || (code == Z_BUF_ERROR && stream.avail_in > 0), where, ": '", path,
                "' is ",
                code == Z_BUF_ERROR
                    ? "truncated: the gzip stream ends before its end marker"
                    : std::string("corrupt (") + (stream.msg ? stream.msg : "zlib error") + ")");
  }
}

/// Reads consecutive fields of a byte buffer, failing with the path and what was expected.
struct ByteReader {
  const std::string& bytes;
  const std::string& path;
  size_t offset = 0;

  const unsigned char* take(size_t size, const char* what) {
    TORCH_CHECK(bytes.size() - offset >= size, "simsiam::read_idx: '", path,
                "' is truncated: expected ", size, " bytes of ", what, ", got ",
                bytes.size() - offset);
    const auto* start = reinterpret_cast<const unsigned char*>(bytes.data()) + offset;
    offset += size;
    return start;
  }
};

/// dtype and element size of an IDX type code.
inline std::pair<torch::ScalarType, size_t> idx_type(int code, const std::string& path) {
  switch (code) {
    case 0x08:
      return {torch::kUInt8, 1};
    case 0x09:
      return {torch::kInt8, 1};
    case 0x0B:
      return {torch::kInt16, 2};
    case 0x0C:
      return {torch::kInt32, 4};
    case 0x0D:
      return {torch::kFloat32, 4};
    case 0x0E:
      return {torch::kFloat64, 8};
    default:
      TORCH_CHECK(false, "simsiam::read_idx: '", path,
                  "' is not an IDX file: expected a type code of 0x08, 0x09, 0x0B, 0x0C, 0x0D or "
                  "0x0E in byte 3, got 0x",
                  std::hex, code);
  }
}

}  // namespace detail

/// Decodes the bytes of an IDX file (optionally gzip-compressed) into a tensor of its dtype and
/// dimensions; `path` names it in errors: a bad magic number, a short or long payload, corrupt
/// compression.
inline torch::Tensor decode_idx(std::string bytes, const std::string& path) {
  constexpr const char* kWhere = "simsiam::read_idx";
  if (bytes.size() >= 2 && static_cast<unsigned char>(bytes[0]) == 0x1f &&
      static_cast<unsigned char>(bytes[1]) == 0x8b) {
    bytes = detail::gunzip(bytes, path, kWhere);
  }
  detail::ByteReader reader{bytes, path};

  const unsigned char* magic = reader.take(4, "the magic number");
  TORCH_CHECK(magic[0] == 0 && magic[1] == 0 && magic[3] >= 1 && magic[3] <= 8, kWhere, ": '", path,
              "' is not an IDX file: expected a magic number 00 00 <type> <1..8 dims>, got ",
              static_cast<int>(magic[0]), " ", static_cast<int>(magic[1]), " ",
              static_cast<int>(magic[2]), " ", static_cast<int>(magic[3]));
  const auto [dtype, element_size] = detail::idx_type(magic[2], path);

  std::vector<int64_t> sizes(magic[3]);
  int64_t count = 1;
  for (auto& size : sizes) {
    const unsigned char* be = reader.take(4, "the dimensions");
    size = (int64_t{be[0]} << 24) | (int64_t{be[1]} << 16) | (int64_t{be[2]} << 8) | be[3];
    TORCH_CHECK(size == 0 || count <= (int64_t{1} << 40) / size, kWhere, ": '", path,
                "' declares an implausible size ", torch::IntArrayRef(sizes));
    count *= size;
  }

  const size_t payload = static_cast<size_t>(count) * element_size;
  const unsigned char* values = reader.take(payload, "the values");
  TORCH_CHECK(reader.offset == bytes.size(), kWhere, ": '", path,
              "' is longer than its header declares (", torch::IntArrayRef(sizes), ")");
  auto tensor = torch::empty(sizes, torch::TensorOptions().dtype(dtype));
  auto* out = static_cast<unsigned char*>(tensor.data_ptr());
  if (payload > 0) std::memcpy(out, values, payload);  // an empty tensor has no data pointer
  const uint16_t probe = 1;
  const bool little_endian_host = *reinterpret_cast<const unsigned char*>(&probe) == 1;
  if (element_size > 1 && little_endian_host) {  // IDX values are big-endian.
    for (int64_t i = 0; i < count; ++i) {
      std::reverse(out + i * element_size, out + (i + 1) * element_size);
    }
  }
  return tensor;
}

/// Reads an IDX file (see `decode_idx`); a missing file fails naming it.
inline torch::Tensor read_idx(const std::string& path) {
  return decode_idx(detail::read_file_bytes(path, "simsiam::read_idx"), path);
}

/// Reads `<dir>/<prefix>-images-idx3-ubyte[.gz]` and `<prefix>-labels-idx1-ubyte[.gz]`
/// (prefix "train" or "t10k"), the MNIST / Fashion-MNIST layout, as [N, 1, 28, 28] uint8 images.
inline LabeledImages read_mnist(const std::string& dir, bool train) {
  const std::string prefix = train ? "train" : "t10k";
  const auto find = [&](const std::string& stem) {
    const auto base = std::filesystem::path(dir) / stem;
    for (const auto& name : {base.string() + ".gz", base.string()}) {
      if (std::filesystem::is_regular_file(name)) return name;
    }
    TORCH_CHECK(false, "simsiam::read_mnist: expected '", base.string(), ".gz' or '", base.string(),
                "', found neither");
  };
  auto images = read_idx(find(prefix + "-images-idx3-ubyte"));
  auto labels = read_idx(find(prefix + "-labels-idx1-ubyte"));
  TORCH_CHECK(images.dim() == 3 && images.scalar_type() == torch::kUInt8 && labels.dim() == 1 &&
                  labels.size(0) == images.size(0),
              "simsiam::read_mnist: expected uint8 images [N, H, W] and labels [N] in '", dir,
              "', got images ", images.sizes(), " and labels ", labels.sizes());
  return {images.unsqueeze(1), labels.to(torch::kLong)};
}

}  // namespace simsiam
