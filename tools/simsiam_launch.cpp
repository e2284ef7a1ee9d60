// SPDX-License-Identifier: BSD-3-Clause
// simsiam_launch: starts the ranks of a distributed run on this machine, as torchrun does.
//
//   simsiam_launch [--nproc-per-node N | --nproc N] [--nnodes M] [--node-rank R]
//                  [--master-addr A] [--master-port P] [--grace-seconds S] [--log-dir DIR]
//                  [--] program args...
//
// Runs N copies of `program args...` (fork + execvp, the program looked up in PATH), each with
// the variables torchrun sets and simsiam::distributed::DistributedOptions::from_env() reads:
// RANK (node_rank * N + local rank), WORLD_SIZE (N * M), LOCAL_RANK, LOCAL_WORLD_SIZE (N),
// GROUP_RANK (the node rank), MASTER_ADDR (127.0.0.1), MASTER_PORT (29500), and, as torchrun does
// when N > 1, OMP_NUM_THREADS=1 unless it is set, so that N ranks do not each start one OpenMP
// thread per core. On several machines run it once per machine with the same N, M, address and
// port and that machine's --node-rank; the ranks meet at MASTER_ADDR:MASTER_PORT (rank 0 serves
// the store there). There is no rendezvous or restart: a dead node makes the others fail at
// their process group's timeout.
//
// When a rank exits non-zero or is killed by a signal, the launcher names it (rank, local rank,
// pid, exit code or signal), sends SIGTERM to the other ranks, SIGKILL to those still running
// after --grace-seconds, and exits with the failed rank's exit code (128 + signal for a signal).
// SIGINT, SIGTERM and SIGHUP sent to the launcher are forwarded to the ranks, with the same
// shutdown, and the launcher exits with 128 + that signal; a second one sends SIGKILL at once.
// A signal the launcher was started with ignored (nohup, a background job's SIGINT) stays ignored,
// in the ranks too.
//
// Each rank runs in its own session and process group, as torchrun starts its workers, so that
// the signals reach what a rank started itself (a shell script's children) and the terminal's
// Ctrl-C reaches the launcher alone, which forwards it once. On Linux a rank is killed if the
// launcher dies without shutting it down (SIGKILL of the launcher), so no rank outlives it.
// With --log-dir, the stdout and stderr of rank R go to DIR/rank_R.log (the directory created,
// the file overwritten); without it the ranks write to the launcher's stdout and stderr.
//
// Exit status: 0 when every rank exits 0; the failed rank's status; 128 + signal when the launcher
// was signalled; 2 for invalid options; 1 when a rank could not be started. A program that cannot
// be executed makes its rank print "simsiam_launch: cannot run 'prog': <reason>" and exit 127.
#include <CLI/CLI.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kUsageError = 2;
constexpr int kCannotExecute = 127;  // the shell's status for a command it cannot run
constexpr double kMaxGraceSeconds = 86400;

struct Options {
  int nproc_per_node = 1;
  int nnodes = 1;
  int node_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  double grace_seconds = 5.0;
  std::string log_dir;
  std::vector<std::string> command;  // program and its arguments
};

/// One child process: a rank of the job.
struct Rank {
  int local_rank = 0;
  long long rank = 0;
  pid_t pid = -1;  // also its process group and session (setsid)
  bool running = false;
};

/// "SIGKILL" for 9: the names of the signals a rank is usually killed by, else the number.
std::string signal_name(int sig) {
  static const std::pair<int, const char*> kNames[] = {
      {SIGHUP, "SIGHUP"},   {SIGINT, "SIGINT"},   {SIGQUIT, "SIGQUIT"}, {SIGILL, "SIGILL"},
      {SIGTRAP, "SIGTRAP"}, {SIGABRT, "SIGABRT"}, {SIGBUS, "SIGBUS"},   {SIGFPE, "SIGFPE"},
      {SIGKILL, "SIGKILL"}, {SIGUSR1, "SIGUSR1"}, {SIGSEGV, "SIGSEGV"}, {SIGUSR2, "SIGUSR2"},
      {SIGPIPE, "SIGPIPE"}, {SIGALRM, "SIGALRM"}, {SIGTERM, "SIGTERM"}, {SIGXCPU, "SIGXCPU"},
      {SIGXFSZ, "SIGXFSZ"}, {SIGSYS, "SIGSYS"}};
  for (const auto& [number, name] : kNames) {
    if (number == sig) return name;
  }
  return "signal " + std::to_string(sig);
}

