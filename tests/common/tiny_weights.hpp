#pragma once
// A tiny random Llama (model/tiny_llama.hpp) written as GGUF and loaded back under scheme rules: the model
// most training and safety tests start from.
#include <cstdint>
#include <string>

#include "common/model_fixtures.hpp"
#include "model/tiny_llama.hpp"
#include "qsafe/model/weights.hpp"

namespace test_fixtures {

/// Weights of tiny::TinyLlama(seed, tied), written under temp_dir(tag) and loaded with RTN under `rules`.
inline qsafe::LlamaWeights tiny_weights(const std::string& tag, std::uint64_t seed, bool tied = false, const std::string& rules = "*=fp32") {
    const tiny::TinyLlama t(seed, tied);
    const auto path = temp_dir(tag) / ("tiny_" + std::to_string(seed) + (tied ? "_tied" : "") + ".gguf");
    t.write_gguf(path);
    const qsafe::gguf::File file = qsafe::gguf::File::open(path);
    return qsafe::load_llama_weights(qsafe::config_from_gguf(file), qsafe::GgufTensorSource(file), qsafe::rtn_builder(qsafe::SchemeRules::parse(rules)));
}

}  // namespace test_fixtures
