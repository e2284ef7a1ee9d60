// SPDX-License-Identifier: BSD-3-Clause
// Quick start: SimSiam pretraining on the real Fashion-MNIST, on a laptop CPU.
//
// Pretrains a small ConvNet with SimSiam through `simsiam::Trainer`: two augmented views per
// image from a `simsiam::Loader`, projector, predictor, stop-gradient symmetric loss, the official
// SGD recipe (lr = base x batch / 256, cosine decay per epoch, predictor at a fixed lr). Every
// epoch it prints the loss, the collapse statistic and the weighted kNN top-1 (k=200, t=0.1) of
// backbone features on the 10k test set; at the end it compares kNN and a linear probe (frozen
// backbone, LARS, the official protocol on fixed features) with the same network at its random
// initialisation. Everything goes to a run folder: metrics.csv/.jsonl, metrics.png,
// checkpoint.pt (resumable with --resume), results.json.
//
//   fashion_mnist [--epochs N] [--batch-size B] [--lr L] [--threads T] [--data DIR] [--out DIR]
//                 [--resume CHECKPOINT] [--help]
//
// Data parallel on several processes (torchrun's variables), --batch-size split among them:
//   simsiam_launch --nproc 2 fashion_mnist --threads 1
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <simsiam/augment/presets.hpp>
#include <simsiam/data/idx.hpp>
#include <simsiam/data/loader.hpp>
#include <simsiam/data/tensor_source.hpp>
#include <simsiam/simsiam.hpp>
#include <simsiam/train/allocator.hpp>
#ifdef SIMSIAM_EXAMPLE_DISTRIBUTED
#include <simsiam/distributed/process_group.hpp>
#endif

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "../common/run.hpp"

namespace {

namespace A = simsiam::augment;
using Model = simsiam::SimSiam<simsiam::ConvNet>;
using Source = simsiam::TensorSource<decltype(A::simsiam_grayscale(28))>;

struct Config {
  std::string data = "/usr/share/datasets/fashion-mnist";
  std::string out = "runs";
  std::string resume;
  int epochs = 8;
  int64_t batch_size = 128;
  // lr = base_lr * batch / 256 (official scaling). The paper's bases are 0.05 (ImageNet) and 0.03
  // (CIFAR) for hundreds of epochs; this small network learns fastest in few epochs at a higher
  // base (docs/performance.md has the sweep).
  double base_lr = 0.3;
  double weight_decay = 5e-4;
  int threads = 2;
  int64_t workers = 1;
  // ConvNet stage widths. Narrow stages train fast on a CPU, and their random features are weak,
  // so what SimSiam learns shows: 8-16-32-64 gains about 9 kNN points in 8 epochs, 32-64-128-256
  // about 3.5 (docs/performance.md).
  std::vector<int64_t> widths{8, 16, 32, 64};
  int64_t dim = 512;
  int64_t pred_dim = 128;
  uint64_t seed = 0;
  int64_t knn_k = 200;
  double knn_t = 0.1;
  int64_t knn_every = 1;
  int64_t probe_epochs = 90;
  int64_t train_subset = 0;  // 0: all 60,000 images
};

/// The settings that define the run: a checkpoint written with others is refused on resume.
simsiam::RunConfig run_config(const Config& c) {
  std::string widths;
  for (const auto w : c.widths) widths += (widths.empty() ? "" : "-") + std::to_string(w);
  return {{"batch_size", std::to_string(c.batch_size)},
          {"widths", widths},
          {"base_lr", examples::exact(c.base_lr)},
          {"weight_decay", examples::exact(c.weight_decay)},
          {"dim", std::to_string(c.dim)},
          {"pred_dim", std::to_string(c.pred_dim)},
          {"seed", std::to_string(c.seed)},
          {"train_subset", std::to_string(c.train_subset)}};
}

/// uint8 [N, 1, 28, 28] -> normalised float, as the augmentation's last step does.
torch::Tensor to_input(const torch::Tensor& images) {
  return A::functional::normalize(images.to(torch::kFloat).div(255), A::kFashionMnistMean,
                                  A::kFashionMnistStd);
}

struct Scores {
  double knn = 0.0, probe_top1 = 0.0, probe_top5 = 0.0;
};

/// kNN (bank: training images, queries: test images) and the linear probe of backbone features.
Scores evaluate(Model& model, const simsiam::LabeledImages& train,
                const simsiam::LabeledImages& test, const Config& config) {
  const auto options = simsiam::FeatureOptions().batch_size(1024).transform(to_input);
  auto features = [&](const torch::Tensor& x) { return model->features(x); };
  const auto bank = simsiam::extract_features(*model, features, train.images, options);
  const auto queries = simsiam::extract_features(*model, features, test.images, options);
  Scores scores;
  scores.knn =
      simsiam::knn_accuracy(queries, test.labels, bank, train.labels, 10,
                            simsiam::KnnOptions().k(config.knn_k).temperature(config.knn_t));
  // main_lincls.py: LARS, batch 4096, lr 0.1 x 4096 / 256, momentum 0.9, no decay, cosine.
  const auto probe = simsiam::linear_probe(
      bank, train.labels, queries, test.labels, 10,
      simsiam::LinearProbeOptions().epochs(config.probe_epochs).seed(config.seed));
  scores.probe_top1 = probe.top1;
  scores.probe_top5 = probe.top5;
  return scores;
}

void write_results(const std::string& path, const Scores& random, const Scores& trained,
                   double minutes, const simsiam::TrainResult& result) {
  const nlohmann::ordered_json json{{"knn_top1", trained.knn},
                                    {"knn_top1_random_init", random.knn},
                                    {"probe_top1", trained.probe_top1},
                                    {"probe_top5", trained.probe_top5},
                                    {"probe_top1_random_init", random.probe_top1},
                                    {"probe_top5_random_init", random.probe_top5},
                                    {"epochs", result.epochs_completed},
                                    {"steps", result.steps},
                                    {"minutes", minutes}};
  simsiam::write_file_atomically(json.dump(2) + "\n", path);
}

/// The processes of a run started by simsiam_launch or torchrun (WORLD_SIZE > 1), or null.
std::unique_ptr<simsiam::distributed::Communicator> join_ranks() {
#ifdef SIMSIAM_EXAMPLE_DISTRIBUTED
  const auto options = simsiam::distributed::DistributedOptions::from_env();
  if (options.world_size() == 1) return nullptr;
  return std::make_unique<simsiam::distributed::ProcessGroup>(options);
#else
  const char* world = std::getenv("WORLD_SIZE");
  TORCH_CHECK(world == nullptr || std::string(world) == "1", "WORLD_SIZE is ", world,
              " but this build has no SimSiam::distributed (install libgloo-dev and rebuild)");
  return nullptr;
#endif
}

/// Training and test sets, and the part of the training set that pretraining sees.
struct Data {
  simsiam::LabeledImages train, test, pretrain;
};

Data load_data(const Config& config, int64_t world) {
  TORCH_CHECK(config.batch_size % world == 0, "--batch-size ", config.batch_size,
              " must be a multiple of the ", world, " processes");
  Data data;
  try {
    data.train = simsiam::read_mnist(config.data, /*train=*/true);
    data.test = simsiam::read_mnist(config.data, /*train=*/false);
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, "no readable Fashion-MNIST in '", config.data,
                "': install Debian's dataset-fashion-mnist (apt-get install "
                "dataset-fashion-mnist) or pass --data DIR (",
                e.what_without_backtrace(), ")");
  }
  data.pretrain = data.train;
  const int64_t n = data.train.images.size(0);
  if (config.train_subset > 0 && config.train_subset < n) {
    data.pretrain = {data.train.images.slice(0, 0, config.train_subset),
                     data.train.labels.slice(0, 0, config.train_subset)};
  }
  TORCH_CHECK(data.pretrain.images.size(0) >= config.batch_size, "--batch-size ", config.batch_size,
              " exceeds the ", data.pretrain.images.size(0), " training images");
  return data;
}

