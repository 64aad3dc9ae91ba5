#pragma once
// Byte-level BPE (GPT-2 style, GGUF `tokenizer.ggml.model` = "gpt2"): text is pre-tokenized into words, each
// word's bytes are spelled in GPT-2's printable byte alphabet, and merges are applied lowest rank first
// (leftmost first among equal ranks), exactly like Hugging Face tokenizers and llama.cpp.
#include <array>
#include <cstddef>
#include <cstdint>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <qsafe/core/error.hpp>
#include <qsafe/tokenizer/pre_tokenizer.hpp>
#include <qsafe/tokenizer/unicode.hpp>
#include <qsafe/tokenizer/vocabulary.hpp>

namespace qsafe::tokenizer {

/// GPT-2's reversible byte <-> code point alphabet: printable Latin-1 bytes stand for themselves, the other 68
/// bytes (controls, space, ...) are moved to U+0100.. in byte order, so every token is printable text.
class ByteAlphabet {
public:
    ByteAlphabet() {
        char32_t next = 256;
        for (std::size_t b = 0; b < 256; ++b) {
            const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
            const char32_t cp = printable ? static_cast<char32_t>(b) : next++;
            code_points_[b] = cp;
            append_utf8(texts_[b], cp);
            if (cp >= bytes_.size()) bytes_.resize(cp + 1, -1);
            bytes_[cp] = static_cast<std::int16_t>(b);
        }
    }

    char32_t code_point(std::uint8_t byte) const noexcept { return code_points_[byte]; }
    const std::string& text(std::uint8_t byte) const noexcept { return texts_[byte]; }
    /// The byte a code point stands for, or -1 if it is not in the alphabet.
    int byte(char32_t cp) const noexcept { return cp < bytes_.size() ? bytes_[cp] : -1; }

    std::string encode(std::string_view raw) const {
        std::string out;
        out.reserve(raw.size() * 2);
        for (const char c : raw) out += texts_[static_cast<std::uint8_t>(c)];
        return out;
    }

    /// Inverse of encode. Characters outside the alphabet (never produced by encode) are kept as UTF-8.
    std::string decode(std::string_view text) const {
        std::string out;
        out.reserve(text.size());
        for (std::size_t pos = 0; pos < text.size();) {
            const Utf8Unit u = decode_utf8_unit(text, pos);
            const int b = u.valid ? byte(u.code_point) : -1;
            if (b >= 0) {
                out += static_cast<char>(b);
            } else {
                out.append(text.substr(pos, u.length));
            }
            pos += u.length;
        }
        return out;
    }

private:
    std::array<char32_t, 256> code_points_{};
    std::array<std::string, 256> texts_{};
    std::vector<std::int16_t> bytes_;
};

inline const ByteAlphabet& byte_alphabet() {
    static const ByteAlphabet alphabet;
    return alphabet;
}

namespace detail {

struct MergeRule {
    std::int32_t rank = 0;
    TokenId result = 0;
};

inline std::uint64_t pair_key(TokenId left, TokenId right) noexcept {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) | static_cast<std::uint32_t>(right);
}

/// Parses "left right" merges against the vocabulary; every part and the joined result must be tokens.
inline std::unordered_map<std::uint64_t, MergeRule> parse_merges(const Vocabulary& vocab,
                                                                 const std::vector<std::string>& merges) {
    std::unordered_map<std::uint64_t, MergeRule> rules;
    rules.reserve(merges.size());
    for (std::size_t i = 0; i < merges.size(); ++i) {
        const std::string& m = merges[i];
        const std::string where = vocab.origin() + ": tokenizer.ggml.merges[" + std::to_string(i) + "] '" + m + "': ";
        const std::size_t space = m.find(' ', 1);
        if (space == std::string::npos || space + 1 >= m.size())
            throw format_error(where + "expected two tokens separated by a space");
        const std::string_view left = std::string_view(m).substr(0, space);
        const std::string_view right = std::string_view(m).substr(space + 1);
        const auto l = vocab.find(left);
        const auto r = vocab.find(right);
        const auto joined = vocab.find(std::string(left) + std::string(right));
        if (!l) throw format_error(where + "unknown token '" + std::string(left) + "'");
        if (!r) throw format_error(where + "unknown token '" + std::string(right) + "'");
        if (!joined) throw format_error(where + "the merged token is not in the vocabulary");
        // A repeated pair keeps its first (lowest) rank, as in llama.cpp.
        rules.emplace(pair_key(*l, *r), MergeRule{static_cast<std::int32_t>(i), *joined});
    }
    return rules;
}

/// Applies rank-ordered merges to a sequence of symbols in place (ids; merged-away symbols are removed).
template <class RuleLookup>
void merge_by_rank(std::vector<TokenId>& ids, const RuleLookup& lookup) {
    struct Candidate {
        std::int32_t rank;
        std::size_t left;
        TokenId left_id, right_id, result;
        bool operator>(const Candidate& o) const noexcept { return rank != o.rank ? rank > o.rank : left > o.left; }
    };
    const std::size_t n = ids.size();
    if (n < 2) return;
    std::vector<std::size_t> prev(n), next(n);
    for (std::size_t i = 0; i < n; ++i) prev[i] = i - 1, next[i] = i + 1;  // i - 1 wraps for i = 0: "none"
    std::vector<bool> alive(n, true);
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
    const auto push = [&](std::size_t left) {
        if (left >= n || next[left] >= n) return;
        if (const MergeRule* rule = lookup(ids[left], ids[next[left]]))
            queue.push({rule->rank, left, ids[left], ids[next[left]], rule->result});
    };
    for (std::size_t i = 0; i + 1 < n; ++i) push(i);
    while (!queue.empty()) {
        const Candidate c = queue.top();
        queue.pop();
        const std::size_t right = next[c.left];
        if (!alive[c.left] || right >= n || ids[c.left] != c.left_id || ids[right] != c.right_id) continue;  // stale
        ids[c.left] = c.result;
        alive[right] = false;
        next[c.left] = next[right];
        if (next[right] < n) prev[next[right]] = c.left;
        push(prev[c.left]);
        push(c.left);
    }
    std::size_t out = 0;
    for (std::size_t i = 0; i < n; ++i)
        if (alive[i]) ids[out++] = ids[i];
    ids.resize(out);
}

}  // namespace detail

