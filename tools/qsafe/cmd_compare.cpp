// qsafe compare: the quality report of quantized variants against the full-precision model on WikiText-2:
// perplexity, mean / p99 KL divergence, same-top-token %, bits per weight and size, as Markdown and JSON.
// KL uses the reference's stored top-k log-probabilities (plus one merged tail outcome), recorded once.
#include <chrono>
#include <cstdio>
#include <optional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "qsafe/commands.hpp"
#include "qsafe/common.hpp"
#include "qsafe/io/atomic_write.hpp"
#include "qsafe/model/kl_divergence.hpp"

namespace qsafe_cli {

void add_compare_command(CLI::App& app) {
    auto* cmd = app.add_subcommand("compare", "Perplexity and KL divergence of variants against the full-precision model");
    static std::string ref = "smollm2", out_dir = "results", chat_template;
    static std::vector<std::string> variants;
    static CalibrationOptions calib;
    static qsafe::WindowOptions windows;
    static std::uint32_t top_k = 128;
    static int threads = 0;
    static qsafe::GptqOptions gptq;
    static bool sequential = false;
    windows.max_windows = 64;
    cmd->add_option("--ref", ref, "the full-precision model (GGUF, HF folder or 'smollm2')")->capture_default_str();
    cmd->add_option("variants", variants,
                    "variants: quantized .gguf files or on-the-fly specs like int4-g128-asym:gptq (see docs/calibrated-quantization.md)")
        ->required();
    cmd->add_option("-c,--ctx", windows.n_ctx, "window length; the second half of each window is scored")->capture_default_str();
    cmd->add_option("--windows", windows.max_windows, "WikiText-2 windows from the start of the text")->capture_default_str();
    cmd->add_option("--kl-top-k", top_k, "reference log-probs kept per position")->capture_default_str();
    cmd->add_option("-o,--out", out_dir, "folder for compare.md and compare.json")->capture_default_str();
    cmd->add_option("-t,--threads", threads, "threads");
    cmd->add_flag("--act-order", gptq.act_order, "GPTQ variants: act-order");
    cmd->add_flag("--sequential", sequential,
                  "calibrated variants: calibrate each block on the outputs of the already-quantized blocks before it");
    cmd->add_option("--chat-template", chat_template, "chat format override");
    calib.add_to(*cmd);
    cmd->callback([] {
        if (threads > 0) qsafe::set_num_threads(threads);
        const auto ref_path = resolve_model_path(ref);
        std::vector<qsafe::VariantSpec> specs;
        bool need_calibration = false;
        for (const auto& v : variants) {
            specs.push_back(qsafe::parse_variant(v));
            need_calibration |= specs.back().file.empty() && qsafe::ptq_method_needs_calibration(specs.back().method);
        }
        check_variants(specs);
        if (need_calibration) check_calibration_source(calib);
        const auto text_path = wikitext2_path("the quality report");  // before any slow work
        if (sequential && !need_calibration)
            std::fprintf(stderr, "warning: --sequential has no effect: no variant uses calibration statistics (rtn and files)\n");
        qsafe::LoadOptions lo;
        lo.chat_template_override = chat_template;
        auto fp = qsafe::load_model(ref_path, lo);
        const std::string text = read_wikitext2(text_path);
        const auto tokens = fp.tokenizer.encode(text, {.add_bos = std::nullopt, .parse_special = false});
        qsafe::WindowOptions wopt = windows;
        wopt.replace_first_with_bos = fp.tokenizer.spec().add_bos && fp.tokenizer.bos_id().has_value();
        wopt.bos_id = fp.tokenizer.bos_id().value_or(-1);
        const std::size_t n_windows = qsafe::window_count(tokens.size(), wopt);
        if (need_calibration && calib.source == "wikitext2" && n_windows * wopt.n_ctx > tokens.size() * calib.samples.region_begin)
            std::fprintf(stderr, "warning: the evaluated windows reach into the calibration half of WikiText-2\n");

        const auto t0 = std::chrono::steady_clock::now();
        const auto reference = qsafe::record_reference(fp.model, tokens, wopt, top_k);
        std::fprintf(stderr, "[reference: %zu windows of %zu, %zu scored positions in %.1fs]\n", n_windows, wopt.n_ctx,
                     reference.positions(), std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        std::optional<qsafe::CalibrationStats> stats;
        std::optional<SequentialCalibration> seq;
        if (need_calibration && sequential) seq = sequential_calibration(fp, calib);
        else if (need_calibration) stats = calibrate(fp, calib);

        nlohmann::ordered_json json;
        json["reference"] = ref_path.string();
        json["text"] = text_path.string();
        json["n_ctx"] = wopt.n_ctx;
        json["windows"] = n_windows;
        json["kl_top_k"] = top_k;
        if (stats) json["calibration"] = stats->description;
        if (seq) json["calibration"] = seq->description;
        json["variants"] = nlohmann::json::array();
        std::ostringstream md;
        md << "| variant | method | bits/weight | linear MB | file MB | ppl | ppl ratio | mean KL | p99 KL | same top % |\n"
           << "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
        auto add_row = [&](const qsafe::VariantSpec& v, const qsafe::LoadedModel& m, const qsafe::KlStats& s, double seconds) {
            const auto& w = m.model.weights();
            const double linear_mb = static_cast<double>(w.linear_storage_bytes()) / 1e6;
            const std::optional<double> file_mb =
                v.file.empty() ? std::nullopt : std::optional<double>(static_cast<double>(std::filesystem::file_size(v.file)) / 1e6);
            const std::string method = v.file.empty() ? (v.is_reference() ? "-" : qsafe::ptq_method_name(v.method)) : "file";
            char line[512];
            std::snprintf(line, sizeof line, "| %s | %s | %.3f | %.1f | %s | %.4f | %.4f | %.5f | %.4f | %.2f |\n", v.name.c_str(),
                          method.c_str(), w.linear_bits_per_weight(), linear_mb,
                          file_mb ? (std::to_string(static_cast<int>(*file_mb + 0.5))).c_str() : "-", s.ppl_variant, s.ppl_ratio,
                          s.mean_kl, s.p99_kl, 100.0 * s.same_top_fraction);
            md << line;
            std::fputs(line, stdout);
            std::fflush(stdout);
            nlohmann::ordered_json j;
            j["name"] = v.name;
            j["method"] = method;
            j["rules"] = v.file.empty() ? v.rules : "";
            j["file"] = v.file.string();
            j["bits_per_weight"] = w.linear_bits_per_weight();
            j["linear_bytes"] = w.linear_storage_bytes();
            if (file_mb) j["file_bytes"] = std::filesystem::file_size(v.file);
            j["perplexity"] = s.ppl_variant;
            j["perplexity_reference"] = s.ppl_reference;
            j["ppl_ratio"] = s.ppl_ratio;
            j["mean_kl"] = s.mean_kl;
            j["mean_kl_stderr"] = s.kl_stderr;
            j["median_kl"] = s.median_kl;
            j["p99_kl"] = s.p99_kl;
            j["max_kl"] = s.max_kl;
            j["same_top"] = s.same_top_fraction;
            j["positions"] = s.positions;
            j["seconds"] = seconds;
            json["variants"].push_back(j);
        };
        std::printf("| variant | method | bits/weight | linear MB | file MB | ppl | ppl ratio | mean KL | p99 KL | same top %% |\n");
        for (const auto& v : specs) {
            const auto t1 = std::chrono::steady_clock::now();
            auto m = v.is_reference() ? qsafe::load_model(ref_path, lo)
                                      : load_variant(ref_path, v, stats ? &*stats : nullptr, chat_template, gptq, seq ? &*seq : nullptr);
            const qsafe::KlStats s = qsafe::compare_to_reference(m.model, tokens, wopt, reference);
            add_row(v, m, s, std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count());
        }
        std::filesystem::create_directories(out_dir);
        std::ostringstream head;
        head << "# Quality report\n\nReference: `" << ref_path.string() << "`; WikiText-2 test, " << n_windows << " windows of "
             << wopt.n_ctx << " tokens (second half of each scored); KL from the reference's top " << top_k
             << " log-probs plus the merged tail.";
        if (stats) head << " Calibration: " << stats->description << ".";
        if (seq) head << " Calibration: " << seq->description << ".";
        head << "\n\n";
        qsafe::io::atomic_write_text(std::filesystem::path(out_dir) / "compare.md", head.str() + md.str());
        qsafe::io::atomic_write_text(std::filesystem::path(out_dir) / "compare.json", json.dump(2) + "\n");
        std::fprintf(stderr, "[wrote %s/compare.md and compare.json]\n", out_dir.c_str());
    });
}

}  // namespace qsafe_cli
