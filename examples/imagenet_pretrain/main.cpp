// SPDX-License-Identifier: BSD-3-Clause
// SimSiam pretraining on ImageNet: facebookresearch/simsiam main_simsiam.py in C++.
//
// Defaults are the paper's run: ResNet-50, projector 2048 (3 layers), predictor 512, total batch
// 512, lr 0.05 x batch / 256, momentum 0.9, weight decay 1e-4, 100 epochs, cosine decay, fixed
// predictor lr, the MoCo v2 augmentations at 224, drop-last, SyncBN across processes. Expected:
// 68.1% linear top-1 after `imagenet_linear_eval` (paper Table 4 / SPEC).
//
//   imagenet_pretrain [flags] DATA          DATA/train/<class>/*.JPEG (and DATA/val for kNN)
//   simsiam_launch --nproc 8 imagenet_pretrain DATA                  8 GPUs of one machine
//   simsiam_launch --nproc-per-node 8 --nnodes 2 --node-rank K --master-addr HOST
//       imagenet_pretrain DATA               on each of two machines (docs/imagenet.md)
//
// On CUDA: mixed precision and channels_last (--no-amp, --no-channels-last to turn off); the
// loader's threads decode and crop on the CPU into pinned memory as uint8 (a quarter of the
// bytes of float), the rest of the augmentations runs on the GPU. Every epoch writes checkpoint.pt
// and checkpoint_XXXX.pt (resume with --resume), metrics.csv/.jsonl, metrics.png and the kNN top-1
// on held-out images; at the end, backbone_torchvision.pt for
// torchvision.models.resnet50().load_state_dict(..., strict=False).
#include <CLI/CLI.hpp>
#include <simsiam/data/folder_source.hpp>
#include <simsiam/data/loader.hpp>
#include <simsiam/model/pytorch_interop.hpp>
#include <simsiam/simsiam.hpp>
#include <simsiam/train/allocator.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include "../common/imagenet.hpp"
#include "../common/run.hpp"

