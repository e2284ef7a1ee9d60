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
#include "simsiam/loss/similarity.hpp"

namespace simsiam {

/// Which of the paper's loss forms to compute (Table 4 of the paper).
enum class LossForm {
  /// 1/2 D(p1, z2) + 1/2 D(p2, z1): the default, 68.1% on ImageNet.
  kSymmetric,
  /// D(p1, z2) only; `p2` and `z1` are ignored and may be undefined: 64.8%.
  kAsymmetric,
  /// The asymmetric loss on two independently augmented pairs, averaged: 67.3%. Pass p1/z2 from
  /// pair A (prediction of one view, target of the other) and p2/z1 from pair B. The arithmetic is
  /// the symmetric one; what differs is that the four tensors come from four views, which is the
  /// paper's point (symmetrisation helps beyond seeing more views).
  kAsymmetricX2,
};

/// Options of the SimSiam loss; the defaults are the official ones.
struct SymmetricLossOptions {
  /// Detach the targets z (paper Sec. 4.1), the library's only stop-gradient: `SimSiam` returns z
  /// as computed. `false` is the collapsing ablation: loss -> -1.
  TORCH_ARG(bool, stop_gradient) = true;
  /// Symmetric (default), asymmetric or asymmetric-x2 (paper Table 4).
  TORCH_ARG(LossForm, form) = LossForm::kSymmetric;
};

namespace detail {
/// D(p, stopgrad(z)) averaged over the batch, unchecked.
template <class Similarity>
torch::Tensor loss_term(const torch::Tensor& p, const torch::Tensor& z, bool stop_gradient,
                        const Similarity& similarity) {
  return similarity(p, stop_gradient ? z.detach() : z).mean();
}
}  // namespace detail

namespace functional {

/// D(p, stopgrad(z)) averaged over the batch: one term of the SimSiam loss.
template <class Similarity = NegativeCosine>
torch::Tensor asymmetric_loss(const torch::Tensor& p, const torch::Tensor& z,
                              bool stop_gradient = true, const Similarity& similarity = {}) {
  detail::check_pair("simsiam::asymmetric_loss", "p", p, "z", z);
  return detail::loss_term(p, z, stop_gradient, similarity);
}

/// The SimSiam loss of predictions p1, p2 and targets z1, z2, all [B, D] (views 1 and 2). This is
/// the one place where the stop-gradient of the paper (Sec. 4.1) is applied.
template <class Similarity = NegativeCosine>
torch::Tensor symmetric_loss(const torch::Tensor& p1, const torch::Tensor& p2,
                             const torch::Tensor& z1, const torch::Tensor& z2,
                             const SymmetricLossOptions& options = {},
                             const Similarity& similarity = {}) {
  constexpr const char* kWhere = "simsiam::symmetric_loss";
  detail::check_pair(kWhere, "p1", p1, "z2", z2);
  const bool stop = options.stop_gradient();
  if (options.form() == LossForm::kAsymmetric) {
    return detail::loss_term(p1, z2, stop, similarity);
  }
  detail::check_pair(kWhere, "p2", p2, "z1", z1);
  detail::check_pair(kWhere, "p1", p1, "p2", p2);
  return (detail::loss_term(p1, z2, stop, similarity) +
          detail::loss_term(p2, z1, stop, similarity)) *
         0.5;
}

}  // namespace functional

/// Module form of `functional::symmetric_loss`, with the similarity as a template parameter.
template <class Similarity = NegativeCosine>
class SymmetricLossImpl : public torch::nn::Cloneable<SymmetricLossImpl<Similarity>> {
 public:
  explicit SymmetricLossImpl(SymmetricLossOptions options = {}, Similarity similarity = {})
      : options(options), similarity(similarity) {}

  /// Nothing to (re)initialise: the loss has no parameters.
  void reset() override {}

  /// Loss of predictions p1, p2 against targets z1, z2 (p1 pairs with z2, p2 with z1).
  torch::Tensor forward(const torch::Tensor& p1, const torch::Tensor& p2, const torch::Tensor& z1,
                        const torch::Tensor& z2) {
    return functional::symmetric_loss(p1, p2, z1, z2, options, similarity);
  }

  void pretty_print(std::ostream& stream) const override {
    static const char* const kForms[] = {"symmetric", "asymmetric", "asymmetric_x2"};
    stream << "simsiam::SymmetricLoss(stop_gradient="
           << (options.stop_gradient() ? "true" : "false")
           << ", form=" << kForms[static_cast<int>(options.form())] << ")";
  }

  /// The options the loss was built with.
  SymmetricLossOptions options;
  /// The per-sample distance D(p, z).
  Similarity similarity;
};

/// Holder for `SymmetricLossImpl` (a templated module cannot use `TORCH_MODULE`).
template <class Similarity = NegativeCosine>
class SymmetricLoss : public torch::nn::ModuleHolder<SymmetricLossImpl<Similarity>> {
 public:
  using torch::nn::ModuleHolder<SymmetricLossImpl<Similarity>>::ModuleHolder;
  using Impl = SymmetricLossImpl<Similarity>;
};

}  // namespace simsiam
