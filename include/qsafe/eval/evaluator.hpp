#pragma once
// Evaluator<Model, Dataset, Judge>: runs a model variant over a dataset with fixed decoding settings, judges
// every response and appends it to the journal as soon as its sequence finishes. Prompts go through the
// batched decoder in fixed chunks of `max_batch` rows (by dataset order), so every sequence is decoded in
// exactly the same company whether the run is fresh or resumed: a resumed run regenerates the unfinished
// rows of a partly finished chunk with the same batch and therefore the same floating-point rounding,
// and the final report is byte-identical to an uninterrupted run's.
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "qsafe/eval/dataset.hpp"
#include "qsafe/eval/journal.hpp"
#include "qsafe/eval/judge.hpp"
#include "qsafe/eval/progress.hpp"
#include "qsafe/eval/record.hpp"
#include "qsafe/eval/reference_agreement.hpp"
#include "qsafe/model/generation.hpp"
#include "qsafe/model/model_loader.hpp"

namespace qsafe::eval {

struct DecodingOptions {
    std::size_t max_new_tokens = 128;
    std::size_t max_batch = 64;  // quantized variants decode ~4x faster at 64 than one at a time (docs/evaluation.md)
    SamplingOptions sampling = {};  // greedy by default
    std::string system_prompt;      // empty = none

    nlohmann::json to_json() const {
        return {{"max_new_tokens", max_new_tokens}, {"max_batch", max_batch}, {"temperature", sampling.temperature},
                {"top_k", sampling.top_k}, {"top_p", sampling.top_p}, {"seed", sampling.seed}, {"system_prompt", system_prompt}};
    }
};

struct GeneratedResponse {
    std::string text;
    std::size_t prompt_tokens = 0, response_tokens = 0;
    bool hit_max_tokens = false;
};

/// What the evaluator needs from a model: answers to a batch of prompts (reported one by one as they finish,
/// in any order), and the tokenization of a response text (for reference agreement).
template <class M>
concept ChatGenerator = requires(M& m, std::span<const PromptRow> rows, const DecodingOptions& d,
                                 const std::function<void(std::size_t, const GeneratedResponse&)>& on_done, std::string_view text) {
    m.respond(rows, d, on_done);
    { m.encode_response(text) } -> std::convertible_to<std::vector<std::int32_t>>;
};

/// A qsafe model with its tokenizer and chat template as a ChatGenerator.
class LlamaChatModel {
  public:
    explicit LlamaChatModel(LoadedModel& model) : m_(model) {}

    void respond(std::span<const PromptRow> rows, const DecodingOptions& d,
                 const std::function<void(std::size_t, const GeneratedResponse&)>& on_done) {
        // Answers would all be cut by the context instead of by the limit, and judged on what fits.
        const std::size_t context = m_.model.config().context_length;
        if (d.max_new_tokens >= context)
            throw config_error(m_.source + ": " + std::to_string(d.max_new_tokens) + " new tokens per answer (--max-new-tokens) " +
                               "leave no room for a prompt in the model's context of " + std::to_string(context) + " tokens");
        std::vector<std::vector<std::int32_t>> prompts;
        prompts.reserve(rows.size());
        for (const auto& row : rows) {
            std::vector<tokenizer::Message> turns;
            if (!d.system_prompt.empty()) turns.push_back({"system", d.system_prompt});
            turns.push_back({"user", row.prompt});
            prompts.push_back(m_.tokenizer.encode(m_.chat_template.format(turns), {.parse_special = true}));
            if (prompts.back().size() >= context)
                throw config_error(m_.source + ": prompt '" + row.id + "' is " + std::to_string(prompts.back().size()) +
                                   " tokens as a chat turn, which leaves no room for an answer in the model's context of " +
                                   std::to_string(context) + " tokens");
        }
        GenerationOptions g;
        g.max_new_tokens = d.max_new_tokens;
        g.max_batch = d.max_batch;
        g.sampling = d.sampling;
        generate(m_.model, m_.tokenizer, prompts, g, &stats_, [&](std::size_t i, const GenerationResult& r) {
            on_done(i, GeneratedResponse{r.text, r.prompt_tokens, r.tokens.size(), r.stop != qsafe::StopReason::end_of_generation});
        });
    }
    std::vector<std::int32_t> encode_response(std::string_view text) const {
        return m_.tokenizer.encode(text, {.add_bos = false, .parse_special = false, .add_eos = false});
    }
    /// Prompt and generated tokens and the time spent on each (prefill, batched decode steps) so far:
    /// the decode rate is what batching speeds up; the evaluator's overall rate also pays for prefill.
    const GenerationStats& generation_stats() const noexcept { return stats_; }

  private:
    LoadedModel& m_;
    GenerationStats stats_;
};
static_assert(ChatGenerator<LlamaChatModel>);

struct EvalRunStats {
    std::size_t rows = 0, already_done = 0, generated = 0, tokens = 0;
    double seconds = 0.0;
    double tokens_per_second() const { return seconds > 0.0 ? static_cast<double>(tokens) / seconds : 0.0; }
};

template <ChatGenerator Model, Dataset D, Judge J>
class Evaluator {
  public:
    Evaluator(Journal& journal, J& judge, DecodingOptions decoding, std::string reference_variant = "fp")
        : journal_(journal), judge_(judge), decoding_(std::move(decoding)), reference_(std::move(reference_variant)) {}

