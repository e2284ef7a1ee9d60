// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief Reporting hooks: `ProgressBar` (terminal bar, or plain lines when not a terminal),
/// `MetricsLog` (CSV and JSON lines) and `MetricsPlot` (loss, collapse std and kNN accuracy vs
/// epoch as a PNG, drawn by gnuplot).
#pragma once

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#if defined(_WIN32)
#include <io.h>
#else
#include <unistd.h>
#endif

#include "simsiam/detail/file.hpp"
#include "simsiam/train/hook.hpp"

namespace simsiam {

namespace detail {

inline bool is_terminal(std::FILE* stream) {
#if defined(_WIN32)
  return _isatty(_fileno(stream)) != 0;
#else
  return isatty(fileno(stream)) != 0;
#endif
}

/// "1:02:03" or "2:03".
inline std::string format_duration(double seconds) {
  const auto total = static_cast<long long>(std::max(0.0, seconds) + 0.5);
  char text[32];
  if (total >= 3600) {
    std::snprintf(text, sizeof text, "%lld:%02lld:%02lld", total / 3600, total / 60 % 60,
                  total % 60);
  } else {
    std::snprintf(text, sizeof text, "%lld:%02lld", total / 60, total % 60);
  }
  return text;
}

/// A finite number in shortest round-trip form; "" (CSV) or "null" (JSON) otherwise.
inline std::string format_number(double value, const char* missing) {
  if (!std::isfinite(value)) return missing;
  char text[32];
  std::snprintf(text, sizeof text, "%.9g", value);
  return text;
}

}  // namespace detail

/// A C stream (`stdout`, `stderr`, or one from `std::fopen`).
using CStream = std::FILE*;

/// Options of `ProgressBar`.
struct ProgressBarOptions {
  /// Without a terminal: one line every `every` steps (and one per epoch always).
  TORCH_ARG(int64_t, every) = 50;
  /// Force plain lines (true) or the bar (false); unset: the bar on a terminal.
  TORCH_ARG(std::optional<bool>, plain) = std::nullopt;
  TORCH_ARG(CStream, stream) = stdout;
};

/// Epoch, step, images/s, loss, lr and ETA: a bar redrawn in place on a terminal (at most 5 times
/// a second), plain lines otherwise (logs, CI). Each epoch ends with a summary line that also
/// shows the collapse std and the kNN accuracy when monitors measured them.
class ProgressBar : public Hook {
 public:
  explicit ProgressBar(ProgressBarOptions options = {}) : options(options) {
    TORCH_CHECK(options.every() > 0, "simsiam::ProgressBar: expected every > 0, got ",
                options.every());
    plain_ = options.plain().value_or(!detail::is_terminal(options.stream()));
  }

  void on_train_begin(TrainState& state) override {
    start_ = std::chrono::steady_clock::now();
    if (state.start_epoch > 0) {
      std::fprintf(options.stream(), "resumed at epoch %lld/%lld (step %lld)\n",
                   static_cast<long long>(state.start_epoch + 1),
                   static_cast<long long>(state.epochs), static_cast<long long>(state.global_step));
    }
  }

  void on_step_end(TrainState& state) override {
    const auto now = std::chrono::steady_clock::now();
    if (plain_) {
      if (state.global_step % options.every() != 0) return;
      std::fprintf(options.stream(), "%s\n", line(state).c_str());
    } else {
      if (now - last_draw_ < std::chrono::milliseconds(200)) return;
      std::fprintf(options.stream(), "\r%s\033[K", line(state).c_str());
    }
    last_draw_ = now;
    std::fflush(options.stream());
  }

  void on_epoch_end(TrainState& state) override {
    std::ostringstream out;
    char text[256];
    std::snprintf(text, sizeof text, "epoch %lld/%lld  loss %.4f",
                  static_cast<long long>(state.epoch + 1), static_cast<long long>(state.epochs),
                  state.epoch_loss);
    out << text;
    const auto& m = state.epoch_metrics;
    if (m.count("collapse_std") && state.z1.defined()) {
      std::snprintf(text, sizeof text, "  z-std %.4f (1/sqrt(d) %.4f)", m.at("collapse_std"),
                    1.0 / std::sqrt(static_cast<double>(state.z1.size(1))));
      out << text;
    }
    if (m.count("knn_top1")) {
      std::snprintf(text, sizeof text, "  kNN %.2f%%", 100.0 * m.at("knn_top1"));
      out << text;
    }
    if (!state.lrs.empty()) {
      std::snprintf(text, sizeof text, "  lr %.4g", state.lrs.front());
      out << text;
    }
    std::snprintf(text, sizeof text, "  %.0f img/s  data wait %.1f%%  %s elapsed",
                  state.images_per_second, 100.0 * state.data_wait_fraction,
                  detail::format_duration(state.seconds).c_str());
    out << text;
    std::fprintf(options.stream(), "%s%s\n", plain_ ? "" : "\r\033[K", out.str().c_str());
    std::fflush(options.stream());
  }

