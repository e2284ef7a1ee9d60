// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief The SimSiam loss: L = 1/2 D(p1, stopgrad(z2)) + 1/2 D(p2, stopgrad(z1)) (paper Eq. 2-3).
///
/// The default reproduces the official `main_simsiam.py` exactly:
/// `-(cos(p1, z2).mean() + cos(p2, z1).mean()) * 0.5` with `CosineSimilarity(dim=1, eps=1e-8)`.
/// Options switch to the paper's ablations (Sec. 4.1 stop-gradient, Sec. 4.6 symmetrisation).
#pragma once

#include <torch/torch.h>

#include <ostream>

#include "simsiam/detail/check.hpp"
#include "simsiam/loss/distance.hpp"

namespace simsiam {

/// Which of the paper's loss forms to compute (Table 5 of the paper). The third form of that
/// table, "asymmetric 2x", is the asymmetric loss of two independent pairs of views:
/// `functional::asymmetric_x2_loss`.
enum class LossForm {
  /// 1/2 D(p1, z2) + 1/2 D(p2, z1): the default, 68.1% on ImageNet.
  kSymmetric,
  /// D(p1, z2) only; `p2` and `z1` are ignored and may be undefined: 64.8%.
  kAsymmetric,
  /// 0.1's name for what was always the symmetric arithmetic; asymmetric 2x needs four views.
  kAsymmetricX2 [[deprecated("the symmetric arithmetic under another name: use kSymmetric, or "
                             "functional::asymmetric_x2_loss on two pairs of views")]] = kSymmetric,
};

/// Options of the SimSiam loss; the defaults are the official ones.
struct SymmetricLossOptions {
  /// Detach the targets z (paper Sec. 4.1), the library's only stop-gradient: `SimSiam` returns z
  /// as computed. `false` is the collapsing ablation: loss -> -1.
  TORCH_ARG(bool, stop_gradient) = true;
  /// Symmetric (default) or asymmetric (paper Table 5).
  TORCH_ARG(LossForm, form) = LossForm::kSymmetric;
};

namespace detail {
/// D(p, stopgrad(z)) averaged over the batch, unchecked.
template <class Distance>
torch::Tensor loss_term(const torch::Tensor& p, const torch::Tensor& z, bool stop_gradient,
                        const Distance& distance) {
  return distance(p, stop_gradient ? z.detach() : z).mean();
}
}  // namespace detail

namespace functional {

/// D(p, stopgrad(z)) averaged over the batch: one term of the SimSiam loss.
template <class Distance = NegativeCosine>
torch::Tensor asymmetric_loss(const torch::Tensor& p, const torch::Tensor& z,
                              bool stop_gradient = true, const Distance& distance = {}) {
  detail::check_pair("simsiam::asymmetric_loss", "p", p, "z", z);
  return detail::loss_term(p, z, stop_gradient, distance);
}

/// The paper's "asymmetric 2x" (Table 5, 67.3%): the asymmetric loss of two independently
/// augmented pairs of the same images, averaged, 1/2 D(p_a, z_a) + 1/2 D(p_b, z_b), where p_a
/// is the prediction of one view of pair A and z_a the target of the other view of pair A (so
/// four views in all). It sees as many views per step as the symmetric loss, without its
/// symmetry: the paper's control for "symmetrisation only helps by seeing more views".
template <class Distance = NegativeCosine>
torch::Tensor asymmetric_x2_loss(const torch::Tensor& p_a, const torch::Tensor& z_a,
                                 const torch::Tensor& p_b, const torch::Tensor& z_b,
                                 bool stop_gradient = true, const Distance& distance = {}) {
  constexpr const char* kWhere = "simsiam::asymmetric_x2_loss";
  detail::check_pair(kWhere, "p_a", p_a, "z_a", z_a);
  detail::check_pair(kWhere, "p_b", p_b, "z_b", z_b);
  detail::check_pair(kWhere, "p_a", p_a, "p_b", p_b);
  return (detail::loss_term(p_a, z_a, stop_gradient, distance) +
          detail::loss_term(p_b, z_b, stop_gradient, distance)) *
         0.5;
}

/// The SimSiam loss of predictions p1, p2 and targets z1, z2, all [B, D] (views 1 and 2). This is
/// the one place where the stop-gradient of the paper (Sec. 4.1) is applied.
template <class Distance = NegativeCosine>
torch::Tensor symmetric_loss(const torch::Tensor& p1, const torch::Tensor& p2,
                             const torch::Tensor& z1, const torch::Tensor& z2,
                             const SymmetricLossOptions& options = {},
                             const Distance& distance = {}) {
  constexpr const char* kWhere = "simsiam::symmetric_loss";
  detail::check_pair(kWhere, "p1", p1, "z2", z2);
  const bool stop = options.stop_gradient();
  if (options.form() == LossForm::kAsymmetric) {
    return detail::loss_term(p1, z2, stop, distance);
  }
  detail::check_pair(kWhere, "p2", p2, "z1", z1);
  detail::check_pair(kWhere, "p1", p1, "p2", p2);
  return (detail::loss_term(p1, z2, stop, distance) + detail::loss_term(p2, z1, stop, distance)) *
         0.5;
}

}  // namespace functional

/// Module form of `functional::symmetric_loss`, with the distance D as a template parameter.
template <class Distance = NegativeCosine>
class SymmetricLossImpl : public torch::nn::Cloneable<SymmetricLossImpl<Distance>> {
 public:
  explicit SymmetricLossImpl(SymmetricLossOptions options = {}, Distance distance = {})
      : options(options), distance(distance) {}

  /// Nothing to (re)initialise: the loss has no parameters.
  void reset() override {}

  /// Loss of predictions p1, p2 against targets z1, z2 (p1 pairs with z2, p2 with z1).
  torch::Tensor forward(const torch::Tensor& p1, const torch::Tensor& p2, const torch::Tensor& z1,
                        const torch::Tensor& z2) {
    return functional::symmetric_loss(p1, p2, z1, z2, options, distance);
  }

  void pretty_print(std::ostream& stream) const override {
    stream << "simsiam::SymmetricLoss(stop_gradient="
           << (options.stop_gradient() ? "true" : "false")
           << ", form=" << (options.form() == LossForm::kAsymmetric ? "asymmetric" : "symmetric")
           << ")";
  }

  /// The options the loss was built with.
  SymmetricLossOptions options;
  /// The per-sample distance D(p, z).
  Distance distance;
};

/// Holder for `SymmetricLossImpl` (a templated module cannot use `TORCH_MODULE`).
template <class Distance = NegativeCosine>
class SymmetricLoss : public torch::nn::ModuleHolder<SymmetricLossImpl<Distance>> {
 public:
  using torch::nn::ModuleHolder<SymmetricLossImpl<Distance>>::ModuleHolder;
  using Impl = SymmetricLossImpl<Distance>;
};

}  // namespace simsiam
