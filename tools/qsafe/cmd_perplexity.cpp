// qsafe perplexity: llama.cpp-style perplexity on a text file, and KL divergence against a stored
// full-precision reference (--kl-base-out to record it with the fp model, --kl-base to compare a variant).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "qsafe/commands.hpp"
#include "qsafe/io/atomic_write.hpp"
#include "qsafe/common.hpp"
#include "qsafe/model/kl_divergence.hpp"
#include "qsafe/model/perplexity.hpp"

namespace qsafe_cli {

namespace {
std::string default_text_path() {
    const char* d = std::getenv("QSAFE_DATA_DIR");
    const std::string dir = d && *d ? d : std::string(QSAFE_SOURCE_DIR) + "/../shared/datasets";
    return dir + "/wikitext2/test.txt";
}
std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw qsafe::io_error(path + ": cannot open");
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}
}  // namespace

void add_perplexity_command(CLI::App& app) {
    auto* cmd = app.add_subcommand("perplexity", "Perplexity on a text (llama.cpp's method) and KL divergence to a reference");
    static ModelOptions model;
    static std::string text_path, kl_base_out, kl_base, json_out;
    static qsafe::WindowOptions windows;
    static std::uint32_t top_k = 128;
    model.add_to(*cmd);
    cmd->add_option("-f,--file", text_path, "text file (default: $QSAFE_DATA_DIR/wikitext2/test.txt)");
    cmd->add_option("-c,--ctx", windows.n_ctx, "window length in tokens; the second half of each is scored")->capture_default_str();
    cmd->add_option("--chunks", windows.max_windows, "windows to evaluate (0 = all)")->capture_default_str();
    cmd->add_option("--kl-base-out", kl_base_out, "record this model's top-k log-probs as the KL reference");
    cmd->add_option("--kl-base", kl_base, "compare this model to a recorded reference: KL, same-top %, ppl ratio");
    cmd->add_option("--kl-top-k", top_k, "log-probs kept per position in the reference")->capture_default_str();
    cmd->add_option("--json", json_out, "also write the results as JSON");
    cmd->callback([] {
        const std::string path = text_path.empty() ? default_text_path() : text_path;
        std::string text = read_file(path);
        if (!text.empty() && text.back() == '\n') text.pop_back();  // llama.cpp drops one trailing newline too
        auto m = load_with_rules(model);
        const auto t0 = std::chrono::steady_clock::now();
        const auto tokens = m.tokenizer.encode(text, {.add_bos = std::nullopt, .parse_special = false});
        const double tokenize_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        qsafe::WindowOptions opt = windows;
        opt.replace_first_with_bos = m.tokenizer.spec().add_bos && m.tokenizer.bos_id().has_value();
        opt.bos_id = m.tokenizer.bos_id().value_or(-1);
        std::fprintf(stderr, "[%s, rules %s: %zu tokens from %s in %.1fs; %zu windows of %zu]\n", m.name.c_str(),
                     model.rules.c_str(), tokens.size(), path.c_str(), tokenize_s, qsafe::window_count(tokens.size(), opt), opt.n_ctx);
        nlohmann::ordered_json out;
        out["model"] = m.source;
        out["rules"] = model.rules;
        out["bits_per_weight"] = m.model.weights().linear_bits_per_weight();
        out["text"] = path;
        out["tokens"] = tokens.size();
        const auto t1 = std::chrono::steady_clock::now();
        if (!kl_base.empty()) {
            const auto ref = qsafe::ReferenceLogprobs::load(kl_base);
            const qsafe::KlStats s = qsafe::compare_to_reference(m.model, tokens, opt, ref);
            std::printf("positions          %zu\nppl (reference)    %.4f\nppl (this model)   %.4f\nppl ratio          %.4f\n"
                        "mean KL            %.6f +- %.6f\nmedian KL          %.6f\np90 / p99 / max KL %.6f / %.6f / %.6f\n"
                        "same top token     %.2f %% +- %.2f\nreference tail     %.5f (mass outside the top %u)\n",
                        s.positions, s.ppl_reference, s.ppl_variant, s.ppl_ratio, s.mean_kl, s.kl_stderr, s.median_kl, s.p90_kl,
                        s.p99_kl, s.max_kl, 100.0 * s.same_top_fraction, 100.0 * s.same_top_stderr, s.mean_reference_tail_mass, ref.k);
            out["kl"] = {{"positions", s.positions}, {"mean", s.mean_kl}, {"stderr", s.kl_stderr}, {"median", s.median_kl},
                         {"p90", s.p90_kl}, {"p99", s.p99_kl}, {"max", s.max_kl}, {"same_top", s.same_top_fraction},
                         {"ppl_reference", s.ppl_reference}, {"ppl", s.ppl_variant}, {"ppl_ratio", s.ppl_ratio}};
        } else if (!kl_base_out.empty()) {
            const auto ref = qsafe::record_reference(m.model, tokens, opt, top_k);
            ref.save(kl_base_out);
            double nll = 0.0;
            for (float lp : ref.next_logp) nll -= lp;
            std::printf("recorded %zu positions (top %u log-probs) to %s; ppl %.4f\n", ref.positions(), ref.k, kl_base_out.c_str(),
                        std::exp(nll / static_cast<double>(ref.positions())));
        } else {
            const qsafe::PerplexityResult r = qsafe::perplexity(m.model, tokens, opt);
            std::printf("perplexity %.4f +- %.4f over %zu windows of %zu tokens (%zu scored tokens)\n", r.ppl, r.ppl_stderr, r.windows,
                        r.n_ctx, r.scored_tokens);
            out["perplexity"] = {{"ppl", r.ppl}, {"stderr", r.ppl_stderr}, {"n_ctx", r.n_ctx}, {"windows", r.windows},
                                 {"scored_tokens", r.scored_tokens}, {"window_mean_nll", r.window_mean_nll}};
        }
        const double eval_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
        std::fprintf(stderr, "[evaluated in %.1fs]\n", eval_s);
        if (!json_out.empty()) {
            qsafe::io::atomic_write_text(json_out, out.dump(2) + "\n");
        }
    });
}

}  // namespace qsafe_cli
