// qsafe info: a model's metadata, tensors, types and size.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <map>

#include "isa_kernels.hpp"
#include "qsafe/commands.hpp"
#include "qsafe/common.hpp"
#include "qsafe/io/gguf.hpp"
#include "qsafe/io/safetensors.hpp"
#include "qsafe/registry/builtin_scheme_list.hpp"

namespace qsafe_cli {

namespace {
std::string dims_string(const std::vector<std::uint64_t>& dims) {
    std::string s = "[";
    for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
    return s + "]";
}

void print_gguf(const std::filesystem::path& path, bool tensors) {
    const auto file = qsafe::gguf::File::open(path);
    std::printf("file        %s\nformat      GGUF v%u, alignment %u, %zu metadata keys, %zu tensors, %.1f MiB\n",
                path.string().c_str(), file.version(), file.alignment(), file.metadata().size(), file.tensors().size(),
                static_cast<double>(file.file_size()) / (1024.0 * 1024.0));
    std::printf("\nmetadata:\n");
    for (const auto& e : file.metadata()) {
        std::string v = e.value.to_string(6);
        if (v.size() > 160) v = v.substr(0, 157) + "...";
        for (auto& ch : v)
            if (ch == '\n') ch = ' ';
        std::printf("  %-44s %s\n", e.key.c_str(), v.c_str());
    }
    std::map<std::string, std::pair<std::size_t, std::uint64_t>> by_type;
    std::uint64_t params = 0, bytes = 0;
    for (const auto& t : file.tensors()) {
        auto& [count, b] = by_type[std::string(qsafe::ggml_type_name(t.type))];
        ++count;
        b += t.n_bytes();
        params += t.n_elements();
        bytes += t.n_bytes();
    }
    std::printf("\ntensor types:\n");
    for (const auto& [type, cb] : by_type)
        std::printf("  %-8s %4zu tensors  %9.2f MiB\n", type.c_str(), cb.first, static_cast<double>(cb.second) / (1024.0 * 1024.0));
    std::printf("  total    %4zu tensors  %9.2f MiB, %.1f M parameters, %.3f bits/parameter\n", file.tensors().size(),
                static_cast<double>(bytes) / (1024.0 * 1024.0), static_cast<double>(params) / 1e6,
                8.0 * static_cast<double>(bytes) / static_cast<double>(params));
    if (tensors) {
        std::printf("\ntensors:\n");
        for (const auto& t : file.tensors())
            std::printf("  %-36s %-6s %-16s %10llu bytes\n", t.name.c_str(), std::string(qsafe::ggml_type_name(t.type)).c_str(),
                        dims_string(t.dims).c_str(), static_cast<unsigned long long>(t.n_bytes()));
    }
}

void print_safetensors(const std::filesystem::path& path, bool tensors) {
    const auto ckpt = qsafe::safetensors::Checkpoint::open(path);
    const auto names = ckpt.tensor_names();
    std::uint64_t params = 0, bytes = 0;
    for (const auto& n : names) {
        params += ckpt.tensor(n).n_elements();
        bytes += ckpt.tensor(n).n_bytes();
    }
    std::printf("folder      %s\nformat      safetensors, %zu tensors, %.1f M parameters, %.1f MiB\n", path.string().c_str(),
                names.size(), static_cast<double>(params) / 1e6, static_cast<double>(bytes) / (1024.0 * 1024.0));
    if (tensors)
        for (const auto& n : names)
            std::printf("  %-56s %-5s %s\n", n.c_str(), std::string(qsafe::safetensors::dtype_name(ckpt.tensor(n).dtype)).c_str(),
                        dims_string(ckpt.tensor(n).shape).c_str());
}
// What the CPU has, which instruction-set level the products run at, and which kernel each scheme uses.
void print_cpu() {
    const qsafe::CpuFeatures& cpu = qsafe::cpu_features();
    const qsafe::IsaLevel best = qsafe::best_isa(cpu), active = qsafe::active_isa();
    const char* forced = std::getenv("QSAFE_ISA");
    std::printf("cpu         %s (%s)\nfeatures    %s\n", cpu.brand.c_str(), cpu.vendor.c_str(), qsafe::feature_list(cpu).c_str());
    std::printf("isa         best %s, active %s%s\nunits      ", qsafe::isa_name(best), qsafe::isa_name(active),
                forced && *forced ? (std::string(" (QSAFE_ISA=") + forced + ")").c_str() : "");
    const auto& registry = qsafe::isa_kernel_registry();
    for (qsafe::IsaLevel level : qsafe::all_isa_levels) {
        if (const qsafe::IsaKernelSet* set = registry.set(level))
            std::printf(" %s (xsimd %s%s)", qsafe::isa_name(level), set->xsimd_arch, level > best ? ", not runnable here" : "");
    }
    std::printf("\nfp32        %s\n", qsafe::fp32_blas::backend_description().c_str());
    std::printf("%-26s %-11s %-18s %-18s %s\n", "scheme", "unit", "batch 1 (auto)", "batch 1 (fp32)", "batch 64 (auto)");
    qsafe::for_each_builtin_scheme([&]<class S>(const char* name) {
        const qsafe::SchemeKernel* k = qsafe::dispatched_kernel<S>(active);
        if (!k) {
            std::printf("%-26s %-11s (the program's own kernels)\n", name, "-");
            return;
        }
        qsafe::IsaLevel unit = active;
        while (registry.exact(qsafe::scheme_type_key<S>(), unit) != k) unit = static_cast<qsafe::IsaLevel>(static_cast<int>(unit) - 1);
        using AP = qsafe::ActivationPrecision;
        std::printf("%-26s %-11s %-18s %-18s %s\n", name, qsafe::isa_name(unit),
                    qsafe::kernels::kernel_path_name(k->path(qsafe::MatmulOptions{AP::automatic}, 1)),
                    qsafe::kernels::kernel_path_name(k->path(qsafe::MatmulOptions{AP::fp32}, 1)),
                    qsafe::kernels::kernel_path_name(k->path(qsafe::MatmulOptions{AP::automatic}, 64)));
    });
    const auto [vq, vq_level] = registry.best_vq(active);
    std::printf("%-26s %-11s\n", "vq2-d4, vq2-d8x2", vq ? qsafe::isa_name(vq_level) : "-");
}
}  // namespace

void add_info_command(CLI::App& app) {
    auto* cmd = app.add_subcommand("info", "Print a model's metadata, tensors, types and size");
    static std::string model = "smollm2";
    static bool tensors = false;
    cmd->add_option("-m,--model", model, "GGUF file, Hugging Face folder, or 'smollm2'")->capture_default_str();
    cmd->add_flag("--tensors", tensors, "list every tensor");
    static bool cpu = false;
    cmd->add_flag("--cpu", cpu,
                  "print the CPU's features, the instruction-set level the products run at (QSAFE_ISA=portable|avx2|"
                  "avx512bw|avx512vnni forces a lower one), the fp32 back end and each scheme's kernel; no model is read");
    cmd->callback([] {
        if (cpu) return print_cpu();
        const auto path = resolve_model_path(model);
        if (std::filesystem::is_directory(path)) print_safetensors(path, tensors);
        else print_gguf(path, tensors);
    });
}

}  // namespace qsafe_cli
