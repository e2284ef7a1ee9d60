// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief ImageNet-style folders (`root/<class>/<file>`), and their two views decoded at the
/// smallest DCT scale the random crops allow.
///
/// Labels follow torchvision's `ImageFolder`: class folders sorted by name get 0, 1, ...; files
/// are found recursively (sorted by folder, then name) and kept when their extension is one of
/// torchvision's image extensions (any case). Needs zlib and libjpeg-turbo: link `SimSiam::data`.
#pragma once

#include <torch/torch.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "simsiam/augment/transforms.hpp"
#include "simsiam/data/image.hpp"

namespace simsiam {

/// torchvision's IMG_EXTENSIONS.
inline const std::vector<std::string> kImageExtensions{".jpg", ".jpeg", ".png",  ".ppm", ".bmp",
                                                       ".pgm", ".tif",  ".tiff", ".webp"};

/// Options of `ImageFolder`.
struct ImageFolderOptions {
  /// File extensions kept, compared case-insensitively.
  TORCH_ARG(std::vector<std::string>, extensions) = kImageExtensions;
  /// When set, the scan is saved to this file and later starts read it instead of rescanning,
  /// as long as the root and every class folder's modification time are unchanged.
  TORCH_ARG(std::string, index_cache) = "";

 public:
  /// Fails with a message naming the first bad setting.
  void check() const {
    TORCH_CHECK(!extensions().empty(), "simsiam::ImageFolder: expected at least one extension");
  }
};

/// The files of an image folder and their labels. Scanning errors (missing or empty root, a
/// class folder without images, an unreadable folder) fail here, naming the path.
class ImageFolder {
 public:
  explicit ImageFolder(std::string root, ImageFolderOptions options = {})
      : root_(std::move(root)), options_((options.check(), std::move(options))) {
    constexpr const char* kWhere = "simsiam::ImageFolder";
    std::error_code error;
    TORCH_CHECK(std::filesystem::is_directory(root_, error), kWhere, ": '", root_,
                "' is not a directory", error ? " (" + error.message() + ")" : "");
    for (const auto& extension : options_.extensions()) extensions_.push_back(lower(extension));
    const auto stamps = class_stamps();
    if (!options_.index_cache().empty() && load_index(stamps)) return;
    scan(stamps);
    if (!options_.index_cache().empty()) save_index(stamps);
  }

  int64_t size() const { return static_cast<int64_t>(files_.size()); }
  const std::string& root() const { return root_; }
  const std::vector<std::string>& classes() const { return classes_; }
  /// Path of file `i`, relative to the root.
  const std::string& relative_path(int64_t i) const { return files_.at(static_cast<size_t>(i)); }
  std::string path(int64_t i) const {
    return (std::filesystem::path(root_) / relative_path(i)).string();
  }
  int64_t label(int64_t i) const { return labels_.at(static_cast<size_t>(i)); }
  /// Whether the last construction read the index cache instead of scanning.
  bool from_cache() const { return from_cache_; }

  /// The bytes of file `i` (decode with `decode_image` or `DecodedViews`).
  std::string read(int64_t i) const {
    return detail::read_file_bytes(path(i), "simsiam::ImageFolder");
  }

 private:
  static std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
  }

  bool is_image(const std::filesystem::path& file) const {
    const auto extension = lower(file.extension().string());
    return std::find(extensions_.begin(), extensions_.end(), extension) != extensions_.end();
  }

  /// Class folder names, sorted, with their modification times (the cache's validity check).
  std::vector<std::pair<std::string, int64_t>> class_stamps() const {
    std::vector<std::pair<std::string, int64_t>> out;
    std::error_code error;
    for (std::filesystem::directory_iterator it(root_, error), end; !error && it != end;
         it.increment(error)) {
      if (!it->is_directory()) continue;
      const auto time = std::filesystem::last_write_time(it->path(), error);
      out.emplace_back(it->path().filename().string(),
                       static_cast<int64_t>(time.time_since_epoch().count()));
    }
    TORCH_CHECK(!error, "simsiam::ImageFolder: cannot list '", root_, "': ", error.message());
    std::sort(out.begin(), out.end());
    TORCH_CHECK(!out.empty(), "simsiam::ImageFolder: found no class folders in '", root_,
                "' (expected root/<class>/<image files>)");
    return out;
  }

  void scan(const std::vector<std::pair<std::string, int64_t>>& stamps) {
    for (size_t label = 0; label < stamps.size(); ++label) {
      const auto dir = std::filesystem::path(root_) / stamps[label].first;
      std::vector<std::pair<std::string, std::string>> found;  // (folder, name), sorted as os.walk
      std::error_code error;
      const auto follow = std::filesystem::directory_options::follow_directory_symlink;
      for (std::filesystem::recursive_directory_iterator it(dir, follow, error), end;
           !error && it != end; it.increment(error)) {
        if (it->is_regular_file() && is_image(it->path())) {
          found.emplace_back(it->path().parent_path().string(), it->path().filename().string());
        }
      }
      TORCH_CHECK(!error, "simsiam::ImageFolder: cannot read '", dir.string(),
                  "': ", error.message());
      TORCH_CHECK(!found.empty(), "simsiam::ImageFolder: class folder '", dir.string(),
                  "' holds no image files (extensions .jpg, .jpeg, .png, ... in any case)");
      std::sort(found.begin(), found.end());
      for (const auto& [folder, name] : found) {
        files_.push_back(
            std::filesystem::relative(std::filesystem::path(folder) / name, root_).string());
        labels_.push_back(static_cast<int64_t>(label));
      }
      classes_.push_back(stamps[label].first);
    }
  }

