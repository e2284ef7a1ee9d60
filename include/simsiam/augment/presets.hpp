// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief The augmentation recipes of the paper, ready to use.
#pragma once

#include <cstdint>

#include "simsiam/augment/transforms.hpp"

namespace simsiam::augment {

/// ImageNet channel statistics (torchvision, official `main_simsiam.py`).
inline const std::vector<double> kImageNetMean{0.485, 0.456, 0.406};
inline const std::vector<double> kImageNetStd{0.229, 0.224, 0.225};
/// CIFAR-10 statistics used by the SimSiam CIFAR demos.
inline const std::vector<double> kCifarMean{0.4914, 0.4822, 0.4465};
inline const std::vector<double> kCifarStd{0.2023, 0.1994, 0.2010};
/// Fashion-MNIST statistics over the training set.
inline const std::vector<double> kFashionMnistMean{0.2860};
inline const std::vector<double> kFashionMnistStd{0.3530};

/// The official ImageNet recipe (MoCo v2's, `main_simsiam.py`): RandomResizedCrop(size, scale
/// 0.2-1), ColorJitter(0.4, 0.4, 0.4, 0.1) with p = 0.8, RandomGrayscale(0.2), Gaussian blur
/// sigma 0.1-2 with p = 0.5, horizontal flip, ImageNet normalisation.
inline auto simsiam_imagenet(int64_t size = 224) {
  return Compose(RandomResizedCrop(size, {0.2, 1.0}),
                 RandomApply(ColorJitter(0.4, 0.4, 0.4, 0.1), 0.8), RandomGrayscale(0.2),
                 RandomApply(GaussianBlur({0.1, 2.0}), 0.5), RandomHorizontalFlip(0.5),
                 Normalize(kImageNetMean, kImageNetStd));
}

/// The CIFAR recipe of the paper's Appendix: the ImageNet one at 32x32 without blur.
inline auto simsiam_cifar(int64_t size = 32) {
  return Compose(RandomResizedCrop(size, {0.2, 1.0}),
                 RandomApply(ColorJitter(0.4, 0.4, 0.4, 0.1), 0.8), RandomGrayscale(0.2),
                 RandomHorizontalFlip(0.5), Normalize(kCifarMean, kCifarStd));
}

/// One-channel data (Fashion-MNIST): the ImageNet recipe without the operations grey images
/// lack: crop, brightness/contrast jitter with p = 0.8 (no saturation or hue), Gaussian blur
/// sigma 0.1-2 with p = 0.5 (kernel 3 at 28x28), flip, normalisation with the given statistics.
/// The blur is worth about half a kNN point in the quick start (docs/performance.md).
inline auto simsiam_grayscale(int64_t size = 28, std::vector<double> mean = kFashionMnistMean,
                              std::vector<double> std = kFashionMnistStd) {
  return Compose(RandomResizedCrop(size, {0.2, 1.0}),
                 RandomApply(ColorJitter(0.4, 0.4, 0.0, 0.0), 0.8),
                 RandomApply(GaussianBlur({0.1, 2.0}), 0.5), RandomHorizontalFlip(0.5),
                 Normalize(std::move(mean), std::move(std)));
}

}  // namespace simsiam::augment
