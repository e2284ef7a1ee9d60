// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief Weighted k-nearest-neighbour classification of l2-normalised features.
///
/// The monitor of InstDisc (Wu et al. 2018) that the community runs with SimSiam: cosine
/// similarity to a labelled feature bank, the k most similar vote with weight exp(sim / t).
#pragma once

#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "simsiam/detail/check.hpp"
#include "simsiam/distributed/communicator.hpp"

namespace simsiam {

/// Options of the weighted kNN classifier.
struct KnnOptions {
  /// Neighbours that vote (200 in the CIFAR demos and the paper's kNN monitor).
  TORCH_ARG(int64_t, k) = 200;
  /// Temperature t of the vote weight exp(sim / t): 0.1 (CIFAR demos) or 0.2 (paper).
  TORCH_ARG(double, temperature) = 0.1;
  /// Queries scored at once.
  TORCH_ARG(int64_t, batch_size) = 1024;
  /// Bank rows compared at once: beyond the bank, memory stays at batch_size x bank_batch_size
  /// similarities (1024 x 65536 floats = 256 MiB), plus a float32 copy of one chunk when the
  /// bank is in half precision.
  TORCH_ARG(int64_t, bank_batch_size) = 65536;
};

namespace detail {

inline void check_knn_inputs(const torch::Tensor& queries, const torch::Tensor& bank,
                             const torch::Tensor& bank_labels, int64_t num_classes,
                             const KnnOptions& options) {
  constexpr const char* kWhere = "simsiam::knn_scores";
  TORCH_CHECK(queries.defined() && bank.defined() && queries.dim() == 2 && bank.dim() == 2 &&
                  queries.size(1) == bank.size(1),
              kWhere, ": expected queries [Q, D] and bank [N, D] with one D, got queries ",
              shape_string(queries), " and bank ", shape_string(bank));
  TORCH_CHECK(bank.size(0) > 0, kWhere, ": expected a non-empty bank, got ", shape_string(bank));
  TORCH_CHECK(bank.is_floating_point() && queries.is_floating_point(), kWhere,
              ": expected floating-point features, got queries ", queries.scalar_type(),
              " and bank ", bank.scalar_type());
  TORCH_CHECK(
      bank_labels.defined() && !bank_labels.is_floating_point() && !bank_labels.is_complex(),
      kWhere, ": expected integer bank_labels (class indices), got ",
      bank_labels.defined() ? c10::toString(bank_labels.scalar_type()) : "undefined");
  TORCH_CHECK(bank_labels.dim() == 1 && bank_labels.size(0) == bank.size(0), kWhere,
              ": expected bank_labels [", bank.size(0), "], got ", shape_string(bank_labels));
  TORCH_CHECK(num_classes > 0, kWhere, ": expected num_classes > 0, got ", num_classes);
  TORCH_CHECK(
      options.k() > 0 && options.temperature() > 0 && options.batch_size() > 0 &&
          options.bank_batch_size() > 0,
      kWhere, ": expected k > 0, temperature > 0, batch_size > 0 and bank_batch_size > 0, got k=",
      options.k(), ", temperature=", options.temperature(), ", batch_size=", options.batch_size(),
      ", bank_batch_size=", options.bank_batch_size());
  const int64_t low = bank_labels.min().item<int64_t>();
  const int64_t high = bank_labels.max().item<int64_t>();
  TORCH_CHECK(low >= 0 && high < num_classes, kWhere, ": expected bank_labels in [0, ", num_classes,
              "), got values in [", low, ", ", high, "]");
}

/// The k most similar bank rows of each query, query batch by query batch:
/// `visit(start, end, similarity [b, k'], labels [b, k'])` with k' = min(k, bank rows).
template <class Visit>
void knn_neighbours(const torch::Tensor& queries, const torch::Tensor& bank,
                    const torch::Tensor& bank_labels, const KnnOptions& options, Visit&& visit) {
  namespace F = torch::nn::functional;
  const auto normalize = F::NormalizeFuncOptions().dim(1);
  const auto dtype = torch::promote_types(bank.scalar_type(), torch::kFloat);
  const auto feature_options = bank.options().dtype(dtype);
  const auto labels = bank_labels.to(bank.device(), torch::kLong);
  const int64_t n = bank.size(0);
  const int64_t k = std::min(options.k(), n);
  // 1 / max(||b||, eps) once, as F::normalize divides: similarities are (q . b) / ||b|| without a
  // normalised copy of the bank.
  std::vector<torch::Tensor> norms;  // per chunk: no float32 copy of a half-precision bank
  for (int64_t start = 0; start < n; start += options.bank_batch_size()) {
    norms.push_back(bank.slice(0, start, std::min(n, start + options.bank_batch_size()))
                        .to(feature_options)
                        .norm(2, /*dim=*/1));
  }
  const auto bank_inv_norm = torch::cat(norms).clamp_min(1e-12).reciprocal();
  for (int64_t start = 0; start < queries.size(0); start += options.batch_size()) {
    const int64_t end = std::min(start + options.batch_size(), queries.size(0));
    const auto query = F::normalize(queries.slice(0, start, end).to(feature_options), normalize);
    // The k most similar bank rows, merged chunk by chunk: top-k of (best so far, chunk's top-k).
    torch::Tensor best_similarity, best_index;
    for (int64_t bank_start = 0; bank_start < n; bank_start += options.bank_batch_size()) {
      const int64_t bank_end = std::min(n, bank_start + options.bank_batch_size());
      const auto chunk = bank.slice(0, bank_start, bank_end).to(feature_options);
      const auto similarity_all =
          query.matmul(chunk.t()).mul_(bank_inv_norm.slice(0, bank_start, bank_end));
      auto [similarity, index] = similarity_all.topk(std::min(k, bank_end - bank_start), /*dim=*/1);
      index.add_(bank_start);
      if (best_similarity.defined()) {
        const auto all_similarity = torch::cat({best_similarity, similarity}, 1);
        const auto all_index = torch::cat({best_index, index}, 1);
        auto [top, position] = all_similarity.topk(std::min(k, all_similarity.size(1)), 1);
        best_similarity = top;
        best_index = all_index.gather(1, position);
      } else {
        best_similarity = similarity;
        best_index = index;
      }
    }
    visit(start, end, best_similarity,
          labels.index_select(0, best_index.flatten()).view_as(best_index));
  }
}

}  // namespace detail

/// Class scores [Q, num_classes] of each query: the sum of exp(sim / t) over its k nearest
/// bank entries of that class. Features are l2-normalised here; `k` is capped at the bank size.
/// Scores are in the bank's dtype, but at least float32: with half-precision features a single
/// class's sum of exp(1 / 0.1) = 22026 weights would overflow float16's 65504 after three votes.
inline torch::Tensor knn_scores(const torch::Tensor& queries, const torch::Tensor& bank,
                                const torch::Tensor& bank_labels, int64_t num_classes,
                                const KnnOptions& options = {}) {
  detail::check_knn_inputs(queries, bank, bank_labels, num_classes, options);
  torch::NoGradGuard no_grad;
  const auto dtype = torch::promote_types(bank.scalar_type(), torch::kFloat);
  auto scores = torch::zeros({queries.size(0), num_classes}, bank.options().dtype(dtype));
  detail::knn_neighbours(queries, bank, bank_labels, options,
                         [&](int64_t start, int64_t end, const torch::Tensor& similarity,
                             const torch::Tensor& labels) {
                           scores.slice(0, start, end)
                               .scatter_add_(1, labels, (similarity / options.temperature()).exp());
                         });
  return scores;
}

/// Top-1 accuracy in [0, 1] of the weighted kNN classifier on labelled queries.
inline double knn_accuracy(const torch::Tensor& queries, const torch::Tensor& query_labels,
                           const torch::Tensor& bank, const torch::Tensor& bank_labels,
                           int64_t num_classes, const KnnOptions& options = {}) {
  TORCH_CHECK(queries.defined() && queries.dim() == 2 && queries.size(0) > 0,
              "simsiam::knn_accuracy: expected queries [Q, D] with Q > 0, got ",
              detail::shape_string(queries));
  TORCH_CHECK(
      query_labels.defined() && query_labels.dim() == 1 && query_labels.size(0) == queries.size(0),
      "simsiam::knn_accuracy: expected query_labels [", queries.size(0), "], got ",
      detail::shape_string(query_labels));
  const auto predicted = knn_scores(queries, bank, bank_labels, num_classes, options).argmax(1);
  return predicted.eq(query_labels.to(predicted.device()).to(torch::kLong))
      .to(torch::kDouble)
      .mean()
      .item<double>();
}

/// Top-1 accuracy in [0, 1] of the weighted kNN classifier when each rank holds a shard of
/// the queries and of the bank: the queries are gathered, each rank finds their k nearest rows
/// in its own bank shard, and the candidates of all ranks are merged, so the result is that of
/// `knn_accuracy` on the whole bank (up to ties) while no rank holds the whole bank. Every rank
/// gets the same value. A shard may be empty on some ranks.
inline double knn_accuracy(distributed::Communicator* communicator, const torch::Tensor& queries,
                           const torch::Tensor& query_labels, const torch::Tensor& bank,
                           const torch::Tensor& bank_labels, int64_t num_classes,
                           const KnnOptions& options = {}) {
  if (distributed::world_size(communicator) == 1) {
    return knn_accuracy(queries, query_labels, bank, bank_labels, num_classes, options);
  }
  constexpr const char* kWhere = "simsiam::knn_accuracy (distributed)";
  TORCH_CHECK(queries.defined() && bank.defined() && queries.dim() == 2 && bank.dim() == 2 &&
                  queries.size(1) == bank.size(1),
              kWhere, ": expected queries [Q, D] and bank [N, D] with one D, got queries ",
              detail::shape_string(queries), " and bank ", detail::shape_string(bank));
  TORCH_CHECK(query_labels.defined() && query_labels.dim() == 1 &&
                  query_labels.size(0) == queries.size(0) && bank_labels.defined() &&
                  bank_labels.dim() == 1 && bank_labels.size(0) == bank.size(0),
              kWhere, ": expected one label per query and per bank row, got query_labels ",
              detail::shape_string(query_labels), " and bank_labels ",
              detail::shape_string(bank_labels));
  torch::NoGradGuard no_grad;
  const auto dtype = torch::promote_types(bank.scalar_type(), torch::kFloat);
  const auto all_queries = distributed::gather_rows(communicator, queries.to(dtype));
  const auto all_labels =
      distributed::gather_rows(communicator, query_labels.to(queries.device(), torch::kLong));
  const int64_t q = all_queries.size(0);
  TORCH_CHECK(q > 0, kWhere, ": expected at least one query over all ranks");
  // This rank's k candidates per query; -inf (weight 0) where its shard has fewer than k rows.
  auto similarity = torch::full({q, options.k()}, -std::numeric_limits<double>::infinity(),
                                bank.options().dtype(dtype));
  auto labels = torch::zeros({q, options.k()}, bank.options().dtype(torch::kLong));
  if (bank.size(0) > 0) {
    detail::check_knn_inputs(all_queries, bank, bank_labels, num_classes, options);
    detail::knn_neighbours(
        all_queries, bank, bank_labels, options,
        [&](int64_t start, int64_t end, const torch::Tensor& s, const torch::Tensor& l) {
          similarity.slice(0, start, end).slice(1, 0, s.size(1)).copy_(s);
          labels.slice(0, start, end).slice(1, 0, l.size(1)).copy_(l);
        });
  }
  const int64_t world = communicator->world_size();
  // [W * Q, k] in rank order -> [Q, W * k] -> the k best of all ranks.
  const auto all_similarity =
      distributed::gather_rows(communicator, similarity).view({world, q, options.k()});
  const auto all_candidates =
      distributed::gather_rows(communicator, labels).view({world, q, options.k()});
  const auto merged_similarity = all_similarity.permute({1, 0, 2}).reshape({q, -1});
  const auto merged_labels = all_candidates.permute({1, 0, 2}).reshape({q, -1});
  auto [top, position] = merged_similarity.topk(options.k(), 1);
  auto scores = torch::zeros({q, num_classes}, top.options());
  scores.scatter_add_(1, merged_labels.gather(1, position), (top / options.temperature()).exp());
  return scores.argmax(1)
      .eq(all_labels.to(scores.device()))
      .to(torch::kDouble)
      .mean()
      .item<double>();
}

}  // namespace simsiam
