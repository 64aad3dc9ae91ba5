#pragma once
// The training loop: optimizer steps over SFT examples or DPO triples with gradient accumulation,
// clipping, a warm-up + cosine schedule and LoRA dropout, and checkpoints from which an interrupted run
// continues to the same bytes.
//
// Determinism: which examples step s uses is a pure function of (seed, s) — epoch e visits the examples
// in a Fisher-Yates permutation drawn from splitmix64(seed, e) — and dropout masks are drawn from
// (seed, step, micro-batch). With TrainableLlama's fixed work partition, a run gives the same adapter
// bytes for any thread count, and a run resumed from a checkpoint gives the bytes of one never stopped:
// a checkpoint holds the adapter, both AdamW moments, the step count, the history and (DPO) the cached
// reference log-probabilities, all exact.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "qsafe/core/error.hpp"
#include "qsafe/core/fnv1a.hpp"
#include "qsafe/io/gguf.hpp"
#include "qsafe/train/adamw.hpp"
#include "qsafe/train/fake_quant.hpp"
#include "qsafe/train/objectives.hpp"
#include "qsafe/train/parameters.hpp"
#include "qsafe/train/trainable_llama.hpp"

namespace qsafe::train {

enum class Objective { sft, dpo };

inline const char* objective_name(Objective o) noexcept { return o == Objective::sft ? "sft" : "dpo"; }

struct TrainerConfig {
    Objective objective = Objective::sft;
    std::size_t steps = 100;
    std::size_t batch_size = 8;   // examples per optimizer step (DPO: triples)
    std::size_t micro_batch = 8;  // examples per forward/backward; batch_size / micro_batch steps are accumulated
    double lr = 2e-4;             // peak learning rate
    std::size_t warmup_steps = 0;
    double min_lr_ratio = 0.0;    // the cosine ends at lr · min_lr_ratio
    AdamWConfig adamw;
    double max_grad_norm = 1.0;   // 0 = no clipping
    double dpo_beta = 0.1;
    float lora_dropout = 0.0f;
    std::uint64_t seed = 0;
    /// Pack a micro-batch's sequences into rows of at most this many tokens (attention kept inside each
    /// sequence); 0 = one right-padded row per sequence.
    std::size_t pack_length = 0;

    void validate() const {
        if (steps == 0) throw config_error("training: --steps must be at least 1");
        if (batch_size == 0 || micro_batch == 0) throw config_error("training: batch and micro-batch sizes must be at least 1");
        if (batch_size % micro_batch != 0)
            throw config_error("training: the batch size (" + std::to_string(batch_size) + ") must be a multiple of the micro-batch size (" +
                               std::to_string(micro_batch) + ")");
        if (!(lr > 0) || !std::isfinite(lr)) throw config_error("training: the learning rate must be positive");
        if (!(lora_dropout >= 0.0f && lora_dropout < 1.0f)) throw config_error("training: LoRA dropout must lie in [0, 1)");
        if (objective == Objective::dpo && !(dpo_beta > 0)) throw config_error("training: DPO beta must be positive");
        adamw.validate();
    }

    CosineSchedule schedule() const { return {lr, warmup_steps, steps, min_lr_ratio}; }

    /// Everything a resumed run must share with the run that wrote the checkpoint.
    std::string fingerprint() const {
        std::ostringstream s;
        s.precision(17);
        s << objective_name(objective) << " steps=" << steps << " batch=" << batch_size << " micro=" << micro_batch << " lr=" << lr
          << " warmup=" << warmup_steps << " min_lr_ratio=" << min_lr_ratio << " betas=" << adamw.beta1 << "," << adamw.beta2
          << " eps=" << adamw.eps << " wd=" << adamw.weight_decay << " clip=" << max_grad_norm << " beta=" << dpo_beta
          << " dropout=" << lora_dropout << " seed=" << seed << " pack=" << pack_length;
        return s.str();
    }
};

/// What one optimizer step did (DPO fields are 0 for SFT).
struct StepRecord {
    std::size_t step = 0;  // 1-based
    double lr = 0, loss = 0, grad_norm = 0;
    std::size_t tokens = 0;  // tokens in the step's sequences, padding excluded
    double seconds = 0;
    double reward_chosen = 0, reward_rejected = 0, accuracy = 0;

