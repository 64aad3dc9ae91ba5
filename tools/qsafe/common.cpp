#include "qsafe/common.hpp"

#include <array>
#include <memory>


namespace qsafe_cli {

std::filesystem::path fetch_default_model() {
    const std::filesystem::path script = std::filesystem::path(QSAFE_SOURCE_DIR) / "scripts" / "fetch_model.sh";
    if (!std::filesystem::exists(script)) throw qsafe::io_error(script.string() + ": fetch script not found");
    const std::string command = "bash '" + script.string() + "'";
    std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(command.c_str(), "r"), pclose);
    if (!pipe) throw qsafe::io_error("cannot run " + script.string());
    std::string out;
    std::array<char, 512> buf{};
    while (std::fgets(buf.data(), static_cast<int>(buf.size()), pipe.get())) out += buf.data();
    const int status = pclose(pipe.release());
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    if (status != 0 || out.empty()) throw qsafe::io_error("fetching the default model failed (" + script.string() + ")");
    return out;
}

std::filesystem::path resolve_model_path(const std::string& model) {
    if (model != "smollm2") return model;
    const auto cached = qsafe::default_model_path();
    if (std::filesystem::exists(cached)) return cached;
    return fetch_default_model();
}

qsafe::LoadedModel load_with_rules(const ModelOptions& opt) {
    if (opt.threads > 0) qsafe::set_num_threads(opt.threads);
    qsafe::set_activation_precision(opt.activations == "int8"   ? qsafe::ActivationPrecision::int8
                                    : opt.activations == "auto" ? qsafe::ActivationPrecision::automatic
                                                                : qsafe::ActivationPrecision::fp32);
    qsafe::LoadOptions lo;
    lo.build_linear = qsafe::rtn_builder(qsafe::SchemeRules::parse(opt.rules));
    lo.chat_template_override = opt.chat_template;
    return qsafe::load_model(resolve_model_path(opt.model), lo);
}

}  // namespace qsafe_cli
