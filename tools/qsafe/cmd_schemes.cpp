// qsafe schemes: the registered quantization schemes with their bits per weight.
#include <cstdio>

#include "qsafe/commands.hpp"
#include "qsafe/registry/scheme_registry.hpp"

namespace qsafe_cli {

void add_schemes_command(CLI::App& app) {
    auto* cmd = app.add_subcommand("schemes", "List the registered quantization schemes and their bits per weight");
    cmd->callback([] {
        std::printf("%-28s %10s  %s\n", "scheme", "bits/wt", "policies");
        for (const auto& s : qsafe::list_schemes())
            std::printf("%-28s %10.4f  %s\n", s.name.c_str(), s.bits_per_weight, s.description.c_str());
        std::printf("\nbits per weight of a 4096x4096 matrix, every stored byte counted; outlier amounts are\n"
                    "set in the name: '+ocol<K>' (K fp16 input columns), '+sparse<P>%%' (P %% of weights in fp16).\n");
    });
}

}  // namespace qsafe_cli