    std::string serialize() const {
        char buf[320];
        std::snprintf(buf, sizeof buf, "%zu %.17g %.17g %.17g %zu %.17g %.17g %.17g %.17g", step, lr, loss, grad_norm, tokens, seconds,
                      reward_chosen, reward_rejected, accuracy);
        return buf;
    }
    static StepRecord parse(const std::string& line, const std::string& source) {
        StepRecord r;
        std::istringstream in(line);
        if (!(in >> r.step >> r.lr >> r.loss >> r.grad_norm >> r.tokens >> r.seconds >> r.reward_chosen >> r.reward_rejected >> r.accuracy))
            throw format_error(source + ": unreadable step record '" + line + "'");
        return r;
    }
};

class Trainer {
  public:
    /// LoRA: `base` and `adapter` must outlive the trainer; only the adapter is trained.
    Trainer(LlamaWeights& base, LoraAdapter& adapter, TrainerConfig config, TrainableOptions options = {})
        : config_(std::move(config)), adapter_(&adapter), model_(base, &adapter, options),
          optimizer_((config_.validate(), lora_parameters(adapter)), config_.adamw), context_(base.config.context_length) {}

    /// Quantization-aware training (STE, train/fake_quant.hpp): `qat` must have been built over `base`, and
    /// both outlive the trainer. Trained: the covered layers' fp32 masters and the RMSNorm weights; after every
    /// optimizer step the layers are fake-quantized again from the masters (scales re-fitted).
    Trainer(LlamaWeights& base, FakeQuantizedLlama& qat, TrainerConfig config, TrainableOptions options = {})
        : config_(std::move(config)), qat_(&qat), model_(base, nullptr, with_full_gradients(options)),
          optimizer_((config_.validate(), qat.parameters(model_)), config_.adamw), context_(base.config.context_length),
          qat_signature_(qat.signature()) {
        if (config_.lora_dropout > 0.0f) throw config_error("training: LoRA dropout has no meaning in quantization-aware training (no adapter)");
    }

    const TrainerConfig& config() const noexcept { return config_; }
    std::size_t steps_done() const noexcept { return history_.size(); }
    const std::vector<StepRecord>& history() const noexcept { return history_; }
    TrainableLlama& model() noexcept { return model_; }

    /// SFT data: sequences with response masks; `pad` fills short rows (never counted).
    void set_examples(std::vector<MaskedSequence> examples, std::int32_t pad) {
        if (config_.objective != Objective::sft) throw config_error("training: SFT examples given to a DPO trainer");
        if (examples.empty()) throw config_error("training: no examples");
        for (std::size_t i = 0; i < examples.size(); ++i) {
            check_sequence(examples[i].tokens.size(), i);
            if (examples[i].counted() == 0) throw config_error("training: example " + std::to_string(i) + " has no response tokens to learn");
        }
        examples_ = std::move(examples);
        pad_ = pad;
        data_size_ = examples_.size();
        data_digest_ = DataDigest{};
        for (const auto& e : examples_) data_digest_.add(e.tokens).add(e.loss_mask);
    }

    /// DPO data. The reference log-probabilities are those of the model as it is before the first step
    /// (base + the adapter's starting values), computed once on the first step() and kept in checkpoints.
    void set_preferences(std::vector<PreferenceTriple> triples, std::int32_t pad) {
        if (config_.objective != Objective::dpo) throw config_error("training: preference triples given to an SFT trainer");
        if (triples.empty()) throw config_error("training: no preference triples");
        for (std::size_t i = 0; i < triples.size(); ++i) {
            const auto& t = triples[i];
            if (t.chosen.empty() || t.rejected.empty()) throw config_error("training: triple " + std::to_string(i) + " has an empty response");
            check_sequence(t.prompt.size() + std::max(t.chosen.size(), t.rejected.size()), i);
        }
        triples_ = std::move(triples);
        pad_ = pad;
        data_size_ = triples_.size();
        data_digest_ = DataDigest{};
        for (const auto& t : triples_) data_digest_.add(t.prompt).add(t.chosen).add(t.rejected);
        reference_.clear();
    }

    /// The examples (or triples) optimizer step `step` (0-based) uses, in the order they are batched.
    std::vector<std::size_t> step_examples(std::size_t step) {
        if (data_size_ == 0) throw config_error("training: no data set");
        std::vector<std::size_t> out;
        for (std::size_t k = step * config_.batch_size; k < (step + 1) * config_.batch_size; ++k) {
            const std::size_t epoch = k / data_size_;
            if (epoch != order_epoch_ || order_.empty()) {
                order_ = epoch_order(epoch);
                order_epoch_ = epoch;
            }
            out.push_back(order_[k % data_size_]);
        }
        // Micro-batches of similar lengths waste less on padding; the order is still a function of the step.
        std::stable_sort(out.begin(), out.end(), [&](std::size_t a, std::size_t b) { return example_length(a) < example_length(b); });
        return out;
    }

