/// @file
/// @brief Readers for the IDX format of MNIST and Fashion-MNIST, raw or gzip-compressed.
///
/// Needs zlib: link `SimSiam::data`. Format (LeCun et al.): two zero bytes, a type code, the
/// number of dimensions, each dimension as a big-endian uint32, then the values, big-endian.
#pragma once

#include <torch/torch.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace simsiam {

namespace detail {

/// A gzFile that closes itself. zlib reads uncompressed files transparently.
struct GzCloser {
  void operator()(gzFile_s* file) const { gzclose(file); }
};
using GzFile = std::unique_ptr<gzFile_s, GzCloser>;

/// Reads exactly `size` bytes or fails naming the file and what was expected.
inline void gz_read_exact(gzFile_s* file, void* data, size_t size, const std::string& path,
                          const char* what) {
  auto* bytes = static_cast<unsigned char*>(data);
  size_t done = 0;
  while (done < size) {
    const auto chunk = static_cast<unsigned>(std::min<size_t>(size - done, 1u << 30));
    const int got = gzread(file, bytes + done, chunk);
    if (got < 0) {
      int code = 0;
      const char* message = gzerror(file, &code);
      TORCH_CHECK(false, "simsiam::read_idx: '", path, "' is corrupt (", message,
                  ") while reading ", what);
    }
    TORCH_CHECK(got > 0, "simsiam::read_idx: '", path, "' is truncated: expected ", size,
                " bytes of ", what, ", got ", done);
    done += static_cast<size_t>(got);
  }
}

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

/// Reads an IDX file (optionally gzip-compressed) into a tensor of its dtype and dimensions.
/// Fails with the path and the reason on a missing file, a bad magic number, a short or long
/// payload, or corrupt compression.
inline torch::Tensor read_idx(const std::string& path) {
  TORCH_CHECK(std::filesystem::is_regular_file(path), "simsiam::read_idx: cannot open '", path,
              "': no such file");
  detail::GzFile file(gzopen(path.c_str(), "rb"));
  TORCH_CHECK(file, "simsiam::read_idx: cannot open '", path, "': ", std::strerror(errno));

  std::array<unsigned char, 4> magic{};
  detail::gz_read_exact(file.get(), magic.data(), magic.size(), path, "the magic number");
  TORCH_CHECK(magic[0] == 0 && magic[1] == 0 && magic[3] >= 1 && magic[3] <= 8,
              "simsiam::read_idx: '", path,
              "' is not an IDX file: expected a magic number 00 00 <type> <1..8 dims>, got ",
              static_cast<int>(magic[0]), " ", static_cast<int>(magic[1]), " ",
              static_cast<int>(magic[2]), " ", static_cast<int>(magic[3]));
  const auto [dtype, element_size] = detail::idx_type(magic[2], path);

  std::vector<int64_t> sizes(magic[3]);
  int64_t count = 1;
  for (auto& size : sizes) {
    std::array<unsigned char, 4> be{};
    detail::gz_read_exact(file.get(), be.data(), be.size(), path, "the dimensions");
    size = (int64_t{be[0]} << 24) | (int64_t{be[1]} << 16) | (int64_t{be[2]} << 8) | be[3];
    TORCH_CHECK(size == 0 || count <= (int64_t{1} << 40) / size, "simsiam::read_idx: '", path,
                "' declares an implausible size ", torch::IntArrayRef(sizes));
    count *= size;
  }

  auto tensor = torch::empty(sizes, torch::TensorOptions().dtype(dtype));
  detail::gz_read_exact(file.get(), tensor.data_ptr(), static_cast<size_t>(count) * element_size,
                        path, "the values");
  unsigned char extra = 0;
  TORCH_CHECK(gzread(file.get(), &extra, 1) == 0, "simsiam::read_idx: '", path,
              "' is longer than its header declares (", torch::IntArrayRef(sizes), ")");
  const uint16_t probe = 1;
  const bool little_endian_host = *reinterpret_cast<const unsigned char*>(&probe) == 1;
  if (element_size > 1 && little_endian_host) {  // IDX values are big-endian.
    auto* bytes = static_cast<unsigned char*>(tensor.data_ptr());
    for (int64_t i = 0; i < count; ++i) {
      std::reverse(bytes + i * element_size, bytes + (i + 1) * element_size);
    }
  }
  return tensor;
}

/// Images and labels of a classification set.
struct LabeledImages {
  torch::Tensor images;  ///< uint8 [N, C, H, W]
  torch::Tensor labels;  ///< int64 [N]
};

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