  void on_train_end(TrainState& state) override {
    if (state.stop && !state.stop_reason.empty()) {
      std::fprintf(options.stream(), "%sstopped: %s\n", plain_ ? "" : "\r\033[K",
                   state.stop_reason.c_str());
    }
  }

  ProgressBarOptions options;

 private:
  std::string line(const TrainState& state) const {
    const int64_t done_steps = state.epoch * state.steps_per_epoch + state.step_in_epoch;
    const int64_t start_steps = state.start_epoch * state.steps_per_epoch;
    const int64_t all_steps = state.epochs * state.steps_per_epoch;
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const double eta = done_steps > start_steps
                           ? elapsed / static_cast<double>(done_steps - start_steps) *
                                 static_cast<double>(all_steps - done_steps)
                           : 0.0;
    char text[256];
    if (plain_) {
      std::snprintf(text, sizeof text,
                    "epoch %lld/%lld  step %lld/%lld  loss %.4f  lr %.4g  %.0f img/s  ETA %s",
                    static_cast<long long>(state.epoch + 1), static_cast<long long>(state.epochs),
                    static_cast<long long>(state.step_in_epoch),
                    static_cast<long long>(state.steps_per_epoch), state.loss,
                    state.lrs.empty() ? 0.0 : state.lrs.front(), state.images_per_second,
                    detail::format_duration(eta).c_str());
      return text;
    }
    constexpr int kWidth = 24;
    const double fraction =
        state.steps_per_epoch > 0
            ? static_cast<double>(state.step_in_epoch) / static_cast<double>(state.steps_per_epoch)
            : 0.0;
    std::string bar(kWidth, ' ');
    const int filled = static_cast<int>(fraction * kWidth);
    for (int i = 0; i < filled; ++i) bar[static_cast<size_t>(i)] = '=';
    if (filled < kWidth) bar[static_cast<size_t>(filled)] = '>';
    std::snprintf(
        text, sizeof text, "epoch %lld/%lld [%s] %lld/%lld  loss %.4f  lr %.4g  %.0f img/s  ETA %s",
        static_cast<long long>(state.epoch + 1), static_cast<long long>(state.epochs), bar.c_str(),
        static_cast<long long>(state.step_in_epoch), static_cast<long long>(state.steps_per_epoch),
        state.loss, state.lrs.empty() ? 0.0 : state.lrs.front(), state.images_per_second,
        detail::format_duration(eta).c_str());
    return text;
  }

  bool plain_ = true;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

/// Options of `MetricsLog`.
struct MetricsLogOptions {
  /// A step row every `every` optimiser steps (0: epoch rows only).
  TORCH_ARG(int64_t, every) = 50;
};

/// Appends records to `<run_dir>/metrics.csv` and `<run_dir>/metrics.jsonl`: a "step" row every
/// few steps and an "epoch" row per epoch, with epoch (fractional for steps), step, loss (the
/// step's, or the epoch mean), lr of each group, collapse std, kNN top-1, images/s and data-wait
/// fraction. JSON lines also carry every other metric hooks added. A resumed run first drops the
/// rows of epochs it will redo. The CSV header is written once per file.
class MetricsLog : public Hook {
 public:
  explicit MetricsLog(MetricsLogOptions options = {}) : options(options) {
    TORCH_CHECK(options.every() >= 0, "simsiam::MetricsLog: expected every >= 0, got ",
                options.every());
  }

  void on_train_begin(TrainState& state) override {
    TORCH_CHECK(!state.run_dir.empty(), "simsiam::MetricsLog: the trainer has no run_dir");
    csv_path_ = state.run_dir + "/metrics.csv";
    json_path_ = state.run_dir + "/metrics.jsonl";
    if (state.start_epoch > 0) {
      drop_rows_from(csv_path_, state.start_epoch, /*json=*/false);
      drop_rows_from(json_path_, state.start_epoch, /*json=*/true);
    } else {
      std::error_code ignored;
      std::filesystem::remove(csv_path_, ignored);
      std::filesystem::remove(json_path_, ignored);
    }
  }

