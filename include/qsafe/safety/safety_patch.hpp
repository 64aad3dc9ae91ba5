#pragma once
// Q-resafe safety patching (Chen et al., ICML 2025): repair the refusals a quantized model lost, changing only
// its safety-critical weights. The library half of `qsafe patch` (docs/safety-patching.md):
//   1. the patching set (patching_pairs): harmful training prompts where the full-precision model refuses and
//      the quantized variant complies; chosen = the full-precision answer, rejected = the variant's;
//   2. the safety-critical weights of the quantized model (critical_masks): SNIP scores
//      (safety/snip_scores.hpp) over (prompt → full-precision refusal) examples, scored at the weights the
//      variant computes with, the top fraction of each tensor or of all tensors (one threshold from a random
//      sample of scores, as Q-resafe's code takes it);
//   3. DPO through LoRA restricted to those weights (train/weight_mask.hpp; train/trainer.hpp runs it), the
//      reference being the unpatched variant, with the mask re-identified on the patched model every K steps
//      (run_safety_patch: checkpointed at every re-identification, resumable);
//   4. the fold (fold_patch): the patched weights — and only they — are stored in fp16 through the existing
//      protection (registry/protected_linear.hpp), on top of the variant's packed layers left exactly as they
//      were. Every added byte (fp16 value, 16-bit column, 32-bit row pointer) is in storage_bytes(), so the
//      bits per weight every command reports include the patch. A variant layer that already protects weights
//      keeps them: the union is stored.
// Entries a re-identification drops from the mask lose their update (the update is M ⊙ B·A): the folded model
// is exactly what the last period trained.
#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <optional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "qsafe/core/error.hpp"
#include "qsafe/core/fnv1a.hpp"
#include "qsafe/eval/verdict.hpp"
#include "qsafe/io/atomic_write.hpp"
#include "qsafe/model/weights.hpp"
#include "qsafe/registry/protected_linear.hpp"
#include "qsafe/registry/scheme_spec.hpp"
#include "qsafe/safety/snip_scores.hpp"
#include "qsafe/safety/weight_scores.hpp"
#include "qsafe/train/lora.hpp"
#include "qsafe/train/trainer.hpp"
#include "qsafe/train/weight_mask.hpp"

namespace qsafe {

/// One preference of the patching set.
struct PatchExample {
    std::string id, prompt;
    std::string chosen;    // the full-precision model's answer (a refusal)
    std::string rejected;  // the quantized variant's answer (compliance)
};

/// The rows where `judge(row, fp answer)` is a refusal and `judge(row, variant answer)` a compliance, in row
/// order. `Judge` is anything with judge(const eval::PromptRow&, std::string_view) -> a result with .verdict
/// (eval/refusal_judge.hpp's RefusalJudge, or a user's).
template <class Judge>
std::vector<PatchExample> patching_pairs(std::span<const eval::PromptRow> rows, std::span<const std::string> fp_answers,
                                         std::span<const std::string> variant_answers, const Judge& judge) {
    if (fp_answers.size() != rows.size() || variant_answers.size() != rows.size())
        throw shape_error("patching set: " + std::to_string(rows.size()) + " prompts but " + std::to_string(fp_answers.size()) +
                          " full-precision and " + std::to_string(variant_answers.size()) + " variant answers");
    std::vector<PatchExample> out;
    for (std::size_t i = 0; i < rows.size(); ++i)
        if (judge.judge(rows[i], fp_answers[i]).verdict == eval::Verdict::refusal &&
            judge.judge(rows[i], variant_answers[i]).verdict == eval::Verdict::compliance)
            out.push_back({rows[i].id, rows[i].prompt, fp_answers[i], variant_answers[i]});
    return out;
}

struct CriticalWeightOptions {
    double fraction = 0.002;   // of each scored tensor, or (global) of all of them
    bool global = false;       // one threshold over all tensors, estimated from a random sample of scores
    std::size_t global_sample = 1'000'000;
    std::uint64_t seed = 0;

