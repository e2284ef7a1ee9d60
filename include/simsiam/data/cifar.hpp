// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief CIFAR-10 in its binary version (`cifar-10-batches-bin`).
///
/// Each file is 10,000 records of 3,073 bytes: the label (0-9), then the 32x32 red, green and
/// blue planes, row by row. `data_batch_1.bin` ... `data_batch_5.bin` are the training set,
/// `test_batch.bin` the test set.
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <string>
#include <vector>

#include "simsiam/data/idx.hpp"

namespace simsiam {

/// The bytes of one CIFAR-10 binary file as uint8 images [N, 3, 32, 32] and int64 labels [N].
/// Data that is not a whole number of records, or holds a label above 9, fails naming `path`.
inline LabeledImages decode_cifar10(const std::string& bytes, const std::string& path) {
  constexpr const char* kWhere = "simsiam::read_cifar10";
  constexpr int64_t kRecord = 1 + 3 * 32 * 32;
  const auto size = static_cast<int64_t>(bytes.size());
  TORCH_CHECK(size > 0 && size % kRecord == 0, kWhere, ": '", path, "' is ",
              size == 0 ? "empty" : "truncated or not a CIFAR-10 binary batch",
              ": expected a whole number of ", kRecord, "-byte records, got ", size, " bytes");
  const int64_t n = size / kRecord;
  const auto records =
      torch::from_blob(const_cast<char*>(bytes.data()), {n, kRecord}, torch::kUInt8).clone();
  auto labels = records.select(1, 0).to(torch::kLong);
  const int64_t largest = labels.max().item<int64_t>();
  TORCH_CHECK(largest <= 9, kWhere, ": '", path, "' is not a CIFAR-10 batch: label ", largest,
              " (expected 0-9)");
  return {records.narrow(1, 1, kRecord - 1).reshape({n, 3, 32, 32}).contiguous(),
          std::move(labels)};
}

/// Reads one CIFAR-10 binary file (see `decode_cifar10`).
inline LabeledImages read_cifar10_batch(const std::string& path) {
  return decode_cifar10(detail::read_file_bytes(path, "simsiam::read_cifar10"), path);
}

/// The training (`data_batch_1.bin` ... `data_batch_5.bin`) or test (`test_batch.bin`) set in
/// `dir`, the layout of the official `cifar-10-binary.tar.gz`.
inline LabeledImages read_cifar10(const std::string& dir, bool train) {
  std::vector<std::string> names;
  if (train) {
    for (int i = 1; i <= 5; ++i) names.push_back("data_batch_" + std::to_string(i) + ".bin");
  } else {
    names.push_back("test_batch.bin");
  }
  std::vector<torch::Tensor> images, labels;
  for (const auto& name : names) {
    auto part = read_cifar10_batch((std::filesystem::path(dir) / name).string());
    images.push_back(std::move(part.images));
    labels.push_back(std::move(part.labels));
  }
  return {torch::cat(images), torch::cat(labels)};
}

}  // namespace simsiam
