// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief PNG decoding to RGB and encoding (for picture grids), with zlib alone.
///
/// Needs zlib: link `SimSiam::data`. Decodes non-interlaced PNGs of every colour type (grey,
/// grey + alpha, RGB, RGBA, palette) at bit depths 1-16 into uint8 RGB [3, H, W], as PIL's
/// `Image.open(f).convert("RGB")` gives them to torchvision (alpha dropped, 16-bit values
/// reduced to their high byte). Chunk CRCs and the zlib stream are checked: a corrupt or
/// truncated file is an error naming the file and what was wrong, never a partly black image.
#pragma once

#include <torch/torch.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

#include "simsiam/data/idx.hpp"
#include "simsiam/detail/check.hpp"
#include "simsiam/detail/file.hpp"

namespace simsiam {

namespace detail {

inline constexpr std::array<unsigned char, 8> kPngSignature = {0x89, 'P',  'N',  'G',
                                                               '\r', '\n', 0x1A, '\n'};

inline bool is_png(const std::string& bytes) {
  return bytes.size() >= 8 && std::equal(kPngSignature.begin(), kPngSignature.end(),
                                         reinterpret_cast<const unsigned char*>(bytes.data()));
}

inline uint32_t load_be32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

inline void store_be32(std::string& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((v >> shift) & 0xFF));
}

/// Paeth predictor of the PNG specification.
inline int paeth(int a, int b, int c) {
  const int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
  return (pa <= pb && pa <= pc) ? a : (pb <= pc ? b : c);
}

/// zlib-inflates exactly `expected` bytes (the filtered scanlines).
inline std::string inflate_exact(const std::string& compressed, size_t expected,
                                 const std::string& name) {
  std::string out(expected, '\0');
  z_stream stream{};
  TORCH_CHECK(inflateInit(&stream) == Z_OK, "simsiam::decode_png: zlib could not start");
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
  stream.avail_in = static_cast<uInt>(compressed.size());
  stream.next_out = reinterpret_cast<Bytef*>(out.data());
  stream.avail_out = static_cast<uInt>(out.size());
  const int code = inflate(&stream, Z_FINISH);
  const size_t produced = expected - stream.avail_out;
  const std::string message = stream.msg ? stream.msg : "";
  inflateEnd(&stream);
  TORCH_CHECK(code == Z_STREAM_END || (code == Z_BUF_ERROR && produced == expected),
              "simsiam::decode_png: ", name, " has corrupt or truncated image data: expected ",
              expected, " bytes of scanlines, got ", produced,
              message.empty() ? "" : " (zlib: " + message + ")");
  return out;
}

/// What a PNG's chunks say: its header fields, palette and concatenated IDAT data.
struct PngChunks {
  uint32_t width = 0, height = 0;
  int depth = 0, color = -1;
  std::string compressed, palette;
};

constexpr const char* kPngWhere = "simsiam::decode_png";

/// Walks the chunks up to IEND, checking each CRC; keeps IHDR's fields, PLTE and the IDATs.
inline PngChunks read_png_chunks(const std::string& bytes, const std::string& name) {
  const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
  PngChunks png;
  for (size_t offset = 8, length = 0;; offset += 12 + length) {
    TORCH_CHECK(bytes.size() - offset >= 12, kPngWhere, ": ", name,
                " is truncated: expected another chunk (or IEND) at byte ", offset);
    length = load_be32(data + offset);
    TORCH_CHECK(length <= bytes.size() - offset - 12, kPngWhere, ": ", name,
                " is truncated: a chunk of ", length, " bytes at byte ", offset,
                " runs past the end of the file");
    const std::string type(bytes, offset + 4, 4);
    const unsigned char* body = data + offset + 8;
    const auto crc = crc32(crc32(0L, data + offset + 4, 4), body, static_cast<uInt>(length));
    TORCH_CHECK(crc == load_be32(body + length), kPngWhere, ": ", name,
                " is corrupt: the CRC of its ", type, " chunk does not match");
    if (type == "IHDR") {
      TORCH_CHECK(length == 13, kPngWhere, ": ", name, " has an IHDR chunk of ", length,
                  " bytes, expected 13");
      png.width = load_be32(body);
      png.height = load_be32(body + 4);
      png.depth = body[8];
      png.color = body[9];
      TORCH_CHECK(body[12] == 0, kPngWhere, ": ", name,
                  " is an interlaced (Adam7) PNG, which is not supported; re-save it without "
                  "interlacing");
      TORCH_CHECK(body[10] == 0 && body[11] == 0, kPngWhere, ": ", name,
                  " uses an unknown compression or filter method");
    } else if (type == "PLTE") {
      png.palette.assign(reinterpret_cast<const char*>(body), length);
    } else if (type == "IDAT") {
      png.compressed.append(reinterpret_cast<const char*>(body), length);
    } else if (type == "IEND") {
      return png;
    }
  }
}

/// Samples per pixel of a colour type (palette: one index), after checking the header.
inline int png_channels(const PngChunks& png, const std::string& name) {
  TORCH_CHECK(png.color >= 0, kPngWhere, ": ", name, " has no IHDR chunk");
  TORCH_CHECK(
      png.width > 0 && png.height > 0 && png.width <= (1u << 24) && png.height <= (1u << 24),
      kPngWhere, ": ", name, " has an invalid size ", png.width, "x", png.height);
  // grey, -, RGB, palette index, grey + alpha, -, RGBA
  constexpr int kChannels[] = {1, 0, 3, 1, 2, 0, 4};
  const int color = png.color, depth = png.depth;
  TORCH_CHECK(color < 7 && kChannels[color] > 0, kPngWhere, ": ", name,
              " has an unknown colour type ", color);
  const bool depth_ok = depth == 8 || depth == 16 ||
                        ((color == 0 || color == 3) && (depth == 1 || depth == 2 || depth == 4));
  TORCH_CHECK(depth_ok && !(color == 3 && depth == 16), kPngWhere, ": ", name, " has bit depth ",
              depth, ", invalid for colour type ", color);
  TORCH_CHECK(color != 3 || (!png.palette.empty() && png.palette.size() % 3 == 0), kPngWhere, ": ",
              name, " is a palette PNG without a valid PLTE chunk");
  return kChannels[color];
}

/// Undoes the per-row filters of `height` rows of `row_bytes` (each after its filter byte), in
/// place; `pixel_bytes` is the filters' left-neighbour distance.
inline void unfilter_png_rows(unsigned char* rows, uint32_t height, size_t row_bytes,
                              size_t pixel_bytes, const std::string& name) {
  for (uint32_t y = 0; y < height; ++y) {
    unsigned char* row = rows + y * (row_bytes + 1);
    const int filter = row[0];
    unsigned char* cur = row + 1;
    const unsigned char* prev = y > 0 ? rows + (y - 1) * (row_bytes + 1) + 1 : nullptr;
    TORCH_CHECK(filter <= 4, kPngWhere, ": ", name, " is corrupt: row ", y, " has filter type ",
                filter, ", expected 0-4");
    for (size_t i = 0; i < row_bytes; ++i) {
      const int a = i >= pixel_bytes ? cur[i - pixel_bytes] : 0;
      const int b = prev ? prev[i] : 0;
      const int c = (prev && i >= pixel_bytes) ? prev[i - pixel_bytes] : 0;
      int predicted = 0;
      if (filter == 1) predicted = a;
      if (filter == 2) predicted = b;
      if (filter == 3) predicted = (a + b) / 2;
      if (filter == 4) predicted = paeth(a, b, c);
      cur[i] = static_cast<unsigned char>(cur[i] + predicted);
    }
  }
}

/// Unfiltered rows to uint8 RGB [3, H, W]: samples to 8 bits (16-bit: the high byte; 1-4 bits:
/// scaled to 0-255), palette entries looked up, grey copied to the three channels.
inline torch::Tensor png_rows_to_rgb(const unsigned char* rows, const PngChunks& png, int channels,
                                     size_t row_bytes, const std::string& name) {
  const uint32_t width = png.width, height = png.height;
  const int depth = png.depth, color = png.color;
  const auto& palette = png.palette;
  auto out =
      torch::empty({3, static_cast<int64_t>(height), static_cast<int64_t>(width)}, torch::kUInt8);
  uint8_t* dst = out.data_ptr<uint8_t>();
  const size_t plane = static_cast<size_t>(height) * width;
  for (uint32_t y = 0; y < height; ++y) {
    const unsigned char* row = rows + y * (row_bytes + 1) + 1;
    for (uint32_t x = 0; x < width; ++x) {
      const auto sample = [&](int channel) -> unsigned {
        const size_t index = static_cast<size_t>(x) * channels + channel;
        if (depth == 8) return row[index];
        if (depth == 16) return row[2 * index];  // the high byte
        const size_t bit = index * depth;
        const unsigned value = (row[bit / 8] >> (8 - depth - bit % 8)) & ((1u << depth) - 1);
        return color == 3 ? value : value * 255u / ((1u << depth) - 1);
      };
      unsigned r = 0, g = 0, b = 0;
      if (color == 3) {
        const size_t entry = sample(0);
        TORCH_CHECK(entry * 3 < palette.size(), kPngWhere, ": ", name,
                    " is corrupt: palette index ", entry, " past its ", palette.size() / 3,
                    "-colour palette");
        r = static_cast<unsigned char>(palette[3 * entry]);
        g = static_cast<unsigned char>(palette[3 * entry + 1]);
        b = static_cast<unsigned char>(palette[3 * entry + 2]);
      } else if (channels <= 2) {
        r = g = b = sample(0);
      } else {
        r = sample(0);
        g = sample(1);
        b = sample(2);
      }
      const size_t at = static_cast<size_t>(y) * width + x;
      dst[at] = static_cast<uint8_t>(r);
      dst[plane + at] = static_cast<uint8_t>(g);
      dst[2 * plane + at] = static_cast<uint8_t>(b);
    }
  }
  return out;
}

}  // namespace detail