    /// One optimizer step. Throws numeric_error naming the step if the loss or the gradient is not finite
    /// (the adapter is then left as it was before the step).
    StepRecord step() {
        if (data_size_ == 0) throw config_error("training: no data set");
        if (config_.objective == Objective::dpo && reference_.empty()) compute_reference();
        const auto start = std::chrono::steady_clock::now();
        const std::size_t index = history_.size();
        const std::vector<std::size_t> chosen = step_examples(index);
        if (adapter_) adapter_->zero_grad();
        else model_.zero_base_gradients();
        StepRecord rec;
        rec.step = index + 1;
        rec.lr = config_.schedule().at(index);
        if (config_.objective == Objective::sft) sft_step(chosen, index, rec);
        else dpo_step(chosen, index, rec);
        rec.grad_norm = config_.max_grad_norm > 0 ? clip_grad_norm(optimizer_.parameters(), config_.max_grad_norm)
                                                  : global_grad_norm(optimizer_.parameters());
        if (!std::isfinite(rec.loss) || !std::isfinite(rec.grad_norm))
            throw numeric_error("training: step " + std::to_string(rec.step) + ": the " + (std::isfinite(rec.loss) ? "gradient norm" : "loss") +
                                " is not finite (loss " + std::to_string(rec.loss) + ", gradient norm " + std::to_string(rec.grad_norm) +
                                "); the adapter was not updated by this step");
        optimizer_.step(rec.lr);
        refresh_fake_quantization();
        rec.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        history_.push_back(rec);
        return rec;
    }

    /// Writes the whole training state atomically (a crash mid-write leaves the previous checkpoint).
    void save_checkpoint(const std::filesystem::path& path) const {
        gguf::Writer out;
        out.set("general.type", std::string(checkpoint_type));
        out.set("qsafe.train.fingerprint", config_.fingerprint());
        out.set("qsafe.train.adapter", adapter_signature());
        out.set("qsafe.train.data", data_signature());
        out.set("qsafe.train.steps_done", static_cast<std::uint64_t>(history_.size()));
        std::string history;
        for (const auto& r : history_) history += r.serialize() + "\n";
        out.set("qsafe.train.history", history);
        const auto& params = optimizer_.parameters();
        auto& opt = const_cast<AdamW&>(optimizer_);
        for (std::size_t k = 0; k < params.size(); ++k) {
            out.add_tensor_f32(params[k].name, {params[k].size}, {params[k].value, params[k].size});
            out.add_tensor_f32(params[k].name + ".adam_m", {params[k].size}, opt.first_moment(k));
            out.add_tensor_f32(params[k].name + ".adam_v", {params[k].size}, opt.second_moment(k));
        }
        if (!reference_.empty()) {
            std::vector<std::byte> bytes(reference_.size() * sizeof(double));
            std::memcpy(bytes.data(), reference_.data(), bytes.size());
            out.add_tensor("dpo.reference_logp", {reference_.size()}, GgmlType::F64, std::move(bytes));
        }
        out.write(path);
    }

