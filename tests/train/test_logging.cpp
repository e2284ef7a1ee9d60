// SPDX-License-Identifier: BSD-3-Clause
// The metrics log and plot of a real (tiny) run: columns, values and their consistency.
#include "simsiam/train/logging.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include "support/catch.hpp"
#include "support/tiny_training.hpp"

namespace T = simsiam::testing;

namespace {

std::vector<std::vector<std::string>> read_csv(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::vector<std::string>> rows;
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> fields;
    std::stringstream stream(line);
    std::string field;
    while (std::getline(stream, field, ',')) fields.push_back(field);
    if (!line.empty() && line.back() == ',') fields.emplace_back();
    rows.push_back(fields);
  }
  return rows;
}

bool have_gnuplot() { return std::system("gnuplot --version > /dev/null 2>&1") == 0; }

}  // namespace

TEST_CASE("the metrics log writes consistent CSV and JSON lines, and the plot is drawn",
          "[train][logging]") {
  T::ScratchDir dir("metrics");
  auto model = T::tiny_model();
  auto loader = T::tiny_loader();
  const auto recipe = simsiam::SgdRecipe().base_lr(0.1).batch_size(16);
  auto sgd = simsiam::make_sgd(model, recipe);
  auto schedule = simsiam::make_cosine_schedule(sgd, recipe, 2);
  simsiam::Trainer trainer(model, loader, sgd, &schedule,
                           T::quiet_options(2, dir.str()).keep_checkpoints(true));
  const auto data = T::tiny_data();
  trainer.add_hook(std::make_shared<simsiam::KnnMonitor>(
      data.images, data.labels, data.images, data.labels, 4,
      simsiam::KnnMonitorOptions().transform(
          [](const torch::Tensor& x) { return x.to(torch::kFloat).div(255); })));
  trainer.fit();

  const auto rows = read_csv(dir / "metrics.csv");
  REQUIRE(rows.size() == 1 + 6 + 2);  // header, 6 step rows, 2 epoch rows
  CHECK(rows[0] == std::vector<std::string>{"kind", "epoch", "step", "loss", "lr0", "lr1",
                                            "collapse_std", "knn_top1", "images_per_s",
                                            "data_wait_fraction"});
  std::ifstream json_in(dir / "metrics.jsonl");
  std::vector<nlohmann::json> records;
  for (std::string line; std::getline(json_in, line);)
    records.push_back(nlohmann::json::parse(line));
  REQUIRE(records.size() == rows.size() - 1);

  double epoch_loss = 0.0;
  int64_t steps = 0;
  for (size_t i = 1; i < rows.size(); ++i) {
    const auto& row = rows[i];
    const auto& record = records[i - 1];
    INFO("row " << i);
    REQUIRE(row.size() == 10);
    CHECK(record["kind"] == row[0]);
    CHECK(record["step"].get<int64_t>() == std::stoll(row[2]));
    CHECK(record["loss"].get<double>() == Approx(std::stod(row[3])));
    CHECK(record["lr"].size() == 2);
    CHECK(std::stod(row[5]) == Approx(recipe.lr()));  // the predictor's fixed lr
    CHECK(std::stod(row[6]) > 0.0);                   // collapse std measured
    CHECK(std::stod(row[8]) > 0.0);                   // images/s
    const double wait = std::stod(row[9]);
    CHECK((wait >= 0.0 && wait <= 1.0));
    if (row[0] == "step") {
      CHECK(row[7].empty());  // kNN is an epoch metric
      CHECK(std::stoll(row[2]) == ++steps);
      epoch_loss += std::stod(row[3]);
    } else {
      const int64_t epoch = std::stoll(row[1]);
      CHECK(std::stoll(row[2]) == 3 * epoch);
      CHECK(std::stod(row[3]) == Approx(epoch_loss / 3));  // the epoch row is the step mean
      CHECK(std::stod(row[4]) == Approx(simsiam::functional::cosine_lr(recipe.lr(), epoch - 1, 2)));
      const double knn = std::stod(row[7]);
      CHECK((knn >= 0.0 && knn <= 1.0));
      CHECK(record["knn_top1"].get<double>() == Approx(knn));
      epoch_loss = 0.0;
    }
  }
  CHECK(std::filesystem::exists(dir / "checkpoint.pt"));
  // Kept copies are named after the 0-based epoch, as main_simsiam.py names its files.
  auto fresh = T::tiny_model(4);
  CHECK(simsiam::load_checkpoint(dir / "checkpoint_0000.pt", *fresh, nullptr).epoch == 1);
  CHECK(simsiam::load_checkpoint(dir / "checkpoint_0001.pt", *fresh, nullptr).epoch == 2);
  CHECK_FALSE(std::filesystem::exists(dir / "checkpoint_0001.pt.tmp"));
  if (have_gnuplot()) {
    CHECK(std::filesystem::file_size(dir / "metrics.png") > 1000);
    CHECK_FALSE(std::filesystem::exists(dir / "metrics.png.tmp"));
  } else {
    WARN("gnuplot is not installed: the plot was not checked");
  }
}