  void on_step_end(TrainState& state) override {
    if (options.every() == 0 || state.global_step % options.every() != 0) return;
    const double epoch = static_cast<double>(state.epoch) +
                         static_cast<double>(state.step_in_epoch) /
                             static_cast<double>(std::max<int64_t>(1, state.steps_per_epoch));
    write("step", epoch, state.loss, state.step_metrics, state);
  }

  void on_epoch_end(TrainState& state) override {
    write("epoch", static_cast<double>(state.epoch + 1), state.epoch_loss, state.epoch_metrics,
          state);
  }

  MetricsLogOptions options;

  /// The CSV columns before the per-group lrs / after them.
  static constexpr const char* kLeadingColumns = "kind,epoch,step,loss";
  static constexpr const char* kTrailingColumns =
      "collapse_std,knn_top1,images_per_s,data_wait_fraction";

 private:
  void write(const char* kind, double epoch, double loss, const std::map<std::string, double>& m,
             const TrainState& state) {
    auto metric = [&](const char* name) {
      const auto it = m.find(name);
      return it == m.end() ? std::nan("") : it->second;
    };
    const bool new_csv = !std::filesystem::exists(csv_path_);
    std::ofstream csv(csv_path_, std::ios::app);
    std::ofstream json(json_path_, std::ios::app);
    TORCH_CHECK(csv && json, "simsiam::MetricsLog: cannot append to '", csv_path_, "' and '",
                json_path_, "'");
    if (new_csv) {
      csv << kLeadingColumns;
      for (size_t g = 0; g < state.lrs.size(); ++g) csv << ",lr" << g;
      csv << "," << kTrailingColumns << "\n";
    }
    using detail::format_number;
    csv << kind << "," << format_number(epoch, "") << "," << state.global_step << ","
        << format_number(loss, "");
    json << "{\"kind\":\"" << kind << "\",\"epoch\":" << format_number(epoch, "null")
         << ",\"step\":" << state.global_step << ",\"loss\":" << format_number(loss, "null")
         << ",\"lr\":[";
    for (size_t g = 0; g < state.lrs.size(); ++g) {
      csv << "," << format_number(state.lrs[g], "");
      json << (g ? "," : "") << format_number(state.lrs[g], "null");
    }
    json << "]";
    csv << "," << format_number(metric("collapse_std"), "") << ","
        << format_number(metric("knn_top1"), "") << ","
        << format_number(state.images_per_second, "") << ","
        << format_number(state.data_wait_fraction, "") << "\n";
    for (const auto& [name, value] : m) {
      json << ",\"" << name << "\":" << format_number(value, "null");
    }
    json << ",\"images_per_s\":" << format_number(state.images_per_second, "null")
         << ",\"data_wait_fraction\":" << format_number(state.data_wait_fraction, "null") << "}\n";
  }

  /// Keeps the header and the rows of epochs before `epoch` (step rows of epoch e have
  /// e < value <= e + 1, its epoch row has e + 1), rewriting the file atomically.
  static void drop_rows_from(const std::string& path, int64_t epoch, bool json) {
    std::ifstream in(path);
    if (!in) return;
    std::ostringstream kept;
    std::string line;
    bool first = true;
    while (std::getline(in, line)) {
      if (!json && first) {
        kept << line << "\n";
        first = false;
        continue;
      }
      double value = 0.0;
      bool is_epoch_row = false;
      if (json) {
        const auto at = line.find("\"epoch\":");
        if (at == std::string::npos) continue;
        value = std::strtod(line.c_str() + at + 8, nullptr);
        is_epoch_row = line.find("\"kind\":\"epoch\"") != std::string::npos;
      } else {
        const auto comma = line.find(',');
        if (comma == std::string::npos) continue;
        value = std::strtod(line.c_str() + comma + 1, nullptr);
        is_epoch_row = line.compare(0, comma, "epoch") == 0;
      }
      const double row_epoch = is_epoch_row ? value - 1.0 : std::ceil(value) - 1.0;
      if (row_epoch < static_cast<double>(epoch)) kept << line << "\n";
    }
    in.close();
    detail::write_file_atomically(kept.str(), path, "simsiam::MetricsLog");
  }