/// "2.5 s", "5 s": a duration in seconds as the user wrote it.
std::string seconds_text(double seconds) {
  char text[32];
  std::snprintf(text, sizeof text, "%g s", seconds);
  return text;
}

std::string plural(long long count, const char* noun) {
  return std::to_string(count) + " " + noun + (count == 1 ? "" : "s");
}

// --- signals: the handler writes the signal number to a pipe the main loop polls (self-pipe) ---

int g_signal_pipe[2] = {-1, -1};
volatile sig_atomic_t g_stop_signal = 0;  // the last SIGINT/SIGTERM/SIGHUP received

extern "C" void on_signal(int sig) {
  const int saved_errno = errno;
  if (sig != SIGCHLD) g_stop_signal = sig;
  const auto byte = static_cast<unsigned char>(sig);
  if (::write(g_signal_pipe[1], &byte, 1) < 0) {
    // The pipe is full: the main loop has wakeups pending already.
  }
  errno = saved_errno;
}

/// The signals the launcher handles, and what the ranks get back before exec.
struct SignalSetup {
  std::vector<int> handled;         // handlers installed (reset to SIG_DFL in the ranks)
  struct sigaction sigpipe_before;  // restored in the ranks
  sigset_t blocked;                 // blocked around fork, so a rank never runs our handler
};

bool make_signal_pipe() {
  if (::pipe(g_signal_pipe) != 0) return false;
  for (const int fd : g_signal_pipe) {
    if (::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) return false;
    if (::fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) return false;
  }
  return true;
}

SignalSetup install_signal_handlers() {
  SignalSetup setup{};
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  for (const int sig : {SIGINT, SIGTERM, SIGHUP}) {
    struct sigaction before {};
    ::sigaction(sig, nullptr, &before);
    // Ignored on entry (nohup, a non-interactive shell's background job): the ranks inherit that.
    if (before.sa_handler == SIG_IGN) continue;
    ::sigaction(sig, &action, nullptr);
    setup.handled.push_back(sig);
  }
  action.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  ::sigaction(SIGCHLD, &action, nullptr);
  setup.handled.push_back(SIGCHLD);
  // A closed stdout must not kill the launcher while it has ranks to stop.
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  ::sigaction(SIGPIPE, &ignore, &setup.sigpipe_before);
  sigemptyset(&setup.blocked);
  for (const int sig : setup.handled) sigaddset(&setup.blocked, sig);
  return setup;
}

// --- the ranks ---

/// The launcher's environment with the rank's variables set (torchrun's names).
std::vector<std::string> rank_environment(const Options& options, const Rank& rank,
                                          bool set_omp_threads) {
  std::vector<std::pair<std::string, std::string>> variables = {
      {"RANK", std::to_string(rank.rank)},
      {"WORLD_SIZE",
       std::to_string(static_cast<long long>(options.nproc_per_node) * options.nnodes)},
      {"LOCAL_RANK", std::to_string(rank.local_rank)},
      {"LOCAL_WORLD_SIZE", std::to_string(options.nproc_per_node)},
      {"GROUP_RANK", std::to_string(options.node_rank)},
      {"MASTER_ADDR", options.master_addr},
      {"MASTER_PORT", std::to_string(options.master_port)}};
  if (set_omp_threads) variables.emplace_back("OMP_NUM_THREADS", "1");
  std::vector<std::string> environment;
  environment.reserve(64 + variables.size());
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string text = *entry;
    const std::string name = text.substr(0, text.find('='));
    const bool replaced = std::any_of(variables.begin(), variables.end(),
                                      [&](const auto& variable) { return variable.first == name; });
    if (!replaced) environment.push_back(text);
  }
  for (const auto& [name, value] : variables) environment.push_back(name + '=' += value);
  return environment;
}

