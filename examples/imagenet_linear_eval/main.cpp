// SPDX-License-Identifier: BSD-3-Clause
// SimSiam's linear evaluation on ImageNet: facebookresearch/simsiam main_lincls.py in C++.
//
// The pretrained backbone is frozen and kept in eval mode; only a linear classifier (fc,
// initialised N(0, 0.01), bias 0) trains, with LARS (the official --lars), total batch 4096,
// lr 0.1 x batch / 256, momentum 0.9, no weight decay, 90 epochs, cosine decay. Training images
// are RandomResizedCrop(224) + flip through the frozen backbone (each epoch sees new crops);
// validation is Resize(256) + CenterCrop(224); top-1 and top-5 after every epoch. At the end it
// checks that the backbone's weights and BN statistics did not change (main_lincls.py's
// sanity_check). The paper's result: 68.1% top-1 after 100 pretraining epochs.
//
//   imagenet_linear_eval --pretrained RUN/checkpoint.pt DATA       a checkpoint of
//       imagenet_pretrain, an official checkpoint_0099.pth.tar, or a torchvision state dict
//   simsiam_launch --nproc 8 imagenet_linear_eval --pretrained ... DATA
#include <CLI/CLI.hpp>
#include <simsiam/data/loader.hpp>
#include <simsiam/detail/file.hpp>
#include <simsiam/model/pytorch_interop.hpp>
#include <simsiam/simsiam.hpp>
#include <simsiam/train/allocator.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <sstream>
#include <string>

#include "../common/imagenet.hpp"
#include "../common/run.hpp"

namespace {

namespace A = simsiam::augment;

struct Config : imagenet::CommonFlags {
  Config() {  // main_lincls.py's defaults
    epochs = 90;
    batch_size = 4096;
    lr = 0.1;
    weight_decay = 0.0;
  }
  std::string pretrained;
  std::string resume;  // accepted for main_lincls.py's command lines: not supported yet
  bool lars = true;
  // Beyond the official flags.
  int64_t dim = 2048, pred_dim = 512;  // of an imagenet_pretrain checkpoint
  std::string out;                     // results.json here when set
};

/// One view per image of a folder, built on the loader's threads: `view(decoded images,
/// generator)` makes the batch. Unreadable images are skipped and reported by the loader.
struct OneViewSource {
  simsiam::ImageFolder folder;
  std::function<torch::Tensor(const std::vector<torch::Tensor>&, torch::Generator&)> view;

  int64_t size() const { return folder.size(); }
  simsiam::TwoViewBatch operator()(const std::vector<int64_t>& indices, torch::Generator& generator,
                                   std::vector<simsiam::BadImage>& bad) const {
    std::vector<torch::Tensor> images;
    std::vector<int64_t> labels, kept;
    for (const int64_t i : indices) {
      try {
        images.push_back(simsiam::decode_image(folder.read(i)));
        labels.push_back(folder.label(i));
        kept.push_back(i);
      } catch (const c10::Error& e) {
        bad.push_back({folder.path(i), e.what_without_backtrace()});
      }
    }
    if (images.empty()) return {};
    return {view(images, generator), torch::Tensor(), torch::tensor(labels, torch::kLong),
            torch::tensor(kept, torch::kLong)};
  }
};

/// The frozen backbone: from an imagenet_pretrain checkpoint, an official checkpoint or a
/// torchvision state dict, whichever `path` is.
void load_pretrained(simsiam::ResNet& backbone, const Config& config) {
  TORCH_CHECK(std::filesystem::is_regular_file(config.pretrained), "--pretrained: '",
              config.pretrained, "' does not exist");
  std::string ours;
  try {
    simsiam::SimSiam<simsiam::ResNet> model(
        backbone, simsiam::SimSiamOptions().dim(config.dim).pred_dim(config.pred_dim));
    simsiam::load_checkpoint(config.pretrained, *model, nullptr);
    return;  // the backbone module is shared with the model
  } catch (const c10::Error& e) {
    ours = e.what_without_backtrace();
  }
  try {
    simsiam::load_torchvision_backbone(*backbone, config.pretrained);
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, "--pretrained '", config.pretrained,
                "' is neither an imagenet_pretrain checkpoint (", ours,
                ") nor a PyTorch one: ", e.what_without_backtrace());
  }
}

