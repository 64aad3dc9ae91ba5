#pragma once
// A model variant named on the command line or in an experiment: the full-precision model, a quantized model
// file, or a scheme + method applied on the fly to the full-precision weights.
//   "fp"                          the reference model itself (every linear layer fp32)
//   "int4-g128-asym:gptq"         transformer blocks under the scheme, by the method; the output layer
//                                 (the tied embedding in SmolLM2, a fifth of the weights) at int8-g32-sym,
//                                 as llama.cpp's mixes keep the output layer at 6-8 bits
//   "rules=*=int3-g128-asym,output=int4-g128-asym:awq"
//                                 explicit per-tensor rules
//   "path/to/model.gguf" or "name=path/to/model.gguf"
//                                 a quantized model file (or any GGUF), loaded as stored
// Method names: rtn, imatrix, gptq, awq, quik, hqq (ptq/quantize_model.hpp); omitted = rtn. parse_variant()
// checks the method, the rules and every scheme they name against the registry (files are checked by
// whoever opens them).
#include <filesystem>
#include <string>
#include <string_view>

#include "qsafe/core/error.hpp"
#include "qsafe/ptq/quantize_model.hpp"

namespace qsafe {

struct VariantSpec {
    std::string name;              // label in reports
    std::string rules = "*=fp32";  // on-the-fly variants
    PtqMethod method = PtqMethod::rtn;
    std::filesystem::path file;    // file variants
    bool is_reference() const { return file.empty() && rules == "*=fp32"; }
};

inline constexpr std::string_view default_output_scheme = "int8-g32-sym";

inline VariantSpec parse_variant(std::string_view text) {
    VariantSpec v;
    v.name = std::string(text);
    if (text.empty()) throw config_error("empty variant name");
    if (text == "fp" || text == "fp32") {
        v.name = "fp";
        return v;
    }
    if (text.ends_with(".gguf")) {
        const auto eq = text.find('=');
        if (eq != std::string_view::npos && !text.starts_with("rules=")) {
            v.name = std::string(text.substr(0, eq));
            v.file = std::string(text.substr(eq + 1));
        } else {
            v.file = std::string(text);
            v.name = v.file.stem().string();
        }
        return v;
    }
    std::string_view spec = text;
    const auto colon = spec.rfind(':');
    if (colon != std::string_view::npos) {
        v.method = parse_ptq_method(spec.substr(colon + 1));
        spec = spec.substr(0, colon);
    }
    if (spec.starts_with("rules=")) {
        v.rules = std::string(spec.substr(6));
    } else {
        if (spec.find_first_of("=,*") != std::string_view::npos)
            throw config_error("variant '" + std::string(text) + "': give a scheme name, or explicit rules as 'rules=...'");
        v.rules = "*=" + std::string(spec) + ",output=" + std::string(default_output_scheme);
    }
    // Validate now, not after an hour of evaluation: the rules' syntax and every scheme they name.
    try {
        const SchemeRules rules = SchemeRules::parse(v.rules);
        for (const auto& rule : rules.rules()) (void)resolve_scheme(rule.scheme);
    } catch (const config_error& e) {
        throw config_error("variant '" + v.name + "': " + e.what());
    }
    return v;
}

}  // namespace qsafe
