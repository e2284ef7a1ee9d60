// SPDX-License-Identifier: BSD-3-Clause
// What the two ImageNet examples share: the architectures, joining the processes of a run, the
// evaluation transform (Resize(256 / 224 x size) + CenterCrop(size)) and a labelled subset of an
// image folder decoded into memory.
#pragma once

#include <CLI/CLI.hpp>
#include <simsiam/augment/functional.hpp>
#include <simsiam/augment/presets.hpp>
#include <simsiam/backbones/resnet.hpp>
#include <simsiam/data/image.hpp>
#include <simsiam/data/image_folder.hpp>
#include <simsiam/data/loader.hpp>
#include <simsiam/distributed/process_group.hpp>
#include <simsiam/train/allocator.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace imagenet {

/// The flags both programs take with main_simsiam.py's / main_lincls.py's names, and a few more.
struct CommonFlags {
  std::string data;
  std::string arch = "resnet50";
  int64_t workers = 32;  // per process (the official scripts divide -j by the GPUs of a node)
  int epochs = 100;
  int64_t batch_size = 512;  // total over all processes
  double lr = 0.05;
  double momentum = 0.9;
  double weight_decay = 1e-4;
  int64_t print_freq = 10;
  std::string dist_url;
  std::string dist_backend = "auto";
  int64_t seed = -1;
  int64_t gpu = -1;
  std::string device = "auto";
  int64_t image_size = 224;
  int threads = 0;
};

inline void add_common_flags(CLI::App& app, CommonFlags& flags, const char* data_help) {
  app.add_option("data", flags.data, data_help)->required()->check(CLI::ExistingDirectory);
  app.add_option("-a,--arch", flags.arch, "resnet10|18|34|50|101|152")->capture_default_str();
  app.add_option("-j,--workers", flags.workers, "Loader threads per process")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--epochs", flags.epochs, "Total epochs")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("-b,--batch-size", flags.batch_size, "Total batch over all processes")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--lr,--learning-rate", flags.lr, "Base lr (scaled by batch / 256)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--momentum", flags.momentum, "Momentum")->capture_default_str();
  app.add_option("--wd,--weight-decay", flags.weight_decay, "Weight decay")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("-p,--print-freq", flags.print_freq, "Print every N steps")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--dist-url", flags.dist_url,
                 "tcp://HOST:PORT of rank 0 (else MASTER_ADDR and MASTER_PORT)");
  app.add_option("--dist-backend", flags.dist_backend, "auto, gloo or nccl")->capture_default_str();
  app.add_option("--seed", flags.seed, "Seed for the weights and the data order");
  app.add_option("--gpu", flags.gpu, "Train on this GPU (one process)");
  app.add_option("--device", flags.device, "auto, cpu or cuda")->capture_default_str();
  app.add_option("--image-size", flags.image_size, "Crop size")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--threads", flags.threads, "LibTorch threads (0: LibTorch's default)");
}

/// --arch: torchvision's ResNets, and resnet10 (BasicBlocks [1, 1, 1, 1]) for quick runs.
inline simsiam::ResNet make_backbone(const std::string& arch) {
  if (arch == "resnet10") {
    return simsiam::ResNet(simsiam::ResNetOptions(simsiam::ResNetBlock::kBasic, {1, 1, 1, 1}));
  }
  const std::vector<std::pair<std::string, int64_t>> depths{
      {"resnet18", 18}, {"resnet34", 34}, {"resnet50", 50}, {"resnet101", 101}, {"resnet152", 152}};
  for (const auto& [name, depth] : depths) {
    if (name == arch) return simsiam::ResNet(simsiam::ResNetOptions(depth));
  }
  TORCH_CHECK(false,
              "--arch: expected resnet10, resnet18, resnet34, resnet50, resnet101 or "
              "resnet152, got '",
              arch, "'");
  return simsiam::ResNet(nullptr);
}

/// The processes of the run: torchrun's / simsiam_launch's variables, optionally overridden by
/// the official --dist-url tcp://HOST:PORT and --dist-backend. Null for one process.
struct Ranks {
  simsiam::distributed::DistributedOptions options;
  std::unique_ptr<simsiam::distributed::ProcessGroup> group;
  int64_t rank() const { return options.rank(); }
  int64_t world() const { return options.world_size(); }
  bool main() const { return options.rank() == 0; }
};

inline Ranks join(const std::string& dist_url, const std::string& backend, torch::Device device) {
  Ranks ranks;
  ranks.options = simsiam::distributed::DistributedOptions::from_env();
  if (!dist_url.empty()) {
    const std::string prefix = "tcp://";
    const auto colon = dist_url.rfind(':');
    TORCH_CHECK(
        dist_url.rfind(prefix, 0) == 0 && colon != std::string::npos && colon > prefix.size(),
        "--dist-url: expected tcp://HOST:PORT, got '", dist_url, "'");
    ranks.options.master_addr(dist_url.substr(prefix.size(), colon - prefix.size()));
    ranks.options.master_port(std::stoll(dist_url.substr(colon + 1)));
  }
  ranks.options.backend(backend).device(device);
  if (ranks.world() > 1) {
    ranks.group = std::make_unique<simsiam::distributed::ProcessGroup>(ranks.options);
  }
  return ranks;
}