namespace {

struct Config : imagenet::CommonFlags {
  int64_t start_epoch = 0;
  std::string resume;
  int64_t world_size = -1, rank = -1;  // official flags; the processes come from the launcher
  bool multiprocessing_distributed = false;
  int64_t dim = 2048;
  int64_t pred_dim = 512;
  bool fix_pred_lr = true;
  // Beyond the official flags.
  int64_t warmup_epochs = -1;  // -1: 10 for a total batch of 1024 or more (the paper), else 0
  std::string out = "runs";
  bool no_amp = false, no_channels_last = false;  // both on for CUDA, off for CPU
  int64_t knn_every = 1;
  int64_t knn_per_class = 10;
  std::string index_cache;
};

simsiam::RunConfig run_config(const Config& c) {
  return {{"arch", c.arch},
          {"batch_size", std::to_string(c.batch_size)},
          {"lr", examples::exact(c.lr)},
          {"weight_decay", examples::exact(c.weight_decay)},
          {"dim", std::to_string(c.dim)},
          {"pred_dim", std::to_string(c.pred_dim)},
          {"fix_pred_lr", c.fix_pred_lr ? "true" : "false"},
          {"image_size", std::to_string(c.image_size)},
          {"warmup_epochs", std::to_string(c.warmup_epochs)}};
}

/// Keeps the crop's output as it is: the rest of the augmentations runs on the GPU.
struct CropOnly {
  torch::Tensor operator()(const torch::Tensor& views, torch::Generator& /*generator*/) const {
    return views;
  }
};

/// The official recipe: lr = lr x batch / 256, cosine, the predictor's lr fixed; warmup for
/// large batches as the paper.
simsiam::SgdRecipe make_recipe(const Config& config) {
  return simsiam::SgdRecipe()
      .base_lr(config.lr)
      .batch_size(config.batch_size)
      .momentum(config.momentum)
      .weight_decay(config.weight_decay)
      .fix_predictor_lr(config.fix_pred_lr)
      .warmup(config.warmup_epochs >= 0   ? config.warmup_epochs
              : config.batch_size >= 1024 ? 10
                                          : 0);
}

simsiam::TrainerOptions trainer_options(const Config& config, torch::Device device,
                                        const imagenet::Ranks& ranks, const std::string& run_dir) {
  const bool cuda = device.is_cuda();
  return simsiam::TrainerOptions()
      .epochs(config.epochs)
      .run_dir(run_dir)
      .keep_checkpoints(true)
      .resume(config.resume)
      .device(device)
      .amp(cuda && !config.no_amp)
      .channels_last(cuda && !config.no_channels_last)
      .config(run_config(config))
      .communicator(ranks.group.get())
      .progress(simsiam::ProgressBarOptions().every(config.print_freq))
      .metrics(simsiam::MetricsLogOptions().every(config.print_freq));
}

/// kNN monitor: knn_per_class images per class of DATA/train as the bank, of DATA/val (or the
/// next ones of DATA/train) as queries, centre views as main_lincls.py validates; null when off.
std::shared_ptr<simsiam::KnnMonitor> make_knn_monitor(const Config& config,
                                                      const simsiam::ImageFolder& train,
                                                      const imagenet::Ranks& ranks) {
  if (config.knn_every <= 0 || config.knn_per_class <= 0) return nullptr;
  // Each process decodes only its share (ImageNet at 10 per class: 1.5 GB of uint8 per set).
  const auto decode = [&](const simsiam::ImageFolder& folder, int64_t skip) {
    return imagenet::decode_subset(folder, config.knn_per_class, skip, config.image_size,
                                   ranks.rank(), ranks.world());
  };
  const auto bank = decode(train, 0);
  std::pair<torch::Tensor, torch::Tensor> queries;
  if (std::filesystem::is_directory(config.data + "/val")) {
    simsiam::ImageFolder val(config.data + "/val");
    TORCH_CHECK(val.classes() == train.classes(), "expected the same classes in '", config.data,
                "/train' and '/val'");
    queries = decode(val, 0);
  } else {
    queries = decode(train, config.knn_per_class);
  }
  const auto classes = static_cast<int64_t>(train.classes().size());
  return std::make_shared<simsiam::KnnMonitor>(
      bank.first, bank.second, queries.first, queries.second, classes,
      simsiam::KnnMonitorOptions()
          .every(config.knn_every)
          .batch_size(256)
          .presharded(true)
          .knn(simsiam::KnnOptions().k(std::min<int64_t>(200, config.knn_per_class * classes)))
          .transform(imagenet::to_input));
}

void print_notes(const Config& config) {
  if (config.multiprocessing_distributed || config.world_size > 0 || config.rank >= 0) {
    std::fprintf(stderr,
                 "note: --multiprocessing-distributed, --world-size and --rank are taken from "
                 "the launcher here (simsiam_launch or torchrun set WORLD_SIZE and RANK)\n");
  }
  if (config.start_epoch != 0) {
    std::fprintf(stderr, "note: --start-epoch is ignored; --resume restores the epoch\n");
  }
}

int run(Config config) {
  const auto started = std::chrono::steady_clock::now();
  print_notes(config);
  const auto [device, ranks] = imagenet::place(config);
  if (config.seed >= 0) torch::manual_seed(static_cast<uint64_t>(config.seed));

  // Data: DATA/train, the MoCo v2 recipe; crops on the CPU, the rest where the model trains.
  simsiam::ImageFolder train(config.data + "/train",
                             simsiam::ImageFolderOptions().index_cache(config.index_cache));
  const auto [crop, post] =
      simsiam::augment::split_crop(simsiam::augment::simsiam_imagenet(config.image_size));
  const auto loader_options = imagenet::loader_options(config, ranks, device, /*drop_last=*/true);

  auto model = simsiam::SimSiam<simsiam::ResNet>(
      imagenet::make_backbone(config.arch),
      simsiam::SimSiamOptions().dim(config.dim).pred_dim(config.pred_dim));
  const auto recipe = make_recipe(config);
  auto sgd = simsiam::make_sgd(model, recipe);
  auto schedule = simsiam::make_cosine_schedule(sgd, recipe, config.epochs);
  const std::string run_dir =
      examples::run_folder(config.out, "imagenet_pretrain", config.resume, ranks.main());
  auto options = trainer_options(config, device, ranks, run_dir);
  // On a GPU the crops travel as uint8 and become float there, before the rest of the recipe.
  auto byte_crop = simsiam::augment::RandomResizedCrop(
      simsiam::augment::RandomResizedCropOptions(crop.options()).dtype(torch::kByte));
  if (device.is_cuda()) {
    options
        .view_transform([post = post](const torch::Tensor& views, torch::Generator& generator) {
          return post(simsiam::augment::ToFloat()(views, generator), generator);
        })
        .view_transform_seed(loader_options.seed());
  }
  const auto knn = make_knn_monitor(config, train, ranks);
  if (ranks.main()) {
    std::printf(
        "SimSiam %s on %lld images (%lld classes), total batch %lld on %lld process%s, "
        "lr %.4g, %d epochs, %s%s%s; run folder %s\n",
        config.arch.c_str(), static_cast<long long>(train.size()),
        static_cast<long long>(train.classes().size()), static_cast<long long>(config.batch_size),
        static_cast<long long>(ranks.world()), ranks.world() > 1 ? "es" : "", recipe.lr(),
        config.epochs, device.str().c_str(), options.amp() ? ", mixed precision" : "",
        options.channels_last() ? ", channels_last" : "", run_dir.c_str());
    std::fflush(stdout);
  }

  const auto train_with = [&](auto source) {
    simsiam::Loader<decltype(source)> loader(std::move(source), loader_options);
    simsiam::Trainer trainer(model, loader, sgd, &schedule, options);
    if (knn) trainer.add_hook(knn);
    return trainer.fit();
  };
  using CpuSource = simsiam::FolderSource<std::decay_t<decltype(post)>>;
  using GpuSource = simsiam::FolderSource<CropOnly>;
  const auto result =
      device.is_cuda()
          ? train_with(GpuSource{std::move(train), simsiam::DecodedViews{byte_crop}, CropOnly{}})
          : train_with(CpuSource{std::move(train), simsiam::DecodedViews{crop}, post});
  if (!ranks.main()) return 0;
  simsiam::save_torchvision_backbone(*model->backbone(), run_dir + "/backbone_torchvision.pt");
  std::printf(
      "done: %lld epochs, %lld steps%s%s in %.1f min; %s/checkpoint.pt, "
      "backbone_torchvision.pt; next: imagenet_linear_eval --pretrained %s/checkpoint.pt\n",
      static_cast<long long>(result.epochs_completed), static_cast<long long>(result.steps),
      knn ? ", kNN top-1 " : "",
      knn ? (std::to_string(100 * knn->last()).substr(0, 5) + "%").c_str() : "",
      examples::minutes_since(started), run_dir.c_str(), run_dir.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Config config;
  CLI::App app{"SimSiam ImageNet pretraining (main_simsiam.py's flags)"};
  imagenet::add_common_flags(app, config,
                             "Dataset root with train/ (and val/ for the kNN monitor)");
  app.add_option("--start-epoch", config.start_epoch, "Ignored: --resume restores the epoch");
  app.add_option("--resume", config.resume, "Continue from this checkpoint (in its run folder)")
      ->check(CLI::ExistingFile);
  app.add_option("--world-size", config.world_size, "Taken from the launcher (WORLD_SIZE)");
  app.add_option("--rank", config.rank, "Taken from the launcher (RANK)");
  app.add_flag("--multiprocessing-distributed", config.multiprocessing_distributed,
               "Accepted for main_simsiam.py's command lines; use simsiam_launch or torchrun");
  app.add_option("--dim", config.dim, "Projector output dimension")->capture_default_str();
  app.add_option("--pred-dim", config.pred_dim, "Predictor hidden dimension")
      ->capture_default_str();
  app.add_flag("--fix-pred-lr,!--no-fix-pred-lr", config.fix_pred_lr,
               "Keep the predictor at the initial lr (the paper's setting; on by default)");
  app.add_option("--warmup-epochs", config.warmup_epochs,
                 "Linear warmup epochs (-1: 10 for a total batch >= 1024, as the paper, else 0)")
      ->capture_default_str();
  app.add_option("--out", config.out, "Where run folders are created")->capture_default_str();
  app.add_flag("--no-amp", config.no_amp, "No mixed precision (it is on for CUDA)");
  app.add_flag("--no-channels-last", config.no_channels_last,
               "No channels_last layout (it is on for CUDA)");
  app.add_option("--knn-every", config.knn_every, "kNN monitor every N epochs (0: off)")
      ->capture_default_str();
  app.add_option("--knn-per-class", config.knn_per_class, "kNN bank and query images per class")
      ->capture_default_str();
  app.add_option("--index-cache", config.index_cache, "File caching the scan of DATA/train");
  CLI11_PARSE(app, argc, argv);
  return examples::report_failures("imagenet_pretrain", [&] { return run(config); });
}