    /// Continues from a checkpoint written by a run with the same configuration, adapter and data.
    void resume(const std::filesystem::path& path) {
        const std::string where = path.string();
        const gguf::File file = gguf::File::open(path);
        if (file.get_optional<std::string>("general.type").value_or("") != checkpoint_type)
            throw format_error(where + ": not a qsafe training checkpoint");
        const auto fingerprint = file.get<std::string>("qsafe.train.fingerprint");
        if (fingerprint != config_.fingerprint())
            throw config_error(where + ": the checkpoint was written with other settings:\n  checkpoint: " + fingerprint +
                               "\n  this run:   " + config_.fingerprint());
        if (file.get<std::string>("qsafe.train.adapter") != adapter_signature())
            throw config_error(where + ": the checkpoint's adapter (targets, rank, alpha) differs from this run's");
        // The data order is a function of (seed, step) over the data set: other data would silently continue
        // a different run.
        if (const auto data = file.get_optional<std::string>("qsafe.train.data").value_or("(none recorded)"); data != data_signature())
            throw config_error(where + ": the checkpoint was written for other training data:\n  checkpoint: " + data +
                               "\n  this run:   " + data_signature());
        std::vector<StepRecord> history;
        std::istringstream lines(file.get<std::string>("qsafe.train.history"));
        for (std::string line; std::getline(lines, line);)
            if (!line.empty()) history.push_back(StepRecord::parse(line, where));
        if (history.size() != file.get<std::uint64_t>("qsafe.train.steps_done")) throw format_error(where + ": step count and history disagree");
        const auto& params = optimizer_.parameters();
        auto read_into = [&](const std::string& name, float* dst, std::size_t n) {
            const gguf::TensorInfo* t = file.find_tensor(name);
            if (t == nullptr) throw format_error(where + ": tensor '" + name + "' is missing");
            if (t->type != GgmlType::F32 || t->n_elements() != n)
                throw format_error(where + ": tensor '" + name + "' is not " + std::to_string(n) + " F32 values");
            const auto bytes = file.tensor_bytes(*t);
            std::memcpy(dst, bytes.data(), n * sizeof(float));
        };
        for (std::size_t k = 0; k < params.size(); ++k) {
            read_into(params[k].name, params[k].value, params[k].size);
            read_into(params[k].name + ".adam_m", optimizer_.first_moment(k).data(), params[k].size);
            read_into(params[k].name + ".adam_v", optimizer_.second_moment(k).data(), params[k].size);
        }
        optimizer_.set_steps(history.size());
        refresh_fake_quantization();  // QAT: the layers compute with the restored masters
        history_ = std::move(history);
        reference_.clear();
        if (const gguf::TensorInfo* t = file.find_tensor("dpo.reference_logp")) {
            if (t->type != GgmlType::F64 || t->n_elements() != 2 * triples_.size())
                throw format_error(where + ": the cached DPO reference log-probabilities do not fit this run's " + std::to_string(triples_.size()) + " triples");
            reference_.resize(2 * triples_.size());
            const auto bytes = file.tensor_bytes(*t);
            std::memcpy(reference_.data(), bytes.data(), bytes.size());
        } else if (config_.objective == Objective::dpo && !history_.empty()) {
            throw format_error(where + ": a DPO checkpoint without its reference log-probabilities");
        }
    }

    static constexpr const char* checkpoint_type = "qsafe.training_checkpoint";

  private:
    static std::uint64_t mix(std::uint64_t z) noexcept {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }

    std::vector<std::size_t> epoch_order(std::size_t epoch) const {
        std::vector<std::size_t> order(data_size_);
        for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
        std::uint64_t state = mix(config_.seed * 0x9E3779B97F4A7C15ull + epoch + 1);
        for (std::size_t i = order.size(); i > 1; --i) {
            state += 0x9E3779B97F4A7C15ull;
            std::swap(order[i - 1], order[mix(state) % i]);
        }
        return order;
    }

    std::size_t example_length(std::size_t i) const {
        if (config_.objective == Objective::sft) return examples_[i].tokens.size();
        return triples_[i].prompt.size() + std::max(triples_[i].chosen.size(), triples_[i].rejected.size());
    }

    void check_sequence(std::size_t tokens, std::size_t index) const {
        if (tokens < 2) throw config_error("training: example " + std::to_string(index) + " has fewer than 2 tokens");
        if (context_ != 0 && tokens > context_)
            throw config_error("training: example " + std::to_string(index) + " is " + std::to_string(tokens) + " tokens, longer than the context (" +
                               std::to_string(context_) + ")");
    }

    /// What is trained (the checkpoint's "qsafe.train.adapter"): the LoRA adapter's shape, or the QAT rules.
    std::string adapter_signature() const {
        if (!adapter_) return qat_signature_;
        std::string s = "rank=" + std::to_string(adapter_->rank()) + " alpha=" + std::to_string(adapter_->alpha());
        for (const auto& p : adapter_->pairs()) s += " " + p.tensor;
        return s;
    }

    static TrainableOptions with_full_gradients(TrainableOptions o) {
        o.full_gradients = true;
        return o;
    }
    /// QAT: the layers compute with the fake-quantized values of the masters the optimizer just changed.
    void refresh_fake_quantization() {
        if (!qat_) return;
        qat_->fake_quantize();
        model_.refresh_weight_caches();
    }

    void set_dropout_for(std::size_t step, std::size_t micro) {
        model_.set_dropout(config_.lora_dropout, mix(config_.seed ^ mix(step * 1000003ull + micro + 0x5151)));
    }

    void sft_step(const std::vector<std::size_t>& chosen, std::size_t step, StepRecord& rec) {
        double count = 0;
        for (std::size_t i : chosen) count += static_cast<double>(examples_[i].counted());
        for (std::size_t start = 0, micro = 0; start < chosen.size(); start += config_.micro_batch, ++micro) {
            std::vector<MaskedSequence> seqs;
            for (std::size_t j = start; j < start + config_.micro_batch; ++j) {
                seqs.push_back(examples_[chosen[j]]);
                rec.tokens += seqs.back().tokens.size();
            }
            const MaskedBatch b = MaskedBatch::from(seqs, pad_, config_.pack_length);
            set_dropout_for(step, micro);
            const std::vector<double> logp = model_.forward(b.batch, b.mask);
            std::vector<double> dlogp;
            rec.loss += sft_loss(logp, b.mask, count, dlogp);
            model_.backward(dlogp);
        }
    }