    /// Which chunks of `max_batch` rows (by the index of their first row) this run answers; all by default.
    /// A sharded run (sharding.hpp) answers only its own.
    using ChunkFilter = std::function<bool(std::size_t first_row)>;

    /// The reference's answers come from another journal (a sharded run's shared reference journal) instead
    /// of this one. The records must outlive the evaluator's runs.
    void take_reference_answers_from(const std::vector<ResponseRecord>* records) { reference_records_ = records; }

    /// True when every row of the dataset (of the chunks `take`) already has a result for the variant.
    bool finished(std::string_view variant, const D& dataset, const ChunkFilter& take = {}) const {
        const std::size_t chunk = std::max<std::size_t>(decoding_.max_batch, 1);
        std::size_t i = 0;
        for (const auto& row : dataset) {
            if ((!take || take(i / chunk * chunk)) && !journal_.finished(variant, row.id, dataset.name())) return false;
            ++i;
        }
        return true;
    }

    EvalRunStats run(std::string_view variant, Model& model, const D& dataset, bool show_progress = true, const ChunkFilter& take = {}) {
        const auto start = std::chrono::steady_clock::now();
        std::vector<PromptRow> rows;
        for (const auto& r : dataset) rows.push_back(PromptRow{std::string(r.id), std::string(r.prompt), std::string(r.category), r.expected});
        const std::size_t chunk = std::max<std::size_t>(decoding_.max_batch, 1);
        EvalRunStats stats;
        const std::string dataset_name(dataset.name());
        for (std::size_t i = 0; i < rows.size(); ++i) {
            if (take && !take(i / chunk * chunk)) continue;
            ++stats.rows;
            stats.already_done += journal_.finished(variant, rows[i].id, dataset_name) ? 1 : 0;
        }
        ProgressBar bar(std::string(variant) + " / " + dataset_name, stats.rows);
        bar.set_already_done(stats.already_done);
        std::size_t done = stats.already_done;

        // The reference's responses (for agreement), by prompt id, from the journal.
        // Copied: the journal's record vector grows (and may move) while this run appends to it.
        struct ReferenceAnswer {
            std::string text;
            Verdict verdict;
        };
        std::map<std::string, ReferenceAnswer, std::less<>> reference;
        if (variant != reference_)
            for (const auto& rec : reference_records_ ? *reference_records_ : journal_.records())
                if (rec.variant == reference_ && rec.dataset == dataset_name) reference[rec.prompt_id] = {rec.response, rec.verdict};

        for (std::size_t first = 0; first < rows.size(); first += chunk) {
            if (take && !take(first)) continue;
            const std::span<const PromptRow> part(rows.data() + first, std::min(chunk, rows.size() - first));
            bool all_done = true;
            for (const auto& r : part) all_done &= journal_.finished(variant, r.id, dataset_name);
            if (all_done) continue;
            const auto chunk_start = std::chrono::steady_clock::now();
            model.respond(part, decoding_, [&](std::size_t i, const GeneratedResponse& g) {
                const PromptRow& row = part[i];
                stats.tokens += g.response_tokens;
                if (journal_.finished(variant, row.id, dataset_name)) return;  // regenerated only to keep the batch intact
                ResponseRecord rec;
                rec.dataset = dataset_name;
                rec.variant = std::string(variant);
                rec.prompt_id = row.id;
                rec.category = row.category;
                rec.expected = row.expected;
                rec.prompt = row.prompt;
                rec.response = g.text;
                const JudgeResult verdict = judge_.judge(row, g.text);
                rec.verdict = verdict.verdict;
                rec.judge_reason = verdict.reason;
                rec.prompt_tokens = g.prompt_tokens;
                rec.response_tokens = g.response_tokens;
                rec.stop = g.hit_max_tokens ? StopReason::max_tokens : StopReason::end_of_turn;
                rec.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - chunk_start).count();
                if (const auto it = reference.find(row.id); it != reference.end()) {
                    // Both texts re-tokenized the same way, so a resumed run computes the same numbers.
                    const auto ref_tokens = model.encode_response(it->second.text);
                    const auto var_tokens = model.encode_response(rec.response);
                    const ReferenceAgreement a = compare_to_reference({it->second.text, ref_tokens, it->second.verdict},
                                                                      {rec.response, var_tokens, rec.verdict});
                    rec.identical_prefix_tokens = a.common_prefix_tokens;
                    rec.similarity = a.similarity;
                }
                journal_.append(rec);
                ++stats.generated;
                if (show_progress) bar.update(++done, stats.tokens);
            });
        }
        stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        if (show_progress && stats.generated == 0) bar.update(stats.rows, 0);
        return stats;
    }

  private:
    Journal& journal_;
    J& judge_;
    DecodingOptions decoding_;
    std::string reference_;
    const std::vector<ResponseRecord>* reference_records_ = nullptr;
};

}  // namespace qsafe::eval
