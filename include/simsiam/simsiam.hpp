// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief Everything in the core target `SimSiam::simsiam` (LibTorch only).
///
/// Dataset readers need zlib and live in `simsiam/data/` (target `SimSiam::data`); include them
/// separately.
#pragma once

#include "simsiam/backbones/convnet.hpp"
#include "simsiam/backbones/resnet.hpp"
#include "simsiam/eval/collapse.hpp"
#include "simsiam/eval/features.hpp"
#include "simsiam/eval/knn.hpp"
#include "simsiam/eval/linear_probe.hpp"
#include "simsiam/files.hpp"
#include "simsiam/heads/predictor.hpp"
#include "simsiam/heads/projector.hpp"
#include "simsiam/loss/distance.hpp"
#include "simsiam/loss/symmetric_loss.hpp"
#include "simsiam/model/simsiam.hpp"
#include "simsiam/optim/cosine_schedule.hpp"
#include "simsiam/optim/lars.hpp"
#include "simsiam/optim/recipe.hpp"
#include "simsiam/train/amp.hpp"
#include "simsiam/train/checkpoint.hpp"
#include "simsiam/train/hook.hpp"
#include "simsiam/train/logging.hpp"
#include "simsiam/train/monitors.hpp"
#include "simsiam/train/trainer.hpp"
#include "simsiam/version.hpp"
