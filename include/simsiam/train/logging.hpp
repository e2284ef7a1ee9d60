// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief Reporting hooks: `ProgressBar` (terminal bar, or plain lines when not a terminal),
/// `MetricsLog` (CSV and JSON lines) and `MetricsPlot` (loss, collapse std and kNN accuracy vs
/// epoch as a PNG, drawn by gnuplot).
#pragma once

#include <torch/torch.h>

#include <algorithm>
#include <cerrno>
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
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
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

/// `text` as a JSON string (RFC 8259, section 7): quote and backslash escaped, control
/// characters as `\u00XX`, other bytes (UTF-8) as they are.
inline std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (byte < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", static_cast<unsigned>(byte));
      out += escaped;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

/// `value` as a JSON number, the shortest of 15-17 significant digits that reads back to the
/// same double; `null` when it is not finite (JSON has no NaN or infinity).
inline std::string json_number(double value) {
  if (!std::isfinite(value)) return "null";
  char text[32];
  for (const int digits : {15, 16, 17}) {
    std::snprintf(text, sizeof text, "%.*g", digits, value);
    if (std::strtod(text, nullptr) == value) break;
  }
  return text;
}

/// A JSON object written in insertion order; a key set again keeps its place and takes the new
/// value. (Hand-written rather than nlohmann_json: that header alone adds about 15% to the
/// compile time of every file that includes the trainer.)
class JsonObject {
 public:
  /// `value` is JSON text: `json_number(x)`, `json_string(s)`, `[...]`.
  void set(const std::string& key, std::string value) {
    for (auto& [existing, old] : fields_) {
      if (existing == key) {
        old = std::move(value);
        return;
      }
    }
    fields_.emplace_back(key, std::move(value));
  }
  std::string dump() const {
    std::string out = "{";
    for (const auto& [key, value] : fields_) {
      if (out.size() > 1) out += ",";
      out += json_string(key) + ":" + value;
    }
    return out + "}";
  }

 private:
  std::vector<std::pair<std::string, std::string>> fields_;
};

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
    if (m.count(metrics::kCollapseStd) && state.z1.defined()) {
      std::snprintf(text, sizeof text, "  z-std %.4f (1/sqrt(d) %.4f)", m.at(metrics::kCollapseStd),
                    1.0 / std::sqrt(static_cast<double>(state.z1.size(1))));
      out << text;
    }
    if (m.count(metrics::kKnnTop1)) {
      std::snprintf(text, sizeof text, "  kNN %.2f%%", 100.0 * m.at(metrics::kKnnTop1));
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
  /// A step row every `every` optimiser steps (0: epoch rows only), on those of them where
  /// the trainer read the loss (every `TrainerOptions::read_every` steps). Its collapse std is
  /// there when the collapse monitor read it at that step (every `CollapseMonitorOptions::every`
  /// steps; all three are 50 by default on a GPU).
  TORCH_ARG(int64_t, every) = 50;
};

/// Appends records to `<run_dir>/metrics.csv` and `<run_dir>/metrics.jsonl`: a "step" row every
/// few steps and an "epoch" row per epoch, with epoch (fractional for steps), step, loss (the
/// step's, or the epoch mean), lr of each group, collapse std, kNN top-1, images/s and data-wait
/// fraction. JSON lines (any metric name escaped) also carry
/// every other metric hooks added; numbers that are not finite are null. A resumed run first
/// drops the rows of epochs it will redo. The CSV header is written once per file; both files
/// stay open during the run and each row is flushed as it is written.
class MetricsLog : public Hook {
 public:
  explicit MetricsLog(MetricsLogOptions options = {}) : options_(options) {
    TORCH_CHECK(options_.every() >= 0, "simsiam::MetricsLog: expected every >= 0, got ",
                options_.every());
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
    // The header names one lr column per parameter group: written with the first row.
    needs_header_ = !std::filesystem::exists(csv_path_);
    csv_.open(csv_path_, std::ios::app);
    json_.open(json_path_, std::ios::app);
    TORCH_CHECK(csv_ && json_, "simsiam::MetricsLog: cannot append to '", csv_path_, "' and '",
                json_path_, "'");
  }

  void on_step_end(TrainState& state) override {
    if (options_.every() == 0 || state.global_step % options_.every() != 0) return;
    if (state.loss_step != state.global_step) return;  // no loss of this step to write
    const double epoch = static_cast<double>(state.epoch) +
                         static_cast<double>(state.step_in_epoch) /
                             static_cast<double>(std::max<int64_t>(1, state.steps_per_epoch));
    write("step", epoch, state.loss, state.step_metrics, state);
  }

  void on_epoch_end(TrainState& state) override {
    write("epoch", static_cast<double>(state.epoch + 1), state.epoch_loss, state.epoch_metrics,
          state);
  }

  void on_train_end(TrainState&) override {
    csv_.close();
    json_.close();
  }

  const MetricsLogOptions& options() const { return options_; }

  /// The CSV columns before the per-group lrs / after them.
  static constexpr const char* kLeadingColumns = "kind,epoch,step,loss";
  static constexpr const char* kTrailingColumns =
      "collapse_std,knn_top1,images_per_s,data_wait_fraction";

 private:
  void write(const char* kind, double epoch, double loss, const std::map<std::string, double>& m,
             const TrainState& state) {
    const auto metric = [&](const char* name) {
      const auto it = m.find(name);
      return it == m.end() ? std::nan("") : it->second;
    };
    using detail::format_number;
    if (needs_header_) {
      csv_ << kLeadingColumns;
      for (size_t g = 0; g < state.lrs.size(); ++g) csv_ << ",lr" << g;
      csv_ << "," << kTrailingColumns << "\n";
      needs_header_ = false;
    }
    csv_ << kind << "," << format_number(epoch, "") << "," << state.global_step << ","
         << format_number(loss, "");
    for (const double lr : state.lrs) csv_ << "," << format_number(lr, "");
    csv_ << "," << format_number(metric(metrics::kCollapseStd), "") << ","
         << format_number(metric(metrics::kKnnTop1), "") << ","
         << format_number(state.images_per_second, "") << ","
         << format_number(state.data_wait_fraction, "") << std::endl;

    detail::JsonObject row;
    row.set("kind", detail::json_string(kind));
    row.set("epoch", detail::json_number(epoch));
    row.set("step", std::to_string(state.global_step));
    row.set("loss", detail::json_number(loss));
    std::string lrs;
    for (const double lr : state.lrs) lrs += (lrs.empty() ? "" : ",") + detail::json_number(lr);
    row.set("lr", "[" + lrs + "]");
    for (const auto& [name, value] : m) row.set(name, detail::json_number(value));
    row.set("images_per_s", detail::json_number(state.images_per_second));
    row.set("data_wait_fraction", detail::json_number(state.data_wait_fraction));
    json_ << row.dump() << std::endl;
    TORCH_CHECK(csv_ && json_, "simsiam::MetricsLog: cannot write to '", csv_path_, "' and '",
                json_path_, "'");
  }

  /// Keeps the header and the rows of epochs before `epoch` (step rows of epoch e have
  /// e < value <= e + 1, its epoch row has e + 1), rewriting the file atomically.
  static void drop_rows_from(const std::string& path, int64_t epoch, bool json) {
    std::ifstream in(path);
    if (!in) return;
    std::string kept, line;
    for (bool first = true; std::getline(in, line); first = false) {
      if (!json && first) {
        kept += line + "\n";
        continue;
      }
      const auto [value, is_epoch_row] = json ? json_row_epoch(line) : csv_row_epoch(line);
      const double row_epoch = is_epoch_row ? value - 1.0 : std::ceil(value) - 1.0;
      if (row_epoch < static_cast<double>(epoch)) kept += line + "\n";
    }
    in.close();
    detail::write_file_atomically(kept, path, "simsiam::MetricsLog");
  }
  /// {the epoch column, whether it is an epoch row}; a row that cannot be read counts as
  /// epoch infinity (dropped). `write` puts "kind" and "epoch" first (`JsonObject` keeps the
  /// insertion order), so the two are read from the line's start without a JSON parser.
  static std::pair<double, bool> json_row_epoch(const std::string& line) {
    static const std::string kStep = R"({"kind":"step","epoch":)";
    static const std::string kEpoch = R"({"kind":"epoch","epoch":)";
    const bool is_epoch_row = line.rfind(kEpoch, 0) == 0;
    if (!is_epoch_row && line.rfind(kStep, 0) != 0) return {HUGE_VAL, false};
    if (line.back() != '}') return {HUGE_VAL, false};  // cut short by a crash
    const char* begin = line.c_str() + (is_epoch_row ? kEpoch : kStep).size();
    char* end = nullptr;
    const double value = std::strtod(begin, &end);
    if (end == begin || *end != ',') return {HUGE_VAL, false};  // null: not finite
    return {value, is_epoch_row};
  }
  static std::pair<double, bool> csv_row_epoch(const std::string& line) {
    const auto comma = line.find(',');
    if (comma == std::string::npos) return {HUGE_VAL, false};
    return {std::strtod(line.c_str() + comma + 1, nullptr), line.compare(0, comma, "epoch") == 0};
  }

  MetricsLogOptions options_;
  std::string csv_path_, json_path_;
  std::ofstream csv_, json_;
  bool needs_header_ = false;
};

/// Options of `MetricsPlot`.
struct MetricsPlotOptions {
  /// The gnuplot program, looked up in PATH (Debian: apt-get install gnuplot-nox).
  TORCH_ARG(std::string, gnuplot) = "gnuplot";
  TORCH_ARG(int64_t, width) = 1200;
  TORCH_ARG(int64_t, height) = 400;
};

namespace detail {

/// `text` as a gnuplot single-quoted string: a quote inside is written twice.
inline std::string gnuplot_quoted(const std::string& text) {
  std::string quoted = "'";
  for (const char c : text) quoted += c == '\'' ? std::string("''") : std::string(1, c);
  return quoted + "'";
}

/// Runs `program` (looked up in PATH) with `arguments`, without a shell, its output discarded;
/// true when it exited with status 0.
inline bool run_quietly(const std::string& program, const std::vector<std::string>& arguments) {
#if defined(_WIN32)
  std::string command = "\"" + program + "\"";
  for (const auto& a : arguments) command += " \"" + a + "\"";
  return std::system((command + " > NUL 2>&1").c_str()) == 0;
#else
  std::vector<char*> argv{const_cast<char*>(program.c_str())};
  for (const auto& a : arguments) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  pid_t pid = 0;
  const int error = posix_spawnp(&pid, program.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (error != 0) return false;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
#endif
}

}  // namespace detail

/// At the end of a run, plots the epoch rows of `metrics.csv` (loss, collapse std, kNN top-1
/// vs epoch, three panels) to `<run_dir>/metrics.png` with gnuplot; the script, with the rows in
/// it, stays next to it as `metrics.gp`. gnuplot is started without a shell, so any folder name
/// works. Without gnuplot it prints a warning and the run still succeeds.
class MetricsPlot : public Hook {
 public:
  explicit MetricsPlot(MetricsPlotOptions options = {}) : options_(std::move(options)) {}

  void on_train_end(TrainState& state) override {
    if (state.run_dir.empty()) return;
    const auto dir = std::filesystem::path(state.run_dir);
    const auto table = read_epoch_rows(dir / "metrics.csv");
    // Panels for the columns that have values in epoch rows (kNN only with a KnnMonitor).
    std::vector<std::pair<int, std::string>> panels;  // 1-based column, name
    for (const char* name : {"loss", metrics::kCollapseStd, metrics::kKnnTop1}) {
      const int column = table.column(name);
      if (column > 0 && table.has_values(column)) panels.emplace_back(column, name);
    }
    if (panels.empty()) return;
    const std::string script = (dir / "metrics.gp").string();
    const std::string png = (dir / "metrics.png").string();
    detail::write_file_atomically(script_text(table, panels, png + ".tmp"), script,
                                  "simsiam::MetricsPlot");
    std::error_code error;
    const bool drawn =
        detail::run_quietly(options_.gnuplot(), {script}) && std::filesystem::exists(png + ".tmp");
    if (drawn) std::filesystem::rename(png + ".tmp", png, error);
    if (!drawn || error) {
      std::filesystem::remove(png + ".tmp", error);
      std::fprintf(stderr,
                   "warning: no plot: '%s %s' failed (install gnuplot: apt-get install "
                   "gnuplot-nox); the metrics are in %s\n",
                   options_.gnuplot().c_str(), script.c_str(), (dir / "metrics.csv").c_str());
      return;
    }
    path_ = png;
  }

  /// The PNG written by the last run, or "".
  const std::string& path() const { return path_; }
  const MetricsPlotOptions& options() const { return options_; }

 private:
  /// The header and the epoch rows of metrics.csv, split into fields.
  struct Table {
    std::vector<std::string> header;
    std::vector<std::vector<std::string>> rows;
    /// The 1-based index of column `name`, or 0.
    int column(const std::string& name) const {
      const auto it = std::find(header.begin(), header.end(), name);
      return it == header.end() ? 0 : static_cast<int>(it - header.begin()) + 1;
    }
    bool has_values(int column) const {
      return std::any_of(rows.begin(), rows.end(), [&](const auto& row) {
        return static_cast<size_t>(column) <= row.size() && !row[column - 1].empty();
      });
    }
  };

  static std::vector<std::string> split(const std::string& line) {
    std::vector<std::string> fields;
    std::stringstream in(line);
    for (std::string field; std::getline(in, field, ',');) fields.push_back(field);
    if (!line.empty() && line.back() == ',') fields.emplace_back();
    return fields;
  }

  static Table read_epoch_rows(const std::filesystem::path& csv) {
    Table table;
    std::ifstream in(csv);
    std::string line;
    if (!std::getline(in, line)) return table;
    table.header = split(line);
    while (std::getline(in, line)) {
      if (line.rfind("epoch,", 0) == 0) table.rows.push_back(split(line));
    }
    return table;
  }

  std::string script_text(const Table& table,
                          const std::vector<std::pair<int, std::string>>& panels,
                          const std::string& png) const {
    std::ostringstream script;
    script << "# Plot of metrics.csv's epoch rows, written by simsiam::MetricsPlot.\n"
           << "$epochs << EOD\n";
    for (const auto& row : table.rows) {
      for (size_t i = 0; i < row.size(); ++i) script << (i ? "," : "") << row[i];
      script << "\n";
    }
    script << "EOD\n"
           << "set terminal pngcairo size " << options_.width() << "," << options_.height() << "\n"
           << "set output " << detail::gnuplot_quoted(png) << "\n"
           << "set datafile separator ','\n"
           << "set multiplot layout 1," << panels.size() << "\n"
           << "set xlabel 'epoch'\nset grid\nunset key\n";
    for (const auto& [column, name] : panels) {
      const bool knn = name == metrics::kKnnTop1, collapse = name == metrics::kCollapseStd;
      // The collapse std is read against 0 (collapsed) and 1/sqrt(d) (healthy).
      script << "set title '"
             << (knn        ? "kNN top-1 (%)"
                 : collapse ? "collapse std of z/||z|| (healthy ~ 1/sqrt(d))"
                            : "loss")
             << "' noenhanced\n"
             << "set yrange " << (collapse ? "[0:*]" : "[*:*]") << "\n"
             << "plot $epochs using 2:($" << column << (knn ? "*100" : "")
             << ") with linespoints pt 7 ps 0.5\n";
    }
    script << "unset multiplot\n";
    return script.str();
  }

  MetricsPlotOptions options_;
  std::string path_;
};

}  // namespace simsiam
