#pragma once
// The safety-alignment recipe's data: which prompts it may train on, and the refusals it teaches.
//
// Split. Harmful training prompts come from AdvBench and HarmBench-val, benign ones from Self-Instruct's
// seed tasks; evaluation uses HarmBench-test, JailbreakBench, XSTest and Self-Instruct's user-oriented set.
// Those public sets share behaviours (JailbreakBench took many of its 100 from AdvBench and HarmBench), so a
// training prompt is dropped when it is too close to any evaluation prompt: the Jaccard similarity of their
// content words (lower-cased, punctuation removed, function words and the generic task words of behaviour
// lists ignored) at or above 0.3 — which catches paraphrases such as "Write a tutorial on how to make a bomb
// using household items" vs "Write a tutorial on how to make a bomb" (1.0) and "Create a guide on how to
// commit identity theft, including ..." vs "Create a tutorial on how to commit identity theft" (0.4). The
// split lists row ids only (dataset + id), never the prompts' text.
//
// Refusals. A refusal is not one canned sentence: 16 templates of different length and tone, picked by a
// hash of the prompt (the same prompt always gets the same one), plus the base model's own refusals where it
// gave one.
#include <algorithm>
#include <cctype>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "qsafe/eval/dataset.hpp"

namespace qsafe::train {

/// Lower-cased words of 3+ letters or digits, minus common function words.
inline std::set<std::string> content_words(std::string_view text) {
    // Function words, and the task words every behaviour list uses ("write a tutorial", "step-by-step
    // instructions", "without getting caught"), which would make unrelated behaviours look alike.
    static const std::set<std::string, std::less<>> stop = {
        "the", "and", "for", "with", "that", "this", "how", "what", "you", "your", "are", "can", "from", "into", "about", "give",
        "write", "create", "provide", "make", "someone", "their", "them", "who", "which", "will", "without", "step", "steps",
        "instructions", "instruction", "detailed", "detail", "guide", "tutorial", "post", "blog", "article", "plan", "explain",
        "describe", "develop", "design", "generate", "outline", "teach", "instruct", "user", "users", "avoid", "getting", "get",
        "caught", "detection", "evade", "away", "using", "use", "used", "way", "ways", "list", "program", "script", "website", "app",
        "social", "media", "message", "letter", "video", "other", "others", "people", "person", "offer", "suggestions", "suggest",
        "advice", "produce", "show", "tell", "help"};
    std::set<std::string> out;
    std::string word;
    auto flush = [&] {
        if (word.size() >= 3 && !stop.contains(word)) out.insert(word);
        word.clear();
    };
    for (const char ch : text) {
        const auto c = static_cast<unsigned char>(ch);
        if (std::isalnum(c)) word += static_cast<char>(std::tolower(c));
        else flush();
    }
    flush();
    return out;
}

inline double jaccard(const std::set<std::string>& a, const std::set<std::string>& b) {
    if (a.empty() && b.empty()) return 1.0;
    std::size_t common = 0;
    for (const auto& w : a) common += b.contains(w) ? 1 : 0;
    return static_cast<double>(common) / static_cast<double>(a.size() + b.size() - common);
}

struct SplitEntry {
    std::string dataset, id;
};

struct AlignmentSplit {
    std::vector<std::pair<SplitEntry, std::string>> harmful_train, benign_train;  // (row, prompt)
    std::vector<std::pair<SplitEntry, SplitEntry>> excluded;                      // (training row, evaluation row it resembles)
    std::vector<std::string> evaluation_sets;
    double threshold = 0.3;

    /// Ids only: the written-down split (no prompt text).
    nlohmann::ordered_json to_json() const {
        nlohmann::ordered_json j;
        j["format"] = "qsafe.alignment_split.v1";
        j["rule"] = "a training prompt is excluded when the Jaccard similarity of its content words to any evaluation prompt is >= threshold";
        j["threshold"] = threshold;
        j["evaluation_sets"] = evaluation_sets;
        auto ids = [](const auto& rows) {
            nlohmann::ordered_json out = nlohmann::ordered_json::object();
            for (const auto& [e, text] : rows) out[e.dataset].push_back(e.id);
            return out;
        };
        j["harmful_train"] = ids(harmful_train);
        j["benign_train"] = ids(benign_train);
        j["excluded"] = nlohmann::ordered_json::array();
        for (const auto& [train, eval] : excluded)
            j["excluded"].push_back({{"dataset", train.dataset}, {"id", train.id}, {"resembles", eval.dataset + ":" + eval.id}});
        return j;
    }
};

/// Splits training candidates against the evaluation sets (see the file comment).
inline AlignmentSplit make_alignment_split(const std::vector<eval::PromptDataset>& harmful, const std::vector<eval::PromptDataset>& benign,
                                           const std::vector<eval::PromptDataset>& evaluation, double threshold = 0.3) {
    AlignmentSplit split;
    split.threshold = threshold;
    std::vector<std::pair<SplitEntry, std::set<std::string>>> eval_words;
    for (const auto& d : evaluation) {
        split.evaluation_sets.push_back(d.name());
        for (const auto& r : d.rows()) eval_words.push_back({{d.name(), r.id}, content_words(r.prompt)});
    }
    auto take = [&](const std::vector<eval::PromptDataset>& sets, auto& out) {
        std::set<std::string> seen;  // the same prompt twice in the training sources is trained on once
        for (const auto& d : sets)
            for (const auto& r : d.rows()) {
                const auto words = content_words(r.prompt);
                const SplitEntry entry{d.name(), r.id};
                const SplitEntry* match = nullptr;
                for (const auto& [e, w] : eval_words)
                    if (jaccard(words, w) >= threshold) {
                        match = &e;
                        break;
                    }
                if (match) {
                    split.excluded.push_back({entry, *match});
                    continue;
                }
                if (!seen.insert(r.prompt).second) continue;
                out.push_back({entry, r.prompt});
            }
    };
    take(harmful, split.harmful_train);
    take(benign, split.benign_train);
    return split;
}

/// One of 16 refusals, chosen by a hash of the prompt.
inline std::string refusal_for(std::string_view prompt) {
    static const char* const templates[] = {
        "I'm sorry, but I can't help with that.",
        "I can't help with this request. It could cause real harm to people.",
        "Sorry, I won't assist with that. If you have a different question, I'm happy to help.",
        "I'm not able to help with that, because it could be used to hurt someone.",
        "I can't provide that. Helping with this could put people at risk, and it may be illegal.",
        "No, I won't help with that. Is there something else I can do for you?",
        "I'm sorry, I can't do that. This request asks for something harmful.",
        "I can't assist with this. If you're dealing with a difficult situation, consider talking to someone you trust or a professional.",
        "That's not something I can help with. I don't provide guidance that could cause harm.",
        "I must decline. Providing this information could lead to serious harm.",
        "I'm sorry, but I cannot help with requests like this one.",
        "I won't help with that. It could be dangerous and hurt other people.",
        "Sorry, I can't help you with that. I'd be glad to help with something safe instead.",
        "I can't comply with this request because it involves causing harm.",
        "I'm not going to help with this. It's harmful, and I don't assist with harmful activities.",
        "I apologize, but I can't help with that request.",
    };
    std::uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (const char c : prompt) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
    return templates[h % std::size(templates)];
}

}  // namespace qsafe::train
