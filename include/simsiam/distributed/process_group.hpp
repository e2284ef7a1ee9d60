// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief A c10d process group set up from torchrun's environment variables with a TCPStore,
/// or from a shared-file FileStore, with timeouts and errors that name the rank and the address.
/// Gloo on CPU; NCCL for CUDA tensors when LibTorch was built with it (USE_C10D_NCCL).
/// Needs Gloo's headers (Debian: libgloo-dev), as LibTorch's c10d does.
#pragma once

#include <torch/torch.h>
#include <torch/version.h>
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#if defined(USE_C10D_NCCL) && __has_include(<torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>) && \
    __has_include(<nccl.h>)
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#define SIMSIAM_HAS_NCCL 1
#else
#define SIMSIAM_HAS_NCCL 0
#endif

#include <signal.h>  // sigaction (POSIX)

#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "simsiam/distributed/communicator.hpp"

namespace simsiam::distributed {

namespace detail {
// LibTorch 2.x splits c10d's ProcessGroup into a front and backends (Gloo, NCCL) that derive
// from c10d::Backend; in 1.x the backends derive from c10d::ProcessGroup itself.
#if TORCH_VERSION_MAJOR >= 2
using C10dBackend = c10d::Backend;
#else
using C10dBackend = c10d::ProcessGroup;
#endif

template <class Options, class = void>
struct has_use_libuv : std::false_type {};
template <class Options>
struct has_use_libuv<Options, std::void_t<decltype(std::declval<Options&>().useLibUV)>>
    : std::true_type {};

template <class Group, class = void>
struct has_bound_device : std::false_type {};
template <class Group>
struct has_bound_device<Group, std::void_t<decltype(std::declval<Group&>().setBoundDeviceId(
                                   std::optional<at::Device>()))>> : std::true_type {};

/// Tells a backend its one device (LibTorch 2.3+; `init_process_group(device_id=...)`), so
/// that it never has to guess it from the rank.
template <class Group>
void bind_device(Group& group, const at::Device& device) {
  if constexpr (has_bound_device<Group>::value) group.setBoundDeviceId(device);
}

/// The TCP store's classic server. LibTorch 2.4+ asks for the libuv one by default, which builds
/// without libuv (Debian's) refuse outright; it pays off only for thousands of ranks.
template <class Options>
void disable_libuv(Options& options) {
  if constexpr (has_use_libuv<Options>::value) options.useLibUV = false;
}

/// Writing to a peer that has died raises SIGPIPE, whose default action kills the process before
/// Gloo can report the error (LibTorch 2.x's Gloo writes with writev, not send(MSG_NOSIGNAL)).
/// A program that chose its own disposition keeps it; only the default is turned into "ignore",
/// so the write fails with EPIPE and the collective throws an error naming the rank.
inline void ignore_default_sigpipe() {
  struct sigaction current {};
  if (sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) {
    std::signal(SIGPIPE, SIG_IGN);
  }
}
}  // namespace detail

/// Whether this build can use NCCL (a CUDA LibTorch built with it).
inline constexpr bool kHasNccl = SIMSIAM_HAS_NCCL != 0;

/// Where and how the processes of a run meet.
struct DistributedOptions {
  /// This process's rank in [0, world_size).
  TORCH_ARG(int64_t, rank) = 0;
  TORCH_ARG(int64_t, world_size) = 1;
  /// The rank within this machine (torchrun's LOCAL_RANK): the GPU index.
  TORCH_ARG(int64_t, local_rank) = 0;
  /// Rank 0's address and port (torchrun's MASTER_ADDR, MASTER_PORT).
  TORCH_ARG(std::string, master_addr) = "127.0.0.1";
  TORCH_ARG(int64_t, master_port) = 29500;
  /// A file all processes can reach; when set it replaces the TCP store.
  TORCH_ARG(std::string, file_store) = "";
  /// How long to wait for the other processes, when joining and in every collective.
  TORCH_ARG(std::chrono::milliseconds, timeout) = std::chrono::minutes(30);
  /// "gloo", "nccl", or "auto": NCCL when `device` is a GPU and this build has NCCL, else Gloo
  /// (for a GPU, with a warning on stderr, once per process).
  TORCH_ARG(std::string, backend) = "auto";
  /// Where the tensors of the collectives live (auto backend; NCCL's GPU is this device).
  TORCH_ARG(torch::Device, device) = torch::kCPU;