std::vector<char*> c_strings(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  pointers.reserve(strings.size() + 1);
  for (auto& text : strings) pointers.push_back(text.data());
  pointers.push_back(nullptr);
  return pointers;
}

/// In the forked child: becomes the rank's program, or exits 127 saying why it cannot.
[[noreturn]] void exec_rank(char** argv, char** envp, int log_fd, const SignalSetup& signals,
                            const sigset_t& launcher_mask, pid_t launcher) noexcept {
  ::setsid();  // own session and process group: the launcher signals the whole group
#ifdef __linux__
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // the launcher killed outright takes the rank along
  if (::getppid() != launcher) ::_exit(128 + SIGKILL);  // it died before prctl
#else
  (void)launcher;
#endif
  if (log_fd >= 0) {
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
  }
  for (const int sig : signals.handled) ::signal(sig, SIG_DFL);
  ::sigaction(SIGPIPE, &signals.sigpipe_before, nullptr);
  ::sigprocmask(SIG_SETMASK, &launcher_mask, nullptr);  // signals sent since fork arrive now
  environ = envp;
  ::execvp(argv[0], argv);
  const std::string message =
      std::string("simsiam_launch: cannot run '") + argv[0] + "': " + std::strerror(errno) + "\n";
  if (::write(STDERR_FILENO, message.data(), message.size()) < 0) {
    // Nowhere left to report it; the exit status says it.
  }
  ::_exit(kCannotExecute);
}

class Launcher {
 public:
  Launcher(Options options, SignalSetup signals)
      : options_(std::move(options)), signals_(std::move(signals)) {}

  /// Starts the ranks, waits for them, and returns the launcher's exit status.
  int run(const std::vector<int>& log_fds, bool set_omp_threads) {
    start_ranks(log_fds, set_omp_threads);
    return supervise();
  }

 private:
  void start_ranks(const std::vector<int>& log_fds, bool set_omp_threads) {
    std::vector<std::string> arguments = options_.command;
    std::vector<char*> argv = c_strings(arguments);
    const pid_t launcher = ::getpid();
    for (int local_rank = 0; local_rank < options_.nproc_per_node; ++local_rank) {
      if (g_stop_signal != 0) return;  // the main loop forwards it to the ranks started so far
      Rank rank;
      rank.local_rank = local_rank;
      rank.rank = static_cast<long long>(options_.node_rank) * options_.nproc_per_node + local_rank;
      std::vector<std::string> environment = rank_environment(options_, rank, set_omp_threads);
      std::vector<char*> envp = c_strings(environment);
      const int log_fd = log_fds.empty() ? -1 : log_fds[local_rank];

      sigset_t launcher_mask;
      ::sigprocmask(SIG_BLOCK, &signals_.blocked, &launcher_mask);
      std::fflush(nullptr);  // no buffered output copied into the child
      const pid_t pid = ::fork();
      if (pid == 0) exec_rank(argv.data(), envp.data(), log_fd, signals_, launcher_mask, launcher);
      const int fork_errno = errno;
      ::sigprocmask(SIG_SETMASK, &launcher_mask, nullptr);
      if (log_fd >= 0) ::close(log_fd);
      if (pid < 0) {
        std::fprintf(stderr, "simsiam_launch: cannot start local rank %d: fork: %s\n", local_rank,
                     std::strerror(fork_errno));
        begin_shutdown(1, SIGTERM);
        return;
      }
      rank.pid = pid;
      rank.running = true;
      ranks_.push_back(rank);
    }
  }