TEST_CASE("a resumed run drops the log rows of the epochs it redoes", "[train][logging]") {
  T::ScratchDir dir("metrics_resume");
  const auto recipe = simsiam::SgdRecipe().base_lr(0.1).batch_size(16);
  auto run = [&](const std::string& resume, std::shared_ptr<simsiam::Hook> hook) {
    auto model = T::tiny_model();
    auto loader = T::tiny_loader();
    auto sgd = simsiam::make_sgd(model, recipe);
    auto schedule = simsiam::make_cosine_schedule(sgd, recipe, 3);
    simsiam::Trainer trainer(model, loader, sgd, &schedule,
                             T::quiet_options(3, dir.str()).resume(resume));
    if (hook) trainer.add_hook(hook);
    trainer.fit();
  };
  run("", std::make_shared<T::StopAfterEpoch>(1));  // 2 epochs logged, checkpoint at epoch 2
  const auto after_two = read_csv(dir / "metrics.csv");
  CHECK(after_two.size() == 1 + 6 + 2);
  // As if the run had died after logging a step of epoch 3, in the middle of its JSON line.
  {
    std::ofstream csv(dir / "metrics.csv", std::ios::app);
    csv << "step,2.33333333,7,-0.5,0.1,0.1,0.2,,100,0\n";
    std::ofstream json(dir / "metrics.jsonl", std::ios::app);
    json << R"({"kind":"step","epoch":2.3333333333333335,"step":7,"lo)";
  }
  run(dir / "checkpoint.pt", nullptr);
  const auto rows = read_csv(dir / "metrics.csv");
  REQUIRE(rows.size() == 1 + 9 + 3);
  for (size_t i = 0; i < after_two.size(); ++i) CHECK(rows[i] == after_two[i]);
  CHECK(rows.back()[0] == "epoch");
  CHECK(rows.back()[1] == "3");
  // The JSON lines were cut at the same place: one per CSV row, in the same order.
  std::ifstream json_in(dir / "metrics.jsonl");
  size_t row = 1;
  for (std::string line; std::getline(json_in, line); ++row) {
    INFO("line " << row << ": " << line);
    REQUIRE(row < rows.size());
    const auto record = nlohmann::json::parse(line);  // throws on a broken line
    CHECK(record["kind"] == rows[row][0]);
    CHECK(record["step"].get<int64_t>() == std::stoll(rows[row][2]));
  }
  CHECK(row == rows.size());
}

TEST_CASE("JSON text: escaped strings, numbers that read back exactly, keys in order",
          "[train][logging]") {
  using simsiam::detail::json_number;
  using simsiam::detail::json_string;
  // Read back by an independent parser.
  const std::string name =
      "a\"b\\c\nd\te\x01"
      "f\x1f/\xc3\xa9";
  CHECK(nlohmann::json::parse(json_string(name)).get<std::string>() == name);
  CHECK(json_string("\x01") == "\"\\u0001\"");
  for (const double x : {0.0, -0.0, 0.1, 1.0 / 3.0, 2.0 / 3.0, 1e-300, 4.9e-324, -2.5e17,
                         std::numeric_limits<double>::max(), 0.30000000000000004}) {
    INFO(json_number(x));
    CHECK(nlohmann::json::parse(json_number(x)).get<double>() == x);
  }
  CHECK(json_number(0.1) == "0.1");  // the shortest form that reads back
  CHECK(json_number(std::nan("")) == "null");
  CHECK(json_number(-HUGE_VAL) == "null");
  simsiam::detail::JsonObject object;
  object.set("kind", json_string("step"));
  object.set("loss", json_number(0.5));
  object.set("kind", json_string("epoch"));  // keeps its place, takes the new value
  CHECK(object.dump() == R"({"kind":"epoch","loss":0.5})");
}

TEST_CASE("any metric name is escaped in JSON lines, and any folder name can be plotted",
          "[train][logging]") {
  T::ScratchDir scratch("metrics_names");
  const std::string dir = scratch / "it's a \"run\" $(x)";
  // A hook whose metric name needs escaping in JSON.
  static const std::string kOdd = "a\"b\\c\n\x01";
  struct Odd : simsiam::Hook {
    void on_step_end(simsiam::TrainState& state) override { state.step_metrics[kOdd] = 0.25; }
    void on_epoch_end(simsiam::TrainState& state) override { state.epoch_metrics[kOdd] = 0.5; }
  };
  auto model = T::tiny_model();
  auto loader = T::tiny_loader();
  const auto recipe = simsiam::SgdRecipe().base_lr(0.1).batch_size(16);
  auto sgd = simsiam::make_sgd(model, recipe);
  auto schedule = simsiam::make_cosine_schedule(sgd, recipe, 2);
  simsiam::Trainer trainer(model, loader, sgd, &schedule, T::quiet_options(2, dir));
  trainer.add_hook(std::make_shared<Odd>());
  trainer.fit();
  std::ifstream json_in(dir + "/metrics.jsonl");
  int64_t lines = 0;
  for (std::string line; std::getline(json_in, line); ++lines) {
    const auto record = nlohmann::json::parse(line);  // throws on a broken line
    CHECK(record[kOdd].get<double>() == (record["kind"] == "epoch" ? 0.5 : 0.25));
  }
  CHECK(lines == 6 + 2);
  if (have_gnuplot()) {
    CHECK(std::filesystem::file_size(dir + "/metrics.png") > 1000);
  } else {
    WARN("gnuplot is not installed: the plot was not checked");
  }
}
