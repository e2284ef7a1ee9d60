// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief The header of 0.1 for the loss's D(p, z) policies, now `simsiam/loss/distance.hpp`.
#pragma once

#include "simsiam/loss/distance.hpp"
