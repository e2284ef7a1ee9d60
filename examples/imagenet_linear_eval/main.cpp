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
#include <nlohmann/json.hpp>
#include <simsiam/data/loader.hpp>
#include <simsiam/model/pytorch_interop.hpp>
#include <simsiam/simsiam.hpp>
#include <simsiam/train/allocator.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
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

/// The pretrained backbone, frozen: evaluation mode (BN keeps the pretrained statistics), no
/// gradients, and a copy of every tensor for main_lincls.py's sanity check at the end.
struct FrozenBackbone {
  FrozenBackbone(const Config& config, torch::Device device)
      : net(imagenet::make_backbone(config.arch)) {
    load_pretrained(net, config);
    net->to(device);
    net->eval();
    for (auto& p : net->parameters()) p.set_requires_grad(false);
    for (const auto& t : net->parameters()) before.push_back(t.detach().clone());
    for (const auto& t : net->buffers()) before.push_back(t.clone());
  }
  /// Whether no parameter or statistic moved.
  bool unchanged() const {
    size_t k = 0;
    bool same = true;
    for (const auto& t : net->parameters()) same = same && torch::equal(t, before[k++]);
    for (const auto& t : net->buffers()) same = same && torch::equal(t, before[k++]);
    return same;
  }
  simsiam::ResNet net;
  std::vector<torch::Tensor> before;
};

/// LARS (the paper) or SGD on the classifier, lr scaled by batch / 256.
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const Config& config, torch::nn::Linear& fc,
                                                        double lr) {
  if (config.lars) {
    return std::make_unique<simsiam::Lars>(
        fc->parameters(),
        simsiam::LarsOptions(lr).momentum(config.momentum).weight_decay(config.weight_decay));
  }
  return std::make_unique<torch::optim::SGD>(
      fc->parameters(),
      torch::optim::SGDOptions(lr).momentum(config.momentum).weight_decay(config.weight_decay));
}

/// Train: RandomResizedCrop, flip, normalise; val: Resize + CenterCrop (main_lincls.py).
OneViewSource train_source(simsiam::ImageFolder folder, int64_t size) {
  const auto transform = A::Compose(A::RandomResizedCrop(size), A::RandomHorizontalFlip(),
                                    A::Normalize(A::kImageNetMean, A::kImageNetStd));
  return {std::move(folder),
          [transform](const std::vector<torch::Tensor>& images, torch::Generator& generator) {
            return transform(images, generator);
          }};
}
OneViewSource val_source(simsiam::ImageFolder folder, int64_t size) {
  return {std::move(folder), [size](const std::vector<torch::Tensor>& images, torch::Generator&) {
            std::vector<torch::Tensor> views;
            for (const auto& image : images) views.push_back(imagenet::center_view(image, size));
            return imagenet::to_input(torch::stack(views));
          }};
}

/// The classifier's part of the run: one epoch of main_lincls.py's train(); the mean loss.
struct Classifier {
  torch::nn::Linear fc;
  std::unique_ptr<torch::optim::Optimizer> optimizer;

  double train_epoch(FrozenBackbone& backbone, simsiam::Loader<OneViewSource>& loader,
                     const simsiam::distributed::Replicas& replicas,
                     simsiam::distributed::Attachment& attached, const Config& config,
                     torch::Device device, int64_t epoch) {
    double loss_sum = 0;
    int64_t steps = 0;
    while (true) {
      auto batch = loader.next();
      // A rank whose loader skipped a batch of bad images ends the epoch on every rank.
      if (replicas.agree(batch.has_value(), false).ranks_with_batch < replicas.size()) break;
      torch::Tensor features;
      {
        torch::NoGradGuard no_grad;
        features = backbone.net->forward(batch->view1.to(device, /*non_blocking=*/true));
      }
      const auto loss =
          torch::nn::functional::cross_entropy(fc->forward(features), batch->labels.to(device));
      optimizer->zero_grad();
      loss.backward();
      attached.synchronize_gradients();
      optimizer->step();
      loss_sum += loss.item<double>();
      ++steps;
      if (replicas.is_main() && steps % config.print_freq == 0) {
        std::printf("epoch %lld step %lld/%lld loss %.4f\n", static_cast<long long>(epoch + 1),
                    static_cast<long long>(steps),
                    static_cast<long long>(loader.batches_per_epoch()), loss_sum / steps);
      }
    }
    return steps > 0 ? loss_sum / steps : 0.0;
  }
};