/// Decodes a PNG held in memory to uint8 RGB [3, H, W]. `name` (a path) appears in errors.
inline torch::Tensor decode_png(const std::string& bytes, const std::string& name = "PNG data") {
  using detail::kPngWhere;
  TORCH_CHECK(detail::is_png(bytes), kPngWhere, ": ", name, " is not a PNG (no PNG signature)");
  const auto png = detail::read_png_chunks(bytes, name);
  const int channels = detail::png_channels(png, name);
  const size_t row_bytes = (static_cast<size_t>(png.width) * channels * png.depth + 7) / 8;
  const size_t pixel_bytes = std::max<size_t>(1, static_cast<size_t>(channels) * png.depth / 8);
  const size_t expected = png.height * (row_bytes + 1);
  // deflate expands data 1032x at most: a header that asks for more is corrupt (and would
  // otherwise allocate gigabytes before failing).
  TORCH_CHECK(expected / 1032 <= png.compressed.size() + 1, kPngWhere, ": ", name,
              " is truncated or corrupt: ", png.width, "x", png.height, " pixels need ", expected,
              " bytes of scanlines, its ", png.compressed.size(),
              " compressed bytes cannot hold them");
  auto raw = detail::inflate_exact(png.compressed, expected, name);
  auto* rows = reinterpret_cast<unsigned char*>(raw.data());
  detail::unfilter_png_rows(rows, png.height, row_bytes, pixel_bytes, name);
  return detail::png_rows_to_rgb(rows, png, channels, row_bytes, name);
}