  static constexpr const char* kIndexHeader = "simsiam-image-folder-index 1";

  void save_index(const std::vector<std::pair<std::string, int64_t>>& stamps) const {
    std::ostringstream out;
    out << kIndexHeader << "\n" << root_ << "\n" << stamps.size() << "\n";
    for (const auto& [name, time] : stamps) out << time << "\t" << name << "\n";
    out << files_.size() << "\n";
    for (size_t i = 0; i < files_.size(); ++i) out << labels_[i] << "\t" << files_[i] << "\n";
    detail::write_file_atomically(out.str(), options_.index_cache(), "simsiam::ImageFolder");
  }

  /// Reads the index cache when it describes this root as it is now; false otherwise.
  bool load_index(const std::vector<std::pair<std::string, int64_t>>& stamps) {
    std::ifstream in(options_.index_cache());
    if (!in) return false;
    std::string line;
    if (!std::getline(in, line) || line != kIndexHeader) return false;
    if (!std::getline(in, line) || line != root_) return false;
    size_t count = 0;
    if (!(in >> count) || count != stamps.size()) return false;
    for (const auto& [name, time] : stamps) {
      int64_t stored_time = 0;
      std::string stored_name;
      if (!(in >> stored_time) || in.get() != '\t' || !std::getline(in, stored_name) ||
          stored_time != time || stored_name != name) {
        return false;
      }
    }
    size_t files = 0;
    if (!(in >> files)) return false;
    std::vector<std::string> paths(files);
    std::vector<int64_t> labels(files);
    for (size_t i = 0; i < files; ++i) {
      if (!(in >> labels[i]) || in.get() != '\t' || !std::getline(in, paths[i])) return false;
      if (labels[i] < 0 || labels[i] >= static_cast<int64_t>(stamps.size())) return false;
    }
    files_ = std::move(paths);
    labels_ = std::move(labels);
    for (const auto& stamp : stamps) classes_.push_back(stamp.first);
    from_cache_ = true;
    return true;
  }

  std::string root_;
  ImageFolderOptions options_;
  std::vector<std::string> extensions_;  ///< options_.extensions() in lower case
  std::vector<std::string> classes_, files_;
  std::vector<int64_t> labels_;
  bool from_cache_ = false;
};

/// The JPEG decoding scale, in eighths, for crops `boxes` [n, 4] (top, left, height, width)
/// that will be resized to `size`: the smallest of 1/8, 1/4, 1/2 (libjpeg-turbo's fast scaled
/// inverse DCTs) at which every box is still at least `size` pixels on both sides, else full
/// size. (The other M/8 scales decode more slowly than full size: measured 1.1-1.5 ms against
/// 1.0 ms for 500x375.)
inline int jpeg_eighths(const torch::Tensor& boxes, int64_t size) {
  const auto smallest =
      std::min(boxes.select(1, 2).min().item<int64_t>(), boxes.select(1, 3).min().item<int64_t>());
  for (int eighths : {1, 2, 4}) {
    if (smallest * eighths >= size * 8) return eighths;
  }
  return 8;
}

/// Two random-resized-crop views of one encoded image, as [3, size, size] in `crop`'s dtype:
/// float in [0, 1] by default, uint8 to send them to a GPU in a quarter of the bytes.
/// The boxes are drawn from the image's full size (from the JPEG header, before decoding), with
/// `crop`'s distribution; a JPEG is then decoded at 1/8, 1/4 or 1/2 of its size when both boxes
/// stay at least `crop.options().size()` wide there (`jpeg_eighths`), and the boxes are scaled with
/// it.
struct DecodedViews {
  augment::RandomResizedCrop crop;
  bool scaled_decode = true;

  std::pair<torch::Tensor, torch::Tensor> operator()(const std::string& bytes,
                                                     const std::string& name,
                                                     torch::Generator& generator) const {
    torch::Tensor image;
    torch::Tensor boxes;
    if (detail::is_jpeg(bytes)) {
      const auto header = jpeg_header(bytes, name);
      boxes = crop.sample_boxes(2, header.height, header.width, generator);
      const int eighths = scaled_decode ? jpeg_eighths(boxes, crop.options().size()) : 8;
      image = decode_jpeg(bytes, header, name, eighths);
      if (eighths < 8) boxes = scale_boxes(boxes, eighths, image.size(1), image.size(2));
    } else {
      image = decode_image(bytes, name);
      boxes = crop.sample_boxes(2, image.size(1), image.size(2), generator);
    }
    const auto one = image.unsqueeze(0);
    const auto view = [&](int64_t i) {
      return augment::functional::resized_crop(one, boxes.narrow(0, i, 1), crop.options().size(),
                                               crop.options().dtype())[0];
    };
    return {view(0), view(1)};
  }

  /// Boxes in full-size pixels mapped onto the image decoded at eighths/8 (height x width).
  static torch::Tensor scale_boxes(const torch::Tensor& boxes, int eighths, int64_t height,
                                   int64_t width) {
    auto out = boxes.clone();
    auto b = out.accessor<int64_t, 2>();
    for (int64_t i = 0; i < out.size(0); ++i) {
      const int64_t top = b[i][0] * eighths / 8, left = b[i][1] * eighths / 8;
      b[i][2] = std::max<int64_t>(1, std::min(height - top, (b[i][2] * eighths + 4) / 8));
      b[i][3] = std::max<int64_t>(1, std::min(width - left, (b[i][3] * eighths + 4) / 8));
      b[i][0] = top;
      b[i][1] = left;
    }
    return out;
  }
};

}  // namespace simsiam