/// The parts of pretraining: the trainer refers to the loader, optimiser and schedule.
struct Pretraining {
  Pretraining(Model& model, const Data& data, const Config& config,
              simsiam::distributed::Communicator* ranks, const std::string& run_dir)
      : recipe(simsiam::SgdRecipe()
                   .base_lr(config.base_lr)
                   .batch_size(config.batch_size)
                   .weight_decay(config.weight_decay)),
        // Crop (scale 0.2-1), brightness/contrast jitter 0.4 with p = 0.8, blur with p = 0.5,
        // flip, normalisation: the paper's recipe without the colour operations grey images lack.
        loader(Source{data.pretrain, A::simsiam_grayscale(28)},
               simsiam::LoaderOptions()
                   .batch_size(config.batch_size / simsiam::distributed::world_size(ranks))
                   .workers(config.workers)
                   .seed(config.seed)
                   .rank(simsiam::distributed::rank(ranks))
                   .world_size(simsiam::distributed::world_size(ranks))),
        sgd(simsiam::make_sgd(model, recipe)),
        schedule(simsiam::make_cosine_schedule(sgd, recipe, config.epochs)),
        trainer(model, loader, sgd, &schedule,
                simsiam::TrainerOptions()
                    .epochs(config.epochs)
                    .run_dir(run_dir)
                    .resume(config.resume)
                    .config(run_config(config))
                    .communicator(ranks)) {
    trainer.add_hook(std::make_shared<simsiam::KnnMonitor>(
        data.train.images, data.train.labels, data.test.images, data.test.labels, 10,
        simsiam::KnnMonitorOptions()
            .every(config.knn_every)
            .knn(simsiam::KnnOptions().k(config.knn_k).temperature(config.knn_t))
            .transform(to_input)));
  }

