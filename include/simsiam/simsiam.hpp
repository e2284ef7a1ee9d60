/// @file
/// @brief Everything in the core target `SimSiam::simsiam` (LibTorch only).
///
/// Dataset readers need zlib and live in `simsiam/data/` (target `SimSiam::data`); include them
/// separately.
#pragma once

#include "simsiam/backbones/convnet.hpp"
#include "simsiam/backbones/resnet.hpp"
#include "simsiam/eval/collapse.hpp"
#include "simsiam/eval/knn.hpp"
#include "simsiam/heads/predictor.hpp"
#include "simsiam/heads/projector.hpp"
#include "simsiam/loss/similarity.hpp"
#include "simsiam/loss/symmetric_loss.hpp"
#include "simsiam/model/simsiam.hpp"
#include "simsiam/version.hpp"