  std::string csv_path_, json_path_;
};

/// Options of `MetricsPlot`.
struct MetricsPlotOptions {
  /// The gnuplot program (Debian: apt-get install gnuplot-nox).
  TORCH_ARG(std::string, gnuplot) = "gnuplot";
  TORCH_ARG(int64_t, width) = 1200;
  TORCH_ARG(int64_t, height) = 400;
};

/// At the end of a run, plots the epoch rows of `metrics.csv` (loss, collapse std, kNN top-1
/// vs epoch, three panels) to `<run_dir>/metrics.png` with gnuplot; the script stays next to it
/// as `metrics.gp`. Without gnuplot it prints a warning and the run still succeeds.
class MetricsPlot : public Hook {
 public:
  explicit MetricsPlot(MetricsPlotOptions options = {}) : options(std::move(options)) {}

  void on_train_end(TrainState& state) override {
    if (state.run_dir.empty()) return;
    const auto dir = std::filesystem::path(state.run_dir);
    if (!std::filesystem::exists(dir / "metrics.csv")) return;
    std::ifstream header_in(dir / "metrics.csv");
    std::string header;
    std::getline(header_in, header);
    auto column = [&](const std::string& name) {
      std::stringstream fields(header);
      std::string field;
      for (int index = 1; std::getline(fields, field, ','); ++index) {
        if (field == name) return index;
      }
      return 0;
    };
    // Panels for the columns that have values in epoch rows (kNN only with a KnnMonitor).
    std::vector<std::pair<std::string, std::string>> panels;  // column, title
    for (const auto& [name, title] :
         {std::pair<std::string, std::string>{"loss", "loss"},
          {"collapse_std", "collapse std of z/||z|| (healthy ~ 1/sqrt(d))"},
          {"knn_top1", "kNN top-1 (%)"}}) {
      if (column_has_values(dir / "metrics.csv", column(name))) panels.emplace_back(name, title);
    }
    if (panels.empty()) return;
    const std::string script_path = (dir / "metrics.gp").string();
    const std::string png = (dir / "metrics.png").string();
    {
      std::ofstream script(script_path, std::ios::trunc);
      script << "# Plot of metrics.csv's epoch rows, written by simsiam::MetricsPlot.\n"
             << "set terminal pngcairo size " << options.width() << "," << options.height() << "\n"
             << "set output '" << png << ".tmp'\n"
             << "set datafile separator ','\n"
             << "set multiplot layout 1," << panels.size() << "\n"
             << "set xlabel 'epoch'\nset grid\nunset key\n"
             << "data = \"< grep '^epoch,' '" << (dir / "metrics.csv").string() << "'\"\n";
      for (const auto& [name, title] : panels) {
        const std::string scale = name == "knn_top1" ? "*100" : "";
        // The collapse std is read against 0 (collapsed) and 1/sqrt(d) (healthy).
        script << "set title '" << title << "' noenhanced\n"
               << "set yrange " << (name == "collapse_std" ? "[0:*]" : "[*:*]") << "\n"
               << "plot data using 2:($" << column(name) << scale
               << ") with linespoints pt 7 ps 0.5\n";
      }
      script << "unset multiplot\n";
    }
    const std::string command = options.gnuplot() + " '" + script_path + "' > /dev/null 2>&1";
    const int status = std::system(command.c_str());
    std::error_code error;
    if (status == 0 && std::filesystem::exists(png + ".tmp")) {
      std::filesystem::rename(png + ".tmp", png, error);
    }
    if (status != 0 || error) {
      std::filesystem::remove(png + ".tmp", error);
      std::fprintf(stderr,
                   "warning: no plot: '%s' failed (install gnuplot: apt-get install "
                   "gnuplot-nox); the metrics are in %s\n",
                   command.c_str(), (dir / "metrics.csv").c_str());
      return;
    }
    path_ = png;
  }

  /// The PNG written by the last run, or "".
  const std::string& path() const { return path_; }

  MetricsPlotOptions options;

 private:
  /// Whether any epoch row has a value in (1-based) column `index`.
  static bool column_has_values(const std::filesystem::path& csv, int index) {
    if (index <= 0) return false;
    std::ifstream in(csv);
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("epoch,", 0) != 0) continue;
      std::stringstream fields(line);
      std::string field;
      for (int i = 1; std::getline(fields, field, ','); ++i) {
        if (i == index && !field.empty()) return true;
      }
    }
    return false;
  }

  std::string path_;
};

}  // namespace simsiam