    static std::vector<MaskedSequence> triple_sequences(const std::vector<PreferenceTriple>& triples, const std::vector<std::size_t>& which) {
        std::vector<MaskedSequence> seqs;
        for (std::size_t i : which) seqs.push_back(triples[i].sequence(true)), seqs.push_back(triples[i].sequence(false));
        return seqs;
    }

    void compute_reference() {
        model_.set_dropout(0.0f, 0);
        reference_.assign(2 * triples_.size(), 0.0);
        for (std::size_t start = 0; start < triples_.size(); start += config_.micro_batch) {
            std::vector<std::size_t> which;
            for (std::size_t i = start; i < std::min(triples_.size(), start + config_.micro_batch); ++i) which.push_back(i);
            const MaskedBatch b = MaskedBatch::from(triple_sequences(triples_, which), pad_, config_.pack_length);
            const std::vector<double> lp = sequence_log_probs(model_.forward(b.batch, b.mask, /*for_backward=*/false), b);
            for (std::size_t j = 0; j < which.size(); ++j) reference_[2 * which[j]] = lp[2 * j], reference_[2 * which[j] + 1] = lp[2 * j + 1];
        }
    }

    void dpo_step(const std::vector<std::size_t>& chosen, std::size_t step, StepRecord& rec) {
        const double total = static_cast<double>(chosen.size());
        for (std::size_t start = 0, micro = 0; start < chosen.size(); start += config_.micro_batch, ++micro) {
            const std::vector<std::size_t> which(chosen.begin() + static_cast<std::ptrdiff_t>(start),
                                                 chosen.begin() + static_cast<std::ptrdiff_t>(start + config_.micro_batch));
            const MaskedBatch b = MaskedBatch::from(triple_sequences(triples_, which), pad_, config_.pack_length);
            for (std::size_t i : which) rec.tokens += triples_[i].prompt.size() * 2 + triples_[i].chosen.size() + triples_[i].rejected.size();
            set_dropout_for(step, micro);
            const std::vector<double> lp = sequence_log_probs(model_.forward(b.batch, b.mask), b);
            std::vector<PreferenceLogProbs> policy, reference;
            for (std::size_t j = 0; j < which.size(); ++j) {
                policy.push_back({lp[2 * j], lp[2 * j + 1]});
                reference.push_back({reference_[2 * which[j]], reference_[2 * which[j] + 1]});
            }
            const DpoResult r = dpo_loss(policy, reference, config_.dpo_beta, total);
            const double share = static_cast<double>(which.size()) / total;
            rec.loss += r.loss * share;
            rec.reward_chosen += r.reward_chosen * share;
            rec.reward_rejected += r.reward_rejected * share;
            rec.accuracy += r.accuracy * share;
            std::vector<double> per_seq;
            for (std::size_t j = 0; j < which.size(); ++j) per_seq.push_back(r.dchosen[j]), per_seq.push_back(r.drejected[j]);
            model_.backward(spread_sequence_gradient(per_seq, b));
        }
    }

    TrainerConfig config_;
    LoraAdapter* adapter_ = nullptr;      // LoRA training, or
    FakeQuantizedLlama* qat_ = nullptr;   // quantization-aware training
    TrainableLlama model_;
    AdamW optimizer_;
    std::size_t context_ = 0;
    std::string qat_signature_;
    std::vector<MaskedSequence> examples_;
    std::vector<PreferenceTriple> triples_;
    std::vector<double> reference_;  // chosen, rejected per triple
    std::int32_t pad_ = 0;
    std::size_t data_size_ = 0;
    /// FNV-1a over every token and mask value of the data, in order: checkpoints name the data they belong to.
    struct DataDigest {
        Fnv1a h;
        template <class T>
        DataDigest& add(const std::vector<T>& values) {
            h.u64(values.size());
            for (const T v : values) h.u64(static_cast<std::uint64_t>(static_cast<std::make_unsigned_t<T>>(v)));
            return *this;
        }
    } data_digest_;
    std::string data_signature() const {
        char hex[17];
        std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(data_digest_.h.value));
        return std::to_string(data_size_) + (config_.objective == Objective::sft ? " examples" : " triples") + ", digest " + hex;
    }
    std::vector<std::size_t> order_;
    std::size_t order_epoch_ = 0;
    std::vector<StepRecord> history_;
};

}  // namespace qsafe::train