class ByteLevelBpe {
public:
    ByteLevelBpe(const Vocabulary& vocab, const TokenizerSpec& spec)
        : pre_(pre_tokenizer_from_name(spec.pre.empty() ? std::string_view("gpt2") : std::string_view(spec.pre),
                                       spec.origin)),
          ignore_merges_(spec.ignore_merges),
          rules_(detail::parse_merges(vocab, spec.merges)) {
        for (std::size_t b = 0; b < 256; ++b) {
            const auto id = vocab.find(byte_alphabet().text(static_cast<std::uint8_t>(b)));
            byte_ids_[b] = id ? *id : -1;
        }
    }

    PreTokenizer pre_tokenizer() const noexcept { return pre_; }

    /// Appends the ids of `text` (no special-token handling: see Tokenizer). Any byte sequence is accepted,
    /// invalid UTF-8 included, and decodes back to the same bytes as long as the vocabulary has a token for
    /// each of its bytes (the full GPT-2 alphabet); bytes without one are dropped.
    void encode(const Vocabulary& vocab, std::string_view text, std::vector<TokenId>& out) const {
        std::vector<TokenId> symbols;
        for (const std::string_view word : pre_tokenize(pre_, text)) {
            if (ignore_merges_) {
                if (const auto id = vocab.find(byte_alphabet().encode(word))) {
                    out.push_back(*id);
                    continue;
                }
            }
            symbols.clear();
            for (const char c : word) {
                // A byte without a token is dropped, as llama.cpp and Hugging Face do (SmolLM2 lacks 21 byte
                // tokens, e.g. 0x04 and 0xF5-0xFF); the unknown token is not used, since in byte-level GGUFs
                // it is often "<|endoftext|>", which would end the text.
                const TokenId id = byte_ids_[static_cast<std::uint8_t>(c)];
                if (id >= 0) symbols.push_back(id);
            }
            detail::merge_by_rank(symbols, [this](TokenId l, TokenId r) -> const detail::MergeRule* {
                const auto it = rules_.find(detail::pair_key(l, r));
                return it == rules_.end() ? nullptr : &it->second;
            });
            out.insert(out.end(), symbols.begin(), symbols.end());
        }
    }

    /// The bytes a normal token stands for.
    static std::string decode_token_text(std::string_view token_text) { return byte_alphabet().decode(token_text); }

private:
    PreTokenizer pre_;
    bool ignore_merges_;
    std::unordered_map<std::uint64_t, detail::MergeRule> rules_;
    std::array<TokenId, 256> byte_ids_{};
};

}  // namespace qsafe::tokenizer