  int supervise() {
    for (;;) {
      drain_signal_pipe();
      reap();
      if (shutting_down_ && !killed_ && Clock::now() >= deadline_) {
        std::fprintf(stderr, "simsiam_launch: %s after %s; sending SIGKILL\n",
                     still_running().c_str(), seconds_text(options_.grace_seconds).c_str());
        kill_all();
      }
      if (finished()) return exit_status_;
      int timeout_ms = -1;  // a signal or a rank's exit wakes the loop
      if (shutting_down_ && !killed_) {
        // Processes a rank started do not send SIGCHLD to us: look again every 50 ms.
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now());
        timeout_ms = static_cast<int>(std::clamp<long long>(left.count() + 1, 0, 50));
      }
      pollfd wakeup{g_signal_pipe[0], POLLIN, 0};
      ::poll(&wakeup, 1, timeout_ms);  // EINTR: a signal, handled at the top of the loop
    }
  }

  void drain_signal_pipe() {
    unsigned char bytes[64];
    ssize_t count;
    while ((count = ::read(g_signal_pipe[0], bytes, sizeof bytes)) > 0) {
      for (ssize_t i = 0; i < count; ++i) {
        if (bytes[i] != SIGCHLD) on_stop_signal(bytes[i]);
      }
    }
  }

  /// SIGINT, SIGTERM or SIGHUP sent to the launcher.
  void on_stop_signal(int sig) {
    if (!shutting_down_) {
      std::fprintf(stderr, "simsiam_launch: received %s; forwarding it to %s (SIGKILL after %s)\n",
                   signal_name(sig).c_str(), plural(count_running(), "rank").c_str(),
                   seconds_text(options_.grace_seconds).c_str());
      begin_shutdown(128 + sig, sig);
    } else if (!killed_) {
      std::fprintf(stderr, "simsiam_launch: received %s again; sending SIGKILL\n",
                   signal_name(sig).c_str());
      kill_all();
    }
  }

  void reap() {
    int status = 0;
    pid_t pid;
    while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
      const auto rank = std::find_if(ranks_.begin(), ranks_.end(),
                                     [&](const Rank& r) { return r.pid == pid && r.running; });
      if (rank == ranks_.end()) continue;  // a process a rank started (we are its subreaper)
      rank->running = false;
      if (WIFEXITED(status) && WEXITSTATUS(status) == 0) continue;
      if (shutting_down_) continue;  // stopped by us, or after the failure already reported
      report_failure(*rank, status);
      const int exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      if (count_running() > 0) {
        std::fprintf(stderr, "simsiam_launch: stopping the other %s (SIGTERM, SIGKILL after %s)\n",
                     plural(count_running(), "rank").c_str(),
                     seconds_text(options_.grace_seconds).c_str());
      }
      begin_shutdown(exit_status, SIGTERM);
    }
  }

  void report_failure(const Rank& rank, int status) const {
    std::string how;
    if (WIFEXITED(status)) {
      how = "exit code " + std::to_string(WEXITSTATUS(status));
    } else {
      how = "killed by signal " + signal_name(WTERMSIG(status));
#ifdef WCOREDUMP
      if (WCOREDUMP(status)) how += " (core dumped)";
#endif
    }
    std::string where = "local rank " + std::to_string(rank.local_rank);
    if (options_.nnodes > 1) where += " on node " + std::to_string(options_.node_rank);
    std::fprintf(stderr, "simsiam_launch: rank %lld (%s, pid %d) failed: %s\n", rank.rank,
                 where.c_str(), static_cast<int>(rank.pid), how.c_str());
  }

  void begin_shutdown(int exit_status, int sig) {
    if (shutting_down_) return;
    shutting_down_ = true;
    exit_status_ = exit_status;
    deadline_ = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double>(options_.grace_seconds));
    signal_all(sig);
  }

  void kill_all() {
    killed_ = true;
    signal_all(SIGKILL);
  }

  /// Sends `sig` to every rank's process group: the rank and whatever it started.
  void signal_all(int sig) const {
    for (const Rank& rank : ranks_) {
      // Before the child's setsid() its group does not exist yet: signal the process itself (the
      // child has the signal blocked until it is ready, so it is not lost).
      if (::killpg(rank.pid, sig) != 0 && errno == ESRCH && rank.running) ::kill(rank.pid, sig);
    }
  }

  /// Whether the process group of a rank still has members (a rank's own children count).
  static bool group_alive(const Rank& rank) { return ::killpg(rank.pid, 0) == 0; }

  long long count_running() const {
    return std::count_if(ranks_.begin(), ranks_.end(), [](const Rank& r) { return r.running; });
  }

  /// "2 ranks still running", "processes started by 1 rank still running", or both.
  std::string still_running() const {
    const long long running = count_running();
    const long long left_behind = std::count_if(
        ranks_.begin(), ranks_.end(), [](const Rank& r) { return !r.running && group_alive(r); });
    std::string text;
    if (running > 0) text = plural(running, "rank");
    if (running > 0 && left_behind > 0) text += " and ";
    if (left_behind > 0) text += "processes started by " + plural(left_behind, "rank");
    return text + " still running";
  }

  bool finished() const {
    if (count_running() > 0) return false;
    if (!shutting_down_ || killed_) return true;
    // Shutting down: wait until what the ranks started has ended too (or the grace period has).
    return std::none_of(ranks_.begin(), ranks_.end(), group_alive);
  }

  Options options_;
  SignalSetup signals_;
  std::vector<Rank> ranks_;
  bool shutting_down_ = false;
  bool killed_ = false;
  int exit_status_ = 0;
  Clock::time_point deadline_{};
};