/// Top-1 and top-5 of backbone + fc on DATA/val, Resize + CenterCrop views decoded by the
/// loader's threads. Every rank evaluates all of it, as main_lincls.py: no collective.
std::pair<double, double> validate(simsiam::ResNet& backbone, torch::nn::Linear& fc,
                                   simsiam::Loader<OneViewSource>& val, torch::Device device) {
  torch::NoGradGuard no_grad;
  fc->eval();
  double top1 = 0, top5 = 0;
  int64_t count = 0;
  val.set_epoch(0);
  while (auto batch = val.next()) {
    const auto logits = fc->forward(backbone->forward(batch->view1.to(device, true)));
    const auto n = static_cast<double>(batch->labels.size(0));
    top1 += simsiam::topk_accuracy(logits, batch->labels, 1) * n;
    top5 += simsiam::topk_accuracy(logits, batch->labels, 5) * n;
    count += batch->labels.size(0);
  }
  fc->train();
  TORCH_CHECK(count > 0, "no readable validation images");
  return {top1 / static_cast<double>(count), top5 / static_cast<double>(count)};
}

int run(const Config& config) {
  const auto started = std::chrono::steady_clock::now();
  simsiam::keep_freed_memory();
  if (config.threads > 0) torch::set_num_threads(config.threads);
  if (!config.resume.empty()) {
    std::fprintf(stderr, "note: --resume is not supported by this program yet; it starts over\n");
  }
  const auto local_rank = simsiam::distributed::DistributedOptions::from_env().local_rank();
  const auto device = imagenet::pick_device(config.gpu >= 0 ? "cuda" : config.device,
                                            config.gpu >= 0 ? config.gpu : local_rank);
  const auto ranks = imagenet::join(config.dist_url, config.dist_backend, device);
  TORCH_CHECK(config.batch_size % ranks.world() == 0, "--batch-size ", config.batch_size,
              " must be a multiple of the ", ranks.world(), " processes");
  const uint64_t seed = config.seed >= 0 ? static_cast<uint64_t>(config.seed) : 0;
  torch::manual_seed(seed);

  simsiam::ImageFolder train(config.data + "/train");
  simsiam::ImageFolder val(config.data + "/val");
  TORCH_CHECK(val.classes() == train.classes(), "expected the same classes in '", config.data,
              "/train' and '/val'");
  const auto num_classes = static_cast<int64_t>(train.classes().size());

  auto backbone = imagenet::make_backbone(config.arch);
  load_pretrained(backbone, config);
  backbone->to(device);
  backbone->eval();  // frozen: BN uses the pretrained running statistics
  for (auto& p : backbone->parameters()) p.set_requires_grad(false);
  std::vector<torch::Tensor> before;  // sanity check at the end
  for (const auto& t : backbone->parameters()) before.push_back(t.detach().clone());
  for (const auto& t : backbone->buffers()) before.push_back(t.clone());
  auto fc = simsiam::make_linear_classifier(backbone->feature_dim(), num_classes);
  fc->to(device);
  std::unique_ptr<simsiam::distributed::DataParallel> parallel;
  if (ranks.group) {
    parallel = std::make_unique<simsiam::distributed::DataParallel>(*fc, *ranks.group);
    parallel->broadcast_state();
  }

  const double lr = config.lr * static_cast<double>(config.batch_size) / 256.0;
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  if (config.lars) {
    optimizer = std::make_unique<simsiam::Lars>(
        fc->parameters(),
        simsiam::LarsOptions(lr).momentum(config.momentum).weight_decay(config.weight_decay));
  } else {
    optimizer = std::make_unique<torch::optim::SGD>(
        fc->parameters(),
        torch::optim::SGDOptions(lr).momentum(config.momentum).weight_decay(config.weight_decay));
  }
  simsiam::CosineSchedule schedule(*optimizer, simsiam::CosineScheduleOptions(config.epochs));

  simsiam::LoaderOptions loader_options;
  loader_options.batch_size = config.batch_size / ranks.world();
  loader_options.workers = config.workers;
  loader_options.seed = seed;
  loader_options.drop_last = false;
  loader_options.rank = ranks.rank();
  loader_options.world_size = ranks.world();
  const auto train_transform =
      A::Compose(A::RandomResizedCrop(config.image_size), A::RandomHorizontalFlip(),
                 A::Normalize(A::kImageNetMean, A::kImageNetStd));
  simsiam::Loader<OneViewSource> loader(
      OneViewSource{
          std::move(train),
          [train_transform](const std::vector<torch::Tensor>& images, torch::Generator& generator) {
            return train_transform(images, generator);
          }},
      loader_options);
  auto val_options = loader_options;
  val_options.shuffle = false;
  val_options.rank = 0;
  val_options.world_size = 1;
  val_options.batch_size = 256;
  const int64_t size = config.image_size;
  simsiam::Loader<OneViewSource> val_loader(
      OneViewSource{std::move(val),
                    [size](const std::vector<torch::Tensor>& images, torch::Generator&) {
                      std::vector<torch::Tensor> views;
                      for (const auto& image : images) {
                        views.push_back(imagenet::center_view(image, size));
                      }
                      return imagenet::to_input(torch::stack(views));
                    }},
      val_options);
  if (ranks.main()) {
    std::printf(
        "linear evaluation of %s (%s) on %lld classes: total batch %lld, lr %.4g, %s, "
        "%d epochs, %s\n",
        config.arch.c_str(), config.pretrained.c_str(), static_cast<long long>(num_classes),
        static_cast<long long>(config.batch_size), lr, config.lars ? "LARS" : "SGD", config.epochs,
        device.str().c_str());
  }
  double top1 = 0, top5 = 0, best1 = 0;
  for (int64_t epoch = 0; epoch < config.epochs; ++epoch) {
    schedule.step();
    loader.set_epoch(epoch);
    double loss_sum = 0;
    int64_t steps = 0;
    while (true) {
      auto batch = loader.next();
      if (ranks.group) {  // a rank whose loader skipped a batch of bad images ends the epoch
        std::vector<torch::Tensor> have{torch::full({1}, batch ? 1.0 : 0.0, torch::kDouble)};
        ranks.group->all_reduce_sum(have);
        if (have[0].item<double>() < static_cast<double>(ranks.world())) break;
      }
      if (!batch) break;
      torch::Tensor features;
      {
        torch::NoGradGuard no_grad;
        features = backbone->forward(batch->view1.to(device, /*non_blocking=*/true));
      }
      const auto loss =
          torch::nn::functional::cross_entropy(fc->forward(features), batch->labels.to(device));
      optimizer->zero_grad();
      loss.backward();
      if (parallel) parallel->synchronize_gradients();
      optimizer->step();
      loss_sum += loss.item<double>();
      ++steps;
      if (ranks.main() && steps % config.print_freq == 0) {
        std::printf("epoch %lld step %lld/%lld loss %.4f\n", static_cast<long long>(epoch + 1),
                    static_cast<long long>(steps),
                    static_cast<long long>(loader.batches_per_epoch()), loss_sum / steps);
      }
    }
    std::tie(top1, top5) = validate(backbone, fc, val_loader, device);
    best1 = std::max(best1, top1);
    if (ranks.main()) {
      std::printf("epoch %lld: loss %.4f, val top-1 %.2f%%, top-5 %.2f%% (best top-1 %.2f%%)\n",
                  static_cast<long long>(epoch + 1), steps > 0 ? loss_sum / steps : 0.0, 100 * top1,
                  100 * top5, 100 * best1);
      std::fflush(stdout);
    }
  }

  // main_lincls.py's sanity_check: the frozen backbone did not move.
  size_t k = 0;
  bool unchanged = true;
  for (const auto& t : backbone->parameters())
    unchanged = unchanged && torch::equal(t, before[k++]);
  for (const auto& t : backbone->buffers()) unchanged = unchanged && torch::equal(t, before[k++]);
  TORCH_CHECK(unchanged, "the frozen backbone changed during linear evaluation");
  if (!ranks.main()) return 0;
  const double minutes =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count() / 60;
  std::printf(
      "done: val top-1 %.2f%%, top-5 %.2f%% (best top-1 %.2f%%), backbone unchanged, "
      "%.1f min\n",
      100 * top1, 100 * top5, 100 * best1, minutes);
  if (!config.out.empty()) {
    std::filesystem::create_directories(config.out);
    std::ostringstream json;
    json << "{\n  \"top1\": " << top1 << ",\n  \"top5\": " << top5
         << ",\n  \"best_top1\": " << best1 << ",\n  \"epochs\": " << config.epochs
         << ",\n  \"backbone_unchanged\": true,\n  \"chance\": " << 1.0 / num_classes << "\n}\n";
    simsiam::detail::write_file_atomically(json.str(), config.out + "/linear_eval.json",
                                           "imagenet_linear_eval");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Config config;
  CLI::App app{"SimSiam linear evaluation on ImageNet (main_lincls.py's flags)"};
  imagenet::add_common_flags(app, config, "Dataset root with train/ and val/");
  app.add_option("--pretrained", config.pretrained,
                 "imagenet_pretrain checkpoint, official checkpoint_XXXX.pth.tar or torchvision "
                 "state dict")
      ->required();
  app.add_option("--resume", config.resume, "Not supported yet (accepted, with a note)");
  app.add_flag("--lars,!--no-lars", config.lars, "LARS (on by default, the paper's setting)");
  app.add_option("--dim", config.dim, "Projector dim of an imagenet_pretrain checkpoint")
      ->capture_default_str();
  app.add_option("--pred-dim", config.pred_dim, "Predictor dim of an imagenet_pretrain checkpoint")
      ->capture_default_str();
  app.add_option("--out", config.out, "Folder for linear_eval.json");
  CLI11_PARSE(app, argc, argv);
  return examples::report_failures("imagenet_linear_eval", [&] { return run(config); });
}
