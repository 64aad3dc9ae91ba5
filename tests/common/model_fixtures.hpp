#pragma once
// Helpers shared by the tests that build small models on disk: a per-process temporary folder and the
// full-precision weights of a GGUF file.
#include <cstdint>
#include <filesystem>
#include <string>
#include <unistd.h>
#include <vector>

#include "qsafe/model/decoder.hpp"
#include "qsafe/model/model_loader.hpp"

namespace test_fixtures {

inline std::filesystem::path temp_dir(const std::string& name) {
    auto dir = std::filesystem::temp_directory_path() / ("qsafe_test_" + name + "_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    return dir;
}

/// Every linear layer as fp32 (qsafe's own quantized files keep their stored layers, as load_model does).
inline qsafe::LlamaWeights load_fp(const qsafe::gguf::File& file, qsafe::GgmlBlockLayers blocks = qsafe::GgmlBlockLayers::qsafe_files) {
    return qsafe::load_llama_weights(qsafe::config_from_gguf(file), qsafe::GgufTensorSource(file, blocks),
                                     qsafe::rtn_builder(qsafe::SchemeRules::parse("*=fp32")));
}

/// The logits at every position of one sequence, from a fresh cache.
inline qsafe::RowMatrixF all_logits(qsafe::LlamaModel& m, const std::vector<std::int32_t>& tokens) {
    qsafe::KvCache cache = m.new_cache();
    return m.forward_sequence(cache, tokens, true);
}

/// Sixteen tokens of the tiny test models' vocabulary (61), to compare logits before and after a change.
inline const std::vector<std::int32_t> probe = {3, 17, 60, 0, 42, 42, 9, 31, 5, 58, 1, 22, 47, 8, 8, 19};

}  // namespace test_fixtures