 public:
  /// The variables torchrun sets: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT.
  /// A missing WORLD_SIZE means a single process.
  static DistributedOptions from_env() {
    DistributedOptions options;
    options.world_size(read_int("WORLD_SIZE", 1));
    options.rank(read_int("RANK", 0));
    options.local_rank(read_int("LOCAL_RANK", options.rank()));
    if (const char* addr = std::getenv("MASTER_ADDR")) options.master_addr(addr);
    options.master_port(read_int("MASTER_PORT", 29500));
    options.check();
    return options;
  }

  /// Fails with a message naming the bad value.
  void check() const {
    constexpr const char* kWhere = "simsiam::distributed";
    TORCH_CHECK(world_size() > 0, kWhere, ": expected WORLD_SIZE > 0, got ", world_size());
    TORCH_CHECK(rank() >= 0 && rank() < world_size(), kWhere, ": expected 0 <= RANK < WORLD_SIZE (",
                world_size(), "), got ", rank());
    TORCH_CHECK(master_port() > 0 && master_port() < 65536, kWhere,
                ": expected MASTER_PORT in [1, 65535], got ", master_port());
    TORCH_CHECK(!master_addr().empty() || !file_store().empty(), kWhere,
                ": expected MASTER_ADDR or a file store");
    TORCH_CHECK(timeout().count() > 0, kWhere, ": expected a positive timeout");
    TORCH_CHECK(backend() == "auto" || backend() == "gloo" || backend() == "nccl", kWhere,
                ": expected backend 'auto', 'gloo' or 'nccl', got '", backend(), "'");
    TORCH_CHECK(backend() != "nccl" || kHasNccl, kWhere,
                ": backend 'nccl' needs a LibTorch built with NCCL (USE_C10D_NCCL); this build "
                "has Gloo only");
    TORCH_CHECK(backend() != "nccl" || device().is_cuda(), kWhere,
                ": backend 'nccl' needs a CUDA device, got ", device());
  }

  /// The backend `auto` resolves to.
  std::string resolved_backend() const {
    if (backend() != "auto") return backend();
    return kHasNccl && device().is_cuda() ? "nccl" : "gloo";
  }

 private:
  static int64_t read_int(const char* name, int64_t fallback) {
    const char* text = std::getenv(name);
    if (text == nullptr || *text == '\0') return fallback;
    char* end = nullptr;
    const long long value = std::strtoll(text, &end, 10);
    TORCH_CHECK(end != nullptr && *end == '\0', "simsiam::distributed: expected an integer in ",
                name, ", got '", text, "'");
    return value;
  }
};

/// The processes of one run, joined through a store into a Gloo or NCCL process group.
/// With NCCL, CPU tensors given to a collective travel through the GPU and back.
/// Joining sets SIGPIPE to "ignore" unless the program installed its own handler: a dead peer
/// then makes a collective throw, naming the rank, instead of killing this process silently.
class ProcessGroup final : public Communicator {
 public:
  explicit ProcessGroup(DistributedOptions options) : options_(std::move(options)) {
    detail::ignore_default_sigpipe();
    options_.check();
    backend_ = options_.resolved_backend();
    if (options_.backend() == "auto" && options_.device().is_cuda() && backend_ == "gloo") {
      warn_gloo_for_cuda();
    }
    const std::string where =
        options_.file_store().empty()
            ? options_.master_addr() + ":" + std::to_string(options_.master_port())
            : "file store '" + options_.file_store() + "'";
    try {
      if (options_.file_store().empty()) {
        c10d::TCPStoreOptions store_options;
        store_options.port = static_cast<uint16_t>(options_.master_port());
        store_options.isServer = options_.rank() == 0;
        store_options.numWorkers = static_cast<size_t>(options_.world_size());
        store_options.timeout = options_.timeout();
        detail::disable_libuv(store_options);
        store_ = c10::make_intrusive<c10d::TCPStore>(options_.master_addr(), store_options);
      } else {
        store_ = c10::make_intrusive<c10d::FileStore>(options_.file_store(),
                                                      static_cast<int>(options_.world_size()));
        store_->setTimeout(options_.timeout());
      }
      if (backend_ == "nccl") {
        create_nccl();
      } else {
        auto gloo = c10d::ProcessGroupGloo::Options::create();
        gloo->timeout = options_.timeout();
        gloo->devices.push_back(gloo_device());
        group_ = c10::make_intrusive<c10d::ProcessGroupGloo>(
            store_, static_cast<int>(options_.rank()), static_cast<int>(options_.world_size()),
            gloo);
      }
    } catch (const std::exception& e) {
      TORCH_CHECK(false, "simsiam::distributed: rank ", options_.rank(), " of ",
                  options_.world_size(), " could not join the ", backend_, " process group at ",
                  where, " within ", options_.timeout().count(),
                  " ms (a peer that died or never started?): ", first_line(e.what()));
    }
  }

