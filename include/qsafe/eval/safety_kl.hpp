#pragma once
// The evaluator's safety KL: the reference variant's own answers to the harmful prompts of a run, taken
// from the journal, as teacher-forced conversations (safety/response_kl.hpp measures every variant on
// them). The order is fixed by (dataset, prompt id), not by journal order, so a resumed run measures
// exactly what an uninterrupted one does.
#include <algorithm>
#include <string>
#include <tuple>
#include <vector>

#include "qsafe/eval/record.hpp"
#include "qsafe/safety/response_set.hpp"

namespace qsafe::eval {

inline ResponseSet reference_answer_set(std::span<const ResponseRecord> records, const LoadedModel& model,
                                        const std::string& reference_variant, const std::string& system_prompt) {
    std::vector<const ResponseRecord*> answers;
    for (const auto& r : records)
        if (r.variant == reference_variant && r.expected == Expected::harmful && !r.response.empty()) answers.push_back(&r);
    std::sort(answers.begin(), answers.end(), [](const ResponseRecord* x, const ResponseRecord* y) {
        return std::tie(x->dataset, x->prompt_id) < std::tie(y->dataset, y->prompt_id);
    });
    ResponseSet set;
    set.source = reference_variant + "-answers";
    for (const auto* r : answers)
        set.sequences.push_back(conversation_sequence(model, r->dataset + ":" + r->prompt_id, r->prompt, r->response, system_prompt));
    return set;
}

}  // namespace qsafe::eval