    void validate() const {
        if (!(fraction > 0.0 && fraction <= 1.0)) throw config_error("critical weights: the fraction must be in (0, 1]");
        if (global && global_sample == 0) throw config_error("critical weights: the global threshold's sample must hold at least one score");
    }
};

/// The safety-critical weights of every scored tensor, as masks over `model`'s matrices.
inline std::map<std::string, train::WeightMask> critical_masks(const SnipScores& scores, const LlamaWeights& model, const CriticalWeightOptions& opt) {
    opt.validate();
    auto& mutable_model = const_cast<LlamaWeights&>(model);  // block_linear only reads here
    float threshold = 0.0f;
    if (opt.global) {
        std::vector<std::span<const float>> all;
        for (const auto& [name, s] : scores.tensors) all.emplace_back(s);
        threshold = sampled_top_threshold(all, opt.fraction, opt.global_sample, opt.seed);
    }
    std::map<std::string, train::WeightMask> out;
    for (const auto& [name, s] : scores.tensors) {
        const auto* slot = train::block_linear(mutable_model, name);
        if (slot == nullptr) throw config_error("critical weights: scored tensor '" + name + "' is not a block projection of the model");
        const std::size_t rows = (*slot)->rows(), cols = (*slot)->cols();
        if (s.size() != rows * cols)
            throw shape_error("critical weights: " + std::to_string(s.size()) + " scores for '" + name + "', a " + std::to_string(rows) + "x" +
                              std::to_string(cols) + " matrix");
        std::vector<std::size_t> picked = opt.global ? at_or_above(s, threshold) : top_scored(s, fraction_count(opt.fraction, s.size()));
        out.emplace(name, train::WeightMask::from_indices(rows, cols, std::move(picked), name));
    }
    return out;
}

/// Restricts every pair of `adapter` to its tensor's mask; a pair whose tensor has none gets an empty mask
/// (it changes nothing).
inline void apply_masks(train::LoraAdapter& adapter, const std::map<std::string, train::WeightMask>& masks) {
    for (auto& p : adapter.pairs()) {
        const auto it = masks.find(p.tensor);
        p.mask = it != masks.end() ? it->second : train::WeightMask::from_indices(p.out_features(), p.in_features(), {}, p.tensor);
    }
}

/// An fp32 copy of `model` with the adapter's (masked) update added: the patched model as it computes, for
/// re-identifying the critical weights on it.
inline LlamaWeights patched_dense(const LlamaWeights& model, const train::LoraAdapter& adapter) {
    LlamaWeights w = dense_copy(model);
    adapter.merge_into(w);
    return w;
}

struct PatchFold {
    std::size_t tensors = 0;        // quantized layers that received fp16 patched weights (fp32 layers take them in place)
    std::size_t patched = 0;        // masked entries written
    std::size_t protected_total = 0;  // fp16 entries in those layers after the fold (earlier protection included)
    std::size_t added_bytes = 0;    // storage the fold added
};

/// Folds a masked adapter into the quantized `model`: each masked layer becomes a ProtectedLinear over its
/// unchanged packed base whose fp16 entries are the patched weights (base reconstruction + update), plus any
/// it protected already. Throws config_error for an unmasked pair (a dense update has no sparse fold).
inline PatchFold fold_patch(LlamaWeights& model, const train::LoraAdapter& adapter) {
    adapter.check_fits(model, "safety patch");
    PatchFold fold;
    for (const auto& p : adapter.pairs()) {
        if (!p.mask) throw config_error("safety patch: the adapter pair of '" + p.tensor + "' has no weight mask");
        if (p.mask->count() == 0) continue;
        auto& slot = *train::block_linear(model, p.tensor);
        const std::size_t before = slot->storage_bytes();
        RowMatrixF w = slot->dequantize();
        const std::vector<float> delta = p.masked_deltas(adapter.scale());
        for (std::size_t i = 0; i < p.mask->rows; ++i)
            for (std::uint32_t e = p.mask->row_ptr[i]; e < p.mask->row_ptr[i + 1]; ++e) w(static_cast<Eigen::Index>(i), p.mask->col[e]) += delta[e];
        fold.patched += p.mask->count();
        if (dynamic_cast<DenseLinear*>(slot.get())) {  // an fp32 layer takes the patched values as they are
            slot = std::make_unique<DenseLinear>(std::move(w));
            continue;
        }
        std::vector<std::size_t> keep = p.mask->indices();
        std::unique_ptr<QuantizedLinear> base;
        if (auto* guarded = dynamic_cast<ProtectedLinear*>(slot.get())) {
            const SparseOutlierStore& s = guarded->protected_store();
            for (std::size_t r = 0; r + 1 < s.row_ptr.size(); ++r)
                for (std::uint32_t e = s.row_ptr[r]; e < s.row_ptr[r + 1]; ++e) keep.push_back(r * slot->cols() + s.col[e]);
            base = std::move(*guarded).release_base();
        } else {
            base = std::move(slot);
        }
        SparseOutlierStore store = protected_store(w, std::move(keep), p.tensor);
        SchemeSpec spec = SchemeSpec::parse(base->scheme_name());
        spec.protected_fraction = static_cast<double>(store.count()) / static_cast<double>(base->rows() * base->cols());
        fold.protected_total += store.count();
        slot = std::make_unique<ProtectedLinear>(std::move(base), std::move(store), spec.to_string(), "patched weights of '" + p.tensor + "'");
        fold.added_bytes += slot->storage_bytes() - before;
        ++fold.tensors;
    }
    return fold;
}

struct SafetyPatchConfig {
    train::LoraConfig lora;
    train::TrainerConfig dpo;  // its objective must be DPO
    CriticalWeightOptions critical;
    std::size_t reidentify_every = 10;  // steps between re-identifications of the critical weights (0: never)
    std::function<void(std::size_t, std::size_t)> snip_progress;  // (examples done, all) of each SNIP pass
    std::function<void(const train::StepRecord&)> on_step;        // after every optimizer step

