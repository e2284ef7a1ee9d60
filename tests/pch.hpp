// SPDX-License-Identifier: BSD-3-Clause
// Precompiled header of the test suite: LibTorch and Catch2 are most of each file's compile time.
#pragma once
#include <torch/torch.h>
#include <nlohmann/json.hpp>
#include "support/catch.hpp"