  simsiam::SgdRecipe recipe;
  simsiam::Loader<Source> loader;
  torch::optim::SGD sgd;
  simsiam::CosineSchedule schedule;
  simsiam::Trainer<Model, simsiam::Loader<Source>> trainer;
};

void print_scores(const Config& config, const Scores& random, const Scores& trained, double minutes,
                  const std::string& run_dir) {
  std::printf(
      "kNN top-1 (k=%lld, t=%.2f) on the 10k test set: %.2f%% after SimSiam vs %.2f%% at random "
      "init (%+.2f points)\n"
      "linear probe (frozen backbone, LARS, %lld epochs): top-1 %.2f%% (random init %.2f%%), "
      "top-5 %.2f%% (random init %.2f%%)\n"
      "%.1f min in all; run folder %s: metrics.csv, metrics.jsonl, metrics.png, checkpoint.pt, "
      "results.json\n",
      static_cast<long long>(config.knn_k), config.knn_t, 100 * trained.knn, 100 * random.knn,
      100 * (trained.knn - random.knn), static_cast<long long>(config.probe_epochs),
      100 * trained.probe_top1, 100 * random.probe_top1, 100 * trained.probe_top5,
      100 * random.probe_top5, minutes, run_dir.c_str());
}

int run(const Config& config) {
  const auto start = std::chrono::steady_clock::now();
  simsiam::keep_freed_memory();  // reuse activations' memory instead of page-faulting it back
  torch::set_num_threads(config.threads);
  torch::manual_seed(config.seed);
  const auto ranks = join_ranks();
  const int64_t world = simsiam::distributed::world_size(ranks.get());
  const int64_t rank = simsiam::distributed::rank(ranks.get());
  const Data data = load_data(config, world);
  const std::string run_dir =
      examples::run_folder(config.out, "fashion_mnist", config.resume, rank == 0);

  simsiam::ConvNet backbone(simsiam::ConvNetOptions(1).widths(config.widths));
  Model model(
      backbone,
      simsiam::SimSiamOptions().dim(config.dim).pred_dim(config.pred_dim).projector_layers(2));
  Scores random;
  if (rank == 0) {
    random = evaluate(model, data.train, data.test, config);
    std::printf("random init: kNN top-1 %.2f%%, linear probe top-1 %.2f%%\n", 100 * random.knn,
                100 * random.probe_top1);
  }

  Pretraining pretraining(model, data, config, ranks.get(), run_dir);
  if (rank == 0) {
    std::printf(
        "SimSiam on Fashion-MNIST: %lld images, batch %lld (%lld process%s), %d epochs, "
        "lr %.4f, %d threads, run folder %s\n",
        static_cast<long long>(data.pretrain.images.size(0)),
        static_cast<long long>(config.batch_size), static_cast<long long>(world),
        world > 1 ? "es" : "", config.epochs, pretraining.recipe.lr(), config.threads,
        run_dir.c_str());
    std::fflush(stdout);
  }
  const auto result = pretraining.trainer.fit();
  if (rank != 0) return 0;  // rank 0 evaluates and reports
  if (result.stopped) std::printf("training stopped early: %s\n", result.stop_reason.c_str());
  const Scores trained = evaluate(model, data.train, data.test, config);
  const double minutes = examples::minutes_since(start);
  write_results(run_dir + "/results.json", random, trained, minutes, result);
  print_scores(config, random, trained, minutes, run_dir);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Config config;
  CLI::App app{"SimSiam quick start: self-supervised pretraining on Fashion-MNIST (CPU)"};
  app.add_option("--data", config.data, "Directory with the Fashion-MNIST IDX files")
      ->capture_default_str();
  app.add_option("--out", config.out, "Where run folders are created")->capture_default_str();
  app.add_option("--resume", config.resume,
                 "Continue the run of this checkpoint (in its folder), e.g. "
                 "runs/fashion_mnist-.../checkpoint.pt")
      ->check(CLI::ExistingFile);
  app.add_option("--epochs", config.epochs, "Pretraining epochs")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--batch-size", config.batch_size, "Images per batch (two views each)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{2}, int64_t{60000}));
  app.add_option("--lr", config.base_lr, "Base learning rate, scaled by batch/256")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--wd", config.weight_decay, "Weight decay")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--threads", config.threads, "CPU threads for LibTorch")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--workers", config.workers, "Loader threads building augmented batches")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--widths", config.widths, "Output channels of the ConvNet's strided stages")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--dim", config.dim, "Projector output dimension")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--pred-dim", config.pred_dim, "Predictor hidden dimension")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--seed", config.seed, "Random seed")->capture_default_str();
  app.add_option("--knn-k", config.knn_k, "Neighbours for the kNN monitor")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--knn-t", config.knn_t, "Temperature of the kNN monitor")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--knn-every", config.knn_every, "Run the kNN monitor every N epochs")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--probe-epochs", config.probe_epochs, "Epochs of the linear probe")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--train-subset", config.train_subset, "Pretrain on the first N images (0: all)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);
  return examples::report_failures("fashion_mnist", [&] { return run(config); });
}