    /// What the masks depend on besides the training state (written beside the checkpoint: a rerun with other
    /// mask settings starts over).
    std::string mask_fingerprint(std::span<const train::MaskedSequence> snip_examples) const {
        Fnv1a h;
        for (const auto& e : snip_examples) {
            h.u64(e.tokens.size());
            for (const auto t : e.tokens) h.u64(static_cast<std::uint32_t>(t));
            for (const auto m : e.loss_mask) h.byte(m);
        }
        char buf[256];
        std::snprintf(buf, sizeof buf, "fraction=%.17g global=%d sample=%zu seed=%llu every=%zu snip=%zu:%016llx", critical.fraction,
                      critical.global ? 1 : 0, critical.global_sample, static_cast<unsigned long long>(critical.seed), reidentify_every,
                      snip_examples.size(), static_cast<unsigned long long>(h.value));
        return buf;
    }

    void validate() const {
        lora.validate();
        dpo.validate();
        critical.validate();
        if (dpo.objective != train::Objective::dpo) throw config_error("safety patch: the training objective must be DPO");
    }
};

/// One stretch of steps trained under one mask.
struct PatchPeriod {
    std::size_t period = 0, first_step = 0;  // steps first_step + 1 ... are trained under this mask
    std::size_t masked_weights = 0;
    std::optional<double> kept_from_previous;  // share of this mask's entries the previous mask had
};

struct SafetyPatchResult {
    std::vector<train::StepRecord> history;
    std::vector<PatchPeriod> periods;
    PatchFold fold;
    double bits_per_weight_before = 0, bits_per_weight_after = 0;
};

namespace detail {

inline std::size_t mask_entries(const std::map<std::string, train::WeightMask>& masks) {
    std::size_t n = 0;
    for (const auto& [name, m] : masks) n += m.count();
    return n;
}

inline double mask_overlap(const std::map<std::string, train::WeightMask>& before, const std::map<std::string, train::WeightMask>& now) {
    std::size_t same = 0, total = 0;
    for (const auto& [name, m] : now) {
        total += m.count();
        const auto it = before.find(name);
        if (it == before.end()) continue;
        const auto a = it->second.indices(), b = m.indices();
        std::vector<std::size_t> both;
        std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(both));
        same += both.size();
    }
    return total == 0 ? 1.0 : static_cast<double>(same) / static_cast<double>(total);
}

}  // namespace detail

