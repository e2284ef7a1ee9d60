// Precompiled header of the test suite: LibTorch and Catch2 are most of each file's compile time.
#pragma once
#include <torch/torch.h>
#include "support/catch.hpp"
#include <nlohmann/json.hpp>