/// Reads and decodes a PNG file to uint8 RGB [3, H, W].
inline torch::Tensor read_png(const std::string& path) {
  return decode_png(detail::read_file_bytes(path, "simsiam::read_png"), "'" + path + "'");
}

/// Encodes uint8 [C, H, W] (C = 1 grey or 3 RGB) as a PNG.
inline std::string encode_png(const torch::Tensor& image) {
  constexpr const char* kWhere = "simsiam::encode_png";
  TORCH_CHECK(image.defined() && image.dim() == 3 && (image.size(0) == 1 || image.size(0) == 3) &&
                  image.scalar_type() == torch::kUInt8 && image.numel() > 0,
              kWhere, ": expected a uint8 image [C, H, W] with C = 1 or 3, got ",
              simsiam::detail::shape_string(image), " ", image.scalar_type());
  const auto hwc = image.permute({1, 2, 0}).contiguous().cpu();
  const auto height = static_cast<uint32_t>(image.size(1)),
             width = static_cast<uint32_t>(image.size(2));
  const size_t row_bytes = static_cast<size_t>(width) * image.size(0);
  std::string scanlines;
  scanlines.reserve(height * (row_bytes + 1));
  const auto* pixels = reinterpret_cast<const char*>(hwc.data_ptr<uint8_t>());
  for (uint32_t y = 0; y < height; ++y) {
    scanlines.push_back('\0');  // filter type 0
    scanlines.append(pixels + y * row_bytes, row_bytes);
  }
  uLongf size = compressBound(static_cast<uLong>(scanlines.size()));
  std::string compressed(size, '\0');
  TORCH_CHECK(compress2(reinterpret_cast<Bytef*>(compressed.data()), &size,
                        reinterpret_cast<const Bytef*>(scanlines.data()),
                        static_cast<uLong>(scanlines.size()), 6) == Z_OK,
              kWhere, ": zlib could not compress the image");
  compressed.resize(size);
  std::string png(detail::kPngSignature.begin(), detail::kPngSignature.end());
  const auto chunk = [&](const char* type, const std::string& body) {
    detail::store_be32(png, static_cast<uint32_t>(body.size()));
    const size_t start = png.size();
    png.append(type, 4);
    png += body;
    const auto* checked = reinterpret_cast<const Bytef*>(png.data() + start);
    detail::store_be32(
        png, static_cast<uint32_t>(crc32(0L, checked, static_cast<uInt>(4 + body.size()))));
  };
  std::string header;
  detail::store_be32(header, width);
  detail::store_be32(header, height);
  header += std::string{8, static_cast<char>(image.size(0) == 3 ? 2 : 0), 0, 0, 0};
  chunk("IHDR", header);
  chunk("IDAT", compressed);
  chunk("IEND", "");
  return png;
}

/// Writes `image` (see `encode_png`) to `path` atomically (temporary file, then rename).
inline void write_png(const torch::Tensor& image, const std::string& path) {
  detail::write_file_atomically(encode_png(image), path, "simsiam::write_png");
}

}  // namespace simsiam