/// The first invalid option as "expected ..., got ...", or "" when all are valid.
std::string validate(const Options& options) {
  if (options.nproc_per_node < 1) {
    return "expected --nproc-per-node >= 1, got " + std::to_string(options.nproc_per_node);
  }
  if (options.nnodes < 1) return "expected --nnodes >= 1, got " + std::to_string(options.nnodes);
  if (options.node_rank < 0 || options.node_rank >= options.nnodes) {
    return "expected 0 <= --node-rank < --nnodes (" + std::to_string(options.nnodes) + "), got " +
           std::to_string(options.node_rank);
  }
  if (options.master_addr.empty()) return "expected a host name or address for --master-addr";
  if (options.master_port < 1 || options.master_port > 65535) {
    return "expected 1 <= --master-port <= 65535, got " + std::to_string(options.master_port);
  }
  if (!(options.grace_seconds >= 0 && options.grace_seconds <= kMaxGraceSeconds)) {
    return "expected 0 <= --grace-seconds <= " + seconds_text(kMaxGraceSeconds) + ", got " +
           seconds_text(options.grace_seconds);
  }
  if (options.command.empty()) {
    return "expected a program to run after the options, e.g. "
           "simsiam_launch --nproc-per-node 2 -- ./train --epochs 10";
  }
  return "";
}

/// Opens DIR/rank_R.log for each rank of this node (the directory created); empty on error.
std::vector<int> open_logs(const Options& options) {
  std::error_code error;
  std::filesystem::create_directories(options.log_dir, error);
  if (error) {
    std::fprintf(stderr, "simsiam_launch: cannot create --log-dir '%s': %s\n",
                 options.log_dir.c_str(), error.message().c_str());
    return {};
  }
  std::vector<int> fds;
  for (int local_rank = 0; local_rank < options.nproc_per_node; ++local_rank) {
    const long long rank =
        static_cast<long long>(options.node_rank) * options.nproc_per_node + local_rank;
    const auto path =
        std::filesystem::path(options.log_dir) / ("rank_" + std::to_string(rank) + ".log");
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
      std::fprintf(stderr, "simsiam_launch: cannot open '%s': %s\n", path.c_str(),
                   std::strerror(errno));
      for (const int open_fd : fds) ::close(open_fd);
      return {};
    }
    fds.push_back(fd);
  }
  return fds;
}