void write_results(const Config& config, double top1, double top5, double best1,
                   int64_t num_classes) {
  if (config.out.empty()) return;
  std::filesystem::create_directories(config.out);
  const nlohmann::ordered_json json{{"top1", top1},
                                    {"top5", top5},
                                    {"best_top1", best1},
                                    {"epochs", config.epochs},
                                    {"backbone_unchanged", true},
                                    {"chance", 1.0 / num_classes}};
  simsiam::write_file_atomically(json.dump(2) + "\n", config.out + "/linear_eval.json");
}

int run(const Config& config) {
  const auto started = std::chrono::steady_clock::now();
  if (!config.resume.empty()) {
    std::fprintf(stderr, "note: --resume is not supported by this program yet; it starts over\n");
  }
  const auto [device, ranks] = imagenet::place(config);
  const uint64_t seed = config.seed >= 0 ? static_cast<uint64_t>(config.seed) : 0;
  torch::manual_seed(seed);

  simsiam::ImageFolder train(config.data + "/train");
  simsiam::ImageFolder val(config.data + "/val");
  TORCH_CHECK(val.classes() == train.classes(), "expected the same classes in '", config.data,
              "/train' and '/val'");
  const auto num_classes = static_cast<int64_t>(train.classes().size());
  FrozenBackbone backbone(config, device);
  Classifier classifier{simsiam::make_linear_classifier(backbone.net->feature_dim(), num_classes),
                        nullptr};
  classifier.fc->to(device);
  const simsiam::distributed::Replicas replicas(ranks.group.get());
  const auto attached = replicas.attach(*classifier.fc, /*sync_batch_norm=*/false, {});
  const double lr = config.lr * static_cast<double>(config.batch_size) / 256.0;
  classifier.optimizer = make_optimizer(config, classifier.fc, lr);
  simsiam::CosineSchedule schedule(*classifier.optimizer,
                                   simsiam::CosineScheduleOptions(config.epochs));

  const auto loader_options = imagenet::loader_options(config, ranks, device, /*drop_last=*/false);
  simsiam::Loader<OneViewSource> loader(train_source(std::move(train), config.image_size),
                                        loader_options);
  auto val_options = loader_options;
  val_options.shuffle(false).rank(0).world_size(1).batch_size(256);
  simsiam::Loader<OneViewSource> val_loader(val_source(std::move(val), config.image_size),
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
    const double loss =
        classifier.train_epoch(backbone, loader, replicas, *attached, config, device, epoch);
    std::tie(top1, top5) = validate(backbone.net, classifier.fc, val_loader, device);
    best1 = std::max(best1, top1);
    if (ranks.main()) {
      std::printf("epoch %lld: loss %.4f, val top-1 %.2f%%, top-5 %.2f%% (best top-1 %.2f%%)\n",
                  static_cast<long long>(epoch + 1), loss, 100 * top1, 100 * top5, 100 * best1);
      std::fflush(stdout);
    }
  }
  TORCH_CHECK(backbone.unchanged(), "the frozen backbone changed during linear evaluation");
  if (!ranks.main()) return 0;
  std::printf(
      "done: val top-1 %.2f%%, top-5 %.2f%% (best top-1 %.2f%%), backbone unchanged, "
      "%.1f min\n",
      100 * top1, 100 * top5, 100 * best1, examples::minutes_since(started));
  write_results(config, top1, top5, best1, num_classes);
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