  int64_t rank() const override { return options_.rank(); }
  int64_t world_size() const override { return options_.world_size(); }
  const DistributedOptions& options() const { return options_; }
  /// "gloo" or "nccl".
  const std::string& backend() const { return backend_; }

  /// Sums `tensors` in place over all ranks, as one flattened buffer per call when there are
  /// several (c10d reads a list as one tensor's copies on several devices).
  void all_reduce_sum(std::vector<torch::Tensor>& tensors) override {
    collective("all_reduce", tensors,
               [&](std::vector<torch::Tensor>& one) { group_->allreduce(one)->wait(); });
  }
  PendingWork all_reduce_sum_async(torch::Tensor tensor) override {
    TORCH_CHECK(tensor.defined() && tensor.is_contiguous() && tensor.device() == device_for(tensor),
                "simsiam::distributed: all_reduce_sum_async expects a contiguous tensor on ",
                backend_ == "nccl" ? "the GPU" : "any device", ", got ",
                simsiam::detail::shape_string(tensor));
    std::vector<torch::Tensor> one{std::move(tensor)};
    c10::intrusive_ptr<c10d::Work> work;
    run("all_reduce", [&] { work = group_->allreduce(one); });
    return PendingWork([this, work, one] { run("all_reduce", [&] { work->wait(); }); });
  }
  /// Rank `root`'s `tensors` copied to every rank, in place.
  void broadcast(std::vector<torch::Tensor>& tensors, int64_t root = 0) override {
    c10d::BroadcastOptions broadcast_options;
    broadcast_options.rootRank = root;
    collective("broadcast", tensors, [&](std::vector<torch::Tensor>& one) {
      group_->broadcast(one, broadcast_options)->wait();
    });
  }
  /// Waits until every rank reached this point. NCCL is told this rank's GPU: a barrier
  /// before any other collective would otherwise make it guess the device from the rank.
  void barrier() override {
    c10d::BarrierOptions barrier_options;
    if (backend_ == "nccl") barrier_options.device_ids = {nccl_device().index()};
    run("barrier", [&] { group_->barrier(barrier_options)->wait(); });
  }

  /// The underlying c10d backend, for collectives not wrapped here.
  const c10::intrusive_ptr<detail::C10dBackend>& c10d_group() const { return group_; }

 private:
  static std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

  /// Once per process, on stderr: `auto` fell back to Gloo for CUDA tensors because this build
  /// has no NCCL. It works (Gloo stages CUDA tensors through host memory) but is much slower, and
  /// a CUDA user would otherwise not know why.
  static void warn_gloo_for_cuda() {
    static std::once_flag once;
    std::call_once(once, [] {
      std::cerr << "simsiam::distributed: warning: backend 'auto' uses Gloo for CUDA tensors, "
                   "as this build has no NCCL (expected LibTorch with USE_C10D_NCCL and nccl.h "
                   "when compiling; see docs/install.md); collectives will be much slower than "
                   "with NCCL\n";
    });
  }