/// Patches `variant` in place: masked-LoRA DPO on `triples` (chosen = full-precision refusal, rejected = the
/// variant's answer) with the critical weights identified by SNIP over `snip_examples` (prompt → refusal, loss
/// on the refusal) — first on the variant, then every reidentify_every steps on the patched model — and the
/// fold (fold_patch). `work_dir` keeps a checkpoint after each period ("patch.ckpt.gguf") and each period's
/// mask ("mask-<period>.gguf"): a rerun with the same settings and data continues where it stopped and ends
/// with the same model; a checkpoint of other settings is discarded.
inline SafetyPatchResult run_safety_patch(LlamaWeights& variant, std::vector<train::PreferenceTriple> triples,
                                          std::span<const train::MaskedSequence> snip_examples, std::int32_t pad, const SafetyPatchConfig& cfg,
                                          const std::filesystem::path& work_dir) {
    namespace fs = std::filesystem;
    cfg.validate();
    if (snip_examples.empty()) throw config_error("safety patch: no (prompt → refusal) examples to find the safety-critical weights with");
    fs::create_directories(work_dir);
    SafetyPatchResult result;
    result.bits_per_weight_before = variant.linear_bits_per_weight();
    train::LoraAdapter adapter = train::LoraAdapter::create(variant, cfg.lora);
    const std::size_t period_steps = cfg.reidentify_every == 0 ? cfg.dpo.steps : cfg.reidentify_every;
    const fs::path checkpoint = work_dir / "patch.ckpt.gguf", settings = work_dir / "patch.masks.txt";
    const std::string mask_settings = cfg.mask_fingerprint(snip_examples) + "\n";
    auto mask_path = [&](std::size_t p) { return work_dir / ("mask-" + std::to_string(p) + ".gguf"); };
    std::map<std::string, train::WeightMask> masks;
    auto identify = [&](std::size_t period) {
        if (fs::exists(mask_path(period))) return train::load_weight_masks(mask_path(period));  // found before a restart
        const LlamaWeights patched = patched_dense(variant, adapter);
        SnipOptions so;
        so.progress = cfg.snip_progress;
        auto found = critical_masks(snip_scores(patched, snip_examples, pad, so), patched, cfg.critical);
        train::save_weight_masks(mask_path(period), found);
        return found;
    };
    auto enter_period = [&](std::size_t period, std::map<std::string, train::WeightMask> now) {
        PatchPeriod rec{period, period * period_steps, detail::mask_entries(now), {}};
        if (period > 0) rec.kept_from_previous = detail::mask_overlap(masks, now);
        result.periods.push_back(rec);
        masks = std::move(now);
        apply_masks(adapter, masks);
    };
    {
        train::Trainer trainer(variant, adapter, cfg.dpo);
        trainer.set_preferences(std::move(triples), pad);
        auto start_over = [&] {
            fs::remove(checkpoint);
            for (std::size_t p = 0; fs::exists(mask_path(p)); ++p) fs::remove(mask_path(p));
        };
        std::string recorded;
        if (fs::exists(settings)) {
            std::ifstream in(settings);
            std::getline(in, recorded);
            recorded += "\n";
        }
        if (recorded != mask_settings) start_over();  // masks of other settings (or none recorded)
        io::atomic_write_text(settings, mask_settings);
        if (fs::exists(checkpoint)) {
            try {
                trainer.resume(checkpoint);
            } catch (const config_error&) {
                start_over();  // written with other training settings or data
            }
        }
        const std::size_t done = trainer.steps_done();
        // The periods already trained, under the masks they had.
        for (std::size_t p = 0; done > 0 && p <= (done - 1) / period_steps; ++p) {
            if (!fs::exists(mask_path(p)))
                throw config_error("safety patch: " + checkpoint.string() + " is at step " + std::to_string(done) + " but " + mask_path(p).string() +
                                   " is missing; delete the checkpoint to start over");
            enter_period(p, train::load_weight_masks(mask_path(p)));
        }
        if (done < cfg.dpo.steps && done % period_steps == 0) enter_period(done / period_steps, identify(done / period_steps));
        while (trainer.steps_done() < cfg.dpo.steps) {
            const train::StepRecord r = trainer.step();
            if (cfg.on_step) cfg.on_step(r);
            const std::size_t now = trainer.steps_done();
            if (now % period_steps == 0 || now == cfg.dpo.steps) {
                trainer.save_checkpoint(checkpoint);
                if (now < cfg.dpo.steps) enter_period(now / period_steps, identify(now / period_steps));
            }
        }
        result.history = trainer.history();
    }
    result.fold = fold_patch(variant, adapter);
    result.bits_per_weight_after = variant.linear_bits_per_weight();
    return result;
}

}  // namespace qsafe
