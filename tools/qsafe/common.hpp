#pragma once
// Options and helpers shared by the subcommands: which model, which scheme rules, how many threads.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <CLI/CLI.hpp>

#include "qsafe/core/parallel.hpp"
#include "qsafe/model/model_loader.hpp"

namespace qsafe_cli {

struct ModelOptions {
    std::string model = "smollm2";  // "smollm2" = the default model (fetched on demand), or a GGUF file / HF folder
    std::string rules = "*=fp32";
    std::string chat_template;
    int threads = 0;
    std::string activations = "fp32";

    void add_to(CLI::App& cmd) {
        cmd.add_option("-m,--model", model, "GGUF file, Hugging Face folder, or 'smollm2' (default model)")->capture_default_str();
        cmd.add_option("-r,--rules", rules, "per-tensor schemes, e.g. '*=int4-g128-asym,output=int8-pc-sym'")->capture_default_str();
        cmd.add_option("--chat-template", chat_template, "chat format override: chatml, llama2, mistral, llama3");
        cmd.add_option("-t,--threads", threads, "threads (default: OMP_NUM_THREADS or all cores)");
        cmd.add_option("--activations", activations,
                       "activations of quantized products: fp32 (exact) or int8 (per-32 blocks, as llama.cpp; faster)")
            ->check(CLI::IsMember({"fp32", "int8", "auto"}))
            ->capture_default_str();
    }
};

/// Runs scripts/fetch_model.sh and returns the cached model path.
std::filesystem::path fetch_default_model();

/// Resolves "smollm2" to the cached default model (fetching it if needed); other values are paths.
std::filesystem::path resolve_model_path(const std::string& model);

/// Applies the thread setting and loads the model with RTN under the rules.
qsafe::LoadedModel load_with_rules(const ModelOptions& opt);

}  // namespace qsafe_cli