  /// This rank's GPU: the device's index, or the local rank.
  torch::Device nccl_device() const {
    return options_.device().has_index()
               ? options_.device()
               : torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(options_.local_rank()));
  }

  void create_nccl() {
#if SIMSIAM_HAS_NCCL
    const auto device = nccl_device();
    c10::cuda::set_device(device.index());
    auto nccl = c10d::ProcessGroupNCCL::Options::create();
    nccl->timeout = options_.timeout();
    auto group = c10::make_intrusive<c10d::ProcessGroupNCCL>(
        store_, static_cast<int>(options_.rank()), static_cast<int>(options_.world_size()), nccl);
    detail::bind_device(*group, device);
    group_ = group;
#else
    TORCH_CHECK(false, "simsiam::distributed: this build has no NCCL");
#endif
  }

  /// Where this rank's Gloo listens: the interface in GLOO_SOCKET_IFNAME when set (as in
  /// PyTorch); loopback when the run is on one machine (MASTER_ADDR 127.x or localhost); else
  /// the address this machine's hostname resolves to.
  std::shared_ptr<::gloo::transport::Device> gloo_device() const {
    if (const char* interface = std::getenv("GLOO_SOCKET_IFNAME"); interface && *interface) {
      return c10d::ProcessGroupGloo::createDeviceForInterface(interface);
    }
    const auto& addr = options_.master_addr();
    if (addr.rfind("127.", 0) == 0 || addr == "localhost") {
      return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
    }
    return c10d::ProcessGroupGloo::createDefaultDevice();
  }

  /// The device a collective's buffer must live on: the GPU for NCCL, the tensor's own for Gloo.
  torch::Device device_for(const torch::Tensor& t) const {
    return backend_ == "nccl" ? nccl_device() : t.device();
  }

  /// Runs `op` on each tensor alone, or on one flattened buffer of several, copied back.
  template <class Op>
  void collective(const char* what, std::vector<torch::Tensor>& tensors, Op&& op) {
    if (tensors.empty()) return;
    if (tensors.size() == 1 && tensors[0].is_contiguous() &&
        tensors[0].device() == device_for(tensors[0])) {
      run(what, [&] { op(tensors); });
      return;
    }
    for (const auto& t : tensors) {
      TORCH_CHECK(t.scalar_type() == tensors[0].scalar_type() && t.device() == tensors[0].device(),
                  "simsiam::distributed: ", what, " expects tensors of one dtype and device, got ",
                  tensors[0].scalar_type(), " on ", tensors[0].device(), " and ", t.scalar_type(),
                  " on ", t.device());
    }
    std::vector<torch::Tensor> flat{torch::cat([&] {
                                      std::vector<torch::Tensor> views;
                                      for (const auto& t : tensors)
                                        views.push_back(t.reshape({-1}));
                                      return views;
                                    }())
                                        .to(device_for(tensors[0]))};
    run(what, [&] { op(flat); });
    int64_t offset = 0;
    for (auto& t : tensors) {
      t.copy_(flat[0].slice(0, offset, offset + t.numel()).view_as(t));
      offset += t.numel();
    }
  }

  template <class Fn>
  void run(const char* what, Fn&& fn) const {
    try {
      fn();
    } catch (const std::exception& e) {
      TORCH_CHECK(false, "simsiam::distributed: ", what, " failed on rank ", options_.rank(),
                  " of ", options_.world_size(), " (a peer died or timed out after ",
                  options_.timeout().count(), " ms): ", first_line(e.what()));
    }
  }

  DistributedOptions options_;
  std::string backend_;
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<detail::C10dBackend> group_;
};

}  // namespace simsiam::distributed
