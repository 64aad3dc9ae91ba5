// qsafe quantize: post-training quantization of a whole model (rtn, imatrix, gptq, awq, quik, hqq) into a quantized
// model file that every other command loads without re-quantizing.
#include <chrono>
#include <cstdio>

#include "qsafe/commands.hpp"
#include "qsafe/common.hpp"
#include "qsafe/ptq/model_file.hpp"
#include "qsafe/train/lora.hpp"
#include "qsafe/safety_setup.hpp"

namespace qsafe_cli {

void add_quantize_command(CLI::App& app) {
    auto* cmd = app.add_subcommand("quantize", "Quantize a model (rtn, imatrix, gptq, awq, quik, hqq) and write a quantized model file");
    static ModelOptions model;
    static CalibrationOptions calib;
    static std::string method = "rtn", output;
    static qsafe::GptqOptions gptq;
    static bool no_output_default = false, sequential = false, no_ggml_types = false;
    model.rules = "*=int4-g128-asym";
    model.add_to(*cmd);
    calib.add_to(*cmd);
    cmd->add_option("--method", method, "post-training method: " + qsafe::ptq_method_list())
        ->check(CLI::Validator(
            [](std::string& name) {
                try {
                    qsafe::parse_ptq_method(name);
                    return std::string();
                } catch (const qsafe::error& e) {
                    return std::string(e.what());
                }
            },
            "METHOD"))
        ->capture_default_str();
    cmd->add_option("--damp", gptq.damp_fraction, "GPTQ: dampening as a fraction of the mean Hessian diagonal")->capture_default_str();
    cmd->add_option("--block", gptq.block_size, "GPTQ: lazy-update block size")->capture_default_str();
    cmd->add_flag("--act-order", gptq.act_order, "GPTQ: process columns by decreasing Hessian diagonal");
    cmd->add_flag("--no-output-default", no_output_default,
                  "do not keep the output layer at int8-g32-sym when the rules do not name it");
    cmd->add_flag("--sequential", sequential,
                  "calibrate each block on the outputs of the already-quantized blocks before it (GPTQ's sequential mode)");
    cmd->add_flag("--no-ggml-types", no_ggml_types,
                  "store int4-g32-sym / int8-g32-sym layers in qsafe's layout instead of llama.cpp's Q4_0 / Q8_0");
    static SafetyDataOptions safety;
    static ProtectCliOptions protect;
    static AllocateCliOptions allocate;
    safety.add_to(*cmd);
    protect.add_to(*cmd);
    allocate.add_to(*cmd);
    cmd->add_option("-o,--output", output, "quantized model file to write (.gguf)")->required();
    cmd->callback([] {
        const auto start = std::chrono::steady_clock::now();
        if (model.threads > 0) qsafe::set_num_threads(model.threads);
        const auto path = resolve_model_path(model.model);
        if (std::filesystem::is_directory(path))
            throw qsafe::config_error(path.string() + ": quantized files are written from GGUF models; convert the checkpoint first");
        std::string rules = model.rules;
        if (!no_output_default && rules.find("output") == std::string::npos)
            rules += ",output=" + std::string(qsafe::default_output_scheme);
        qsafe::VariantSpec v;
        v.name = std::filesystem::path(output).stem().string();
        v.method = qsafe::parse_ptq_method(method);
        qsafe::LoadOptions lo;
        lo.chat_template_override = model.chat_template;
        std::optional<qsafe::CalibrationStats> stats, utility_stats;
        std::optional<SequentialCalibration> seq;
        std::optional<qsafe::ProtectedWeights> plan;
        std::string file_method = method;
        const bool calibrated = qsafe::ptq_method_needs_calibration(v.method);
        if (calibrated || protect.mode == "wanda" || protect.mode == "safety") check_calibration_source(calib);
        {
            // Every pattern must name a tensor before any slow work: a typo would quantize nothing silently.
            const auto config = qsafe::config_from_gguf(qsafe::gguf::File::open(path));
            std::vector<std::string> names = qsafe::train::block_projection_names(config.n_layers);
            names.emplace_back("output.weight");
            qsafe::SchemeRules::parse(model.rules).require_all_match(names, "--rules");
            if (protect.enabled()) protect.options().fraction.rules().require_all_match(names, "--protect-fraction");
        }
        if (sequential && !calibrated)
            std::fprintf(stderr, "warning: --sequential has no effect with --method %s, which uses no calibration statistics\n",
                         method.c_str());
        const bool need_utility = protect.mode == "wanda" || protect.mode == "safety";
        const bool need_safety = protect.mode == "safety" || (allocate.enabled() && allocate.allocate == "safety");
        if (calibrated || protect.enabled() || allocate.enabled()) {
            auto fp = qsafe::load_model(path, lo);
            // Without an allocation the rules are final: check them before the (slow) statistics and safety data.
            if (protect.enabled() && !allocate.enabled())
                qsafe::check_protectable(fp.model.mutable_weights(), qsafe::SchemeRules::parse(rules), protect.options());
            if (calibrated && sequential) seq = sequential_calibration(fp, calib);
            if ((calibrated && !sequential) || need_utility) utility_stats = calibrate(fp, calib);
            if (calibrated && !sequential) stats = utility_stats;  // plain RTN stays uncalibrated, protected or not
            std::optional<qsafe::ResponseSet> safety_set;
            if (need_safety) safety_set = safety_response_set(fp, safety);
            if (allocate.enabled()) {
                // The allocation overrides the rules for the tensors it covers (later rules win).
                const auto allocation = allocate_schemes(fp, safety_set ? &*safety_set : nullptr, allocate, stats ? &*stats : nullptr);
                rules += "," + allocation.rules();
                file_method += "+allocate-" + allocate.allocate;
            }
            if (protect.enabled()) {
                qsafe::check_protectable(fp.model.mutable_weights(), qsafe::SchemeRules::parse(rules), protect.options());
                std::optional<qsafe::CalibrationStats> safety_stats;
                std::optional<qsafe::SnipScores> snip;
                if (protect.mode == "safety") safety_stats = response_set_stats(fp, *safety_set);
                if (protect.mode == "snip") snip = snip_scores_for(fp, safety, protect.snip_group);
                plan = qsafe::plan_protection(fp.model.mutable_weights(), safety_stats ? &*safety_stats : nullptr,
                                              utility_stats ? &*utility_stats : nullptr, protect.options(), snip ? &*snip : nullptr);
                std::fprintf(stderr, "[protection (%s): %zu weights in %zu tensors kept in fp16]\n", protect.mode.c_str(), plan->total(),
                             plan->indices.size());
                file_method += "+protect-" + protect.mode + (protect.global.empty() ? "" : "-global");
            }
        }
        v.rules = rules;
        auto m = load_variant(path, v, stats ? &*stats : nullptr, model.chat_template, gptq, seq ? &*seq : nullptr, plan ? &*plan : nullptr);
        const auto source = qsafe::gguf::File::open(path);
        qsafe::QuantizedFileOptions file_options;
        file_options.ggml_types = !no_ggml_types;
        qsafe::save_quantized_model(output, source, m.model.weights(),
                                    {file_method, rules, stats ? stats->description : seq ? seq->description : std::string()},
                                    file_options);
        const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        // The blocks alone (the output layer usually stays at 8 bits and dominates small models' totals).
        double block_bits = 0.0, block_params = 0.0;
        for (const auto& layer : m.model.weights().layers)
            for (const auto* l : {layer.wq.get(), layer.wk.get(), layer.wv.get(), layer.wo.get(), layer.w_gate.get(), layer.w_up.get(),
                                  layer.w_down.get()}) {
                block_bits += 8.0 * static_cast<double>(l->storage_bytes());
                block_params += static_cast<double>(l->rows() * l->cols());
            }
        const std::string shown_rules = rules.size() > 160 ? rules.substr(0, 160) + "..." : rules;
        std::printf("wrote %s: method %s, rules %s, %.3f bits per weight (linear layers; %.3f in the blocks), %.1f MB, total time %s\n",
                    output.c_str(), file_method.c_str(), shown_rules.c_str(), m.model.weights().linear_bits_per_weight(),
                    block_bits / block_params,
                    static_cast<double>(std::filesystem::file_size(output)) / 1e6, format_duration(el).c_str());
    });
}

}  // namespace qsafe_cli