/// Parses the command line into `options`; an exit status when the launcher should stop there
/// (help shown: 0; a usage error, printed: kUsageError).
std::optional<int> parse_command_line(int argc, char** argv, Options& options) {
  CLI::App app{
      "Starts the ranks of a distributed SimSiam run with torchrun's environment "
      "variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, ...), and stops them all "
      "when one fails."};
  app.add_option("--nproc-per-node,--nproc", options.nproc_per_node,
                 "Processes (ranks) on this machine")
      ->capture_default_str();
  app.add_option("--nnodes", options.nnodes, "Machines taking part")->capture_default_str();
  app.add_option("--node-rank", options.node_rank, "This machine's index, 0 <= R < nnodes")
      ->capture_default_str();
  app.add_option("--master-addr", options.master_addr, "Address of the machine with rank 0")
      ->capture_default_str();
  app.add_option("--master-port", options.master_port, "Port of rank 0's store")
      ->capture_default_str();
  app.add_option("--grace-seconds", options.grace_seconds,
                 "After a failure or a signal, how long the ranks get to exit before SIGKILL")
      ->capture_default_str();
  app.add_option("--log-dir", options.log_dir,
                 "Write rank R's stdout and stderr to DIR/rank_R.log instead of the terminal");
  app.footer(
      "The program and its arguments follow the options (or --).\n"
      "One machine, 4 ranks:   simsiam_launch --nproc-per-node 4 ./train --epochs 100\n"
      "Two machines (on each): simsiam_launch --nproc-per-node 4 --nnodes 2 --node-rank <0|1> "
      "--master-addr <node 0's address> --master-port 29500 ./train --epochs 100");
  app.prefix_command();  // everything from the program on belongs to the program
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int status = app.exit(e);  // prints the help (status 0) or the error
    return status == 0 ? 0 : kUsageError;
  }

  std::vector<std::string> rest = app.remaining();
  if (!rest.empty() && rest.front() == "--") {
    rest.erase(rest.begin());
  } else if (!rest.empty() && rest.front().size() > 1 && rest.front()[0] == '-') {
    std::fprintf(stderr,
                 "simsiam_launch: unknown option '%s' (the program and its arguments go after "
                 "the options; see --help)\n",
                 rest.front().c_str());
    return kUsageError;
  }
  options.command = std::move(rest);
  if (const std::string error = validate(options); !error.empty()) {
    std::fprintf(stderr, "simsiam_launch: %s\n", error.c_str());
    return kUsageError;
  }
  return std::nullopt;
}

/// The launcher's main: parses the options, starts the ranks, returns the exit status.
int launch(int argc, char** argv) {
  Options options;
  if (const auto status = parse_command_line(argc, argv, options)) return *status;
  std::vector<int> log_fds;
  if (!options.log_dir.empty()) {
    log_fds = open_logs(options);
    if (log_fds.empty()) return 1;
  }
  // torchrun's default: N ranks with one OpenMP thread per core each would oversubscribe the CPU.
  const bool set_omp_threads =
      options.nproc_per_node > 1 && std::getenv("OMP_NUM_THREADS") == nullptr;
  if (set_omp_threads) {
    std::fprintf(stderr,
                 "simsiam_launch: setting OMP_NUM_THREADS=1 for each rank (it is unset), so %d "
                 "ranks do not overload the CPU; set it to tune\n",
                 options.nproc_per_node);
  }

  if (!make_signal_pipe()) {
    std::fprintf(stderr, "simsiam_launch: cannot create a pipe: %s\n", std::strerror(errno));
    return 1;
  }
#ifdef __linux__
  // Processes a rank leaves behind become the launcher's children, not init's: it reaps them, so a
  // rank's process group is gone as soon as they have ended (init may reap late, or never).
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
#endif
  Launcher launcher(std::move(options), install_signal_handlers());
  return launcher.run(log_fds, set_omp_threads);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return launch(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "simsiam_launch: %s\n", e.what());
    return 1;
  }
}