/// --device auto: the GPU of this process (LOCAL_RANK) when CUDA is available, else the CPU.
inline torch::Device pick_device(const std::string& name, int64_t local_rank) {
  if (name == "cpu") return torch::kCPU;
  if (name == "cuda" || (name == "auto" && torch::cuda::is_available())) {
    TORCH_CHECK(torch::cuda::is_available(), "--device cuda: CUDA is not available");
    return torch::Device(torch::kCUDA,
                         static_cast<c10::DeviceIndex>(local_rank % torch::cuda::device_count()));
  }
  TORCH_CHECK(name == "auto", "--device: expected auto, cpu or cuda, got '", name, "'");
  return torch::kCPU;
}

/// Where this process runs: its device and its place among the ranks.
struct Placement {
  torch::Device device;
  Ranks ranks;
};

/// How both programs start: the thread count (--threads), the device (--gpu, else --device with
/// LOCAL_RANK's GPU), the process group, and a check that the total batch splits over the ranks.
inline Placement place(const CommonFlags& config) {
  simsiam::keep_freed_memory();
  if (config.threads > 0) torch::set_num_threads(config.threads);
  const auto local_rank = simsiam::distributed::DistributedOptions::from_env().local_rank();
  const auto device = pick_device(config.gpu >= 0 ? "cuda" : config.device,
                                  config.gpu >= 0 ? config.gpu : local_rank);
  auto ranks = join(config.dist_url, config.dist_backend, device);
  TORCH_CHECK(config.batch_size % ranks.world() == 0, "--batch-size ", config.batch_size,
              " must be a multiple of the ", ranks.world(), " processes");
  return {device, std::move(ranks)};
}

/// This rank's share of a total batch of --batch-size, with --workers, in the order of --seed,
/// pinned for `device` when it is a GPU.
inline simsiam::LoaderOptions loader_options(const CommonFlags& config, const Ranks& ranks,
                                             torch::Device device, bool drop_last) {
  return simsiam::LoaderOptions()
      .device(device)
      .batch_size(config.batch_size / ranks.world())
      .workers(config.workers)
      .seed(config.seed >= 0 ? static_cast<uint64_t>(config.seed) : 0)
      .drop_last(drop_last)
      .rank(ranks.rank())
      .world_size(ranks.world());
}

/// main_lincls.py's validation transform, Resize(256) + CenterCrop(224) at 224 (the short side
/// to size x 256 / 224, then the central size x size), as one crop of the central square and a
/// bilinear resize: uint8 RGB [3, H, W] -> uint8 [3, size, size].
inline torch::Tensor center_view(const torch::Tensor& image, int64_t size) {
  const int64_t height = image.size(1), width = image.size(2);
  const double resized = std::round(static_cast<double>(size) * 256.0 / 224.0);
  const double scale = static_cast<double>(std::min(height, width)) / resized;
  const int64_t side = std::max<int64_t>(1, std::llround(static_cast<double>(size) * scale));
  const int64_t top = std::max<int64_t>(0, (height - side) / 2);
  const int64_t left = std::max<int64_t>(0, (width - side) / 2);
  const auto boxes =
      torch::tensor({top, left, std::min(side, height), std::min(side, width)}, torch::kLong)
          .view({1, 4});
  return simsiam::augment::functional::resized_crop(image.unsqueeze(0), boxes, size)
      .mul(255)
      .round()
      .clamp(0, 255)
      .to(torch::kUInt8)[0];
}

/// Up to `per_class` images of each class of `folder`, skipping the first `skip` of each class,
/// through `center_view`: uint8 [N, 3, size, size] and labels; of those, every `world`-th from
/// `rank` (this process's share). Unreadable images are skipped with a warning.
inline std::pair<torch::Tensor, torch::Tensor> decode_subset(const simsiam::ImageFolder& folder,
                                                             int64_t per_class, int64_t skip,
                                                             int64_t size, int64_t rank = 0,
                                                             int64_t world = 1) {
  std::vector<int64_t> seen(folder.classes().size(), 0);
  std::vector<torch::Tensor> images;
  std::vector<int64_t> labels;
  int64_t selected = 0;
  for (int64_t i = 0; i < folder.size(); ++i) {
    auto& count = seen[static_cast<size_t>(folder.label(i))];
    if (count >= skip + per_class) continue;
    if (count++ < skip) continue;
    if (selected++ % world != rank) continue;
    try {
      images.push_back(center_view(simsiam::decode_image(folder.read(i)), size));
      labels.push_back(folder.label(i));
    } catch (const c10::Error& e) {
      std::fprintf(stderr, "warning: skipped %s: %s\n", folder.path(i).c_str(),
                   e.what_without_backtrace());
    }
  }
  TORCH_CHECK(!images.empty(), "no readable images in '", folder.root(), "'");
  return {torch::stack(images), torch::tensor(labels, torch::kLong)};
}

/// uint8 [N, 3, H, W] -> float, ImageNet-normalised (the last step of every preset).
inline torch::Tensor to_input(const torch::Tensor& images) {
  return simsiam::augment::functional::normalize(images.to(torch::kFloat).div(255),
                                                 simsiam::augment::kImageNetMean,
                                                 simsiam::augment::kImageNetStd);
}

}  // namespace imagenet
