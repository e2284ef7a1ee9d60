// Precompiled header of the test suite: LibTorch and Catch2 are most of each file's compile time.
#pragma once
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>
