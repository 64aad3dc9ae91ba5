#pragma once
// SentencePiece-style BPE (GGUF `tokenizer.ggml.model` = "llama": Llama 2, Mistral, TinyLlama ...). Spaces are
// written as "▁" (U+2581) and, when the model asks for it, a "▁" is prepended to each text run (the "dummy
// prefix"). Starting from single characters, the adjacent pair whose concatenation is the best token is merged
// until none is left: "best" is the highest score (GGUF scores, as SentencePiece and llama.cpp) or, when the
// spec carries merges (Hugging Face tokenizer.json), the lowest merge rank. Ties go to the leftmost pair.
// Characters without a token fall back to their UTF-8 bytes as <0xAB> tokens; this also makes invalid UTF-8
// input round-trip, each stray byte becoming its own byte token (the unknown token if the model has none).
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <qsafe/core/error.hpp>
#include <qsafe/tokenizer/byte_level_bpe.hpp>
#include <qsafe/tokenizer/unicode.hpp>
#include <qsafe/tokenizer/vocabulary.hpp>

namespace qsafe::tokenizer {

inline constexpr std::string_view space_marker = "\xE2\x96\x81";  // U+2581 "▁"

class SentencePieceBpe {
public:
    SentencePieceBpe(const Vocabulary& vocab, const TokenizerSpec& spec) : unk_id_(spec.unk_id) {
        if (!spec.merges.empty()) rules_ = detail::parse_merges(vocab, spec.merges);
        use_merges_ = !spec.merges.empty();
        for (std::size_t b = 0; b < 256; ++b) {
            const auto id = vocab.find(byte_token_text(static_cast<std::uint8_t>(b)));
            byte_ids_[b] = id ? *id : -1;
        }
    }

    /// "<0xAB>", the text of the byte-fallback token for a byte.
    static std::string byte_token_text(std::uint8_t b) {
        constexpr char digits[] = "0123456789ABCDEF";
        return {'<', '0', 'x', digits[b >> 4], digits[b & 15], '>'};
    }

    /// The byte a "<0xAB>" token stands for, or nullopt for any other text.
    static std::optional<std::uint8_t> parse_byte_token(std::string_view text) noexcept {
        if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>') return std::nullopt;
        int value = 0;
        for (const char c : text.substr(3, 2)) {
            const int d = c >= '0' && c <= '9'   ? c - '0'
                          : c >= 'A' && c <= 'F' ? c - 'A' + 10
                          : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                                 : -1;
            if (d < 0) return std::nullopt;
            value = value * 16 + d;
        }
        return static_cast<std::uint8_t>(value);
    }

    /// Spaces -> "▁", with an optional leading "▁".
    static std::string escape(std::string_view text, bool add_prefix) {
        std::string out;
        out.reserve(text.size() + 3);
        if (add_prefix) out += space_marker;
        for (const char c : text) {
            if (c == ' ') {
                out += space_marker;
            } else {
                out += c;
            }
        }
        return out;
    }

    /// A normal token's text with "▁" turned back into spaces.
    static std::string decode_token_text(std::string_view token_text) {
        std::string out;
        out.reserve(token_text.size());
        for (std::size_t pos = 0; pos < token_text.size();) {
            if (token_text.substr(pos, space_marker.size()) == space_marker) {
                out += ' ';
                pos += space_marker.size();
            } else {
                out += token_text[pos++];
            }
        }
        return out;
    }

    /// Appends the ids of one text run (no special-token handling: see Tokenizer).
    void encode(const Vocabulary& vocab, std::string_view raw, bool add_prefix, std::vector<TokenId>& out) const {
        const std::string text = escape(raw, add_prefix);
        struct Symbol {
            std::size_t begin, end, prev, next;
            TokenId id;
            bool alive;
        };
        struct Candidate {
            double priority;
            std::size_t left, left_end, right_end;
            TokenId result;
            bool operator<(const Candidate& o) const noexcept {  // max-heap: best priority, then leftmost
                return priority != o.priority ? priority < o.priority : left > o.left;
            }
        };
        std::vector<Symbol> sym;
        for (const Utf8Unit& u : split_utf8(text)) {
            const std::size_t i = sym.size();
            sym.push_back(
                {u.offset, u.offset + u.length, i - 1, i + 1, lookup(vocab, text.substr(u.offset, u.length)), true});
        }
        const std::size_t n = sym.size();
        std::priority_queue<Candidate> queue;
        const auto push = [&](std::size_t left) {
            if (left >= n || sym[left].next >= n) return;
            const Symbol& l = sym[left];
            const Symbol& r = sym[l.next];
            if (use_merges_) {
                if (l.id < 0 || r.id < 0) return;
                const auto it = rules_.find(detail::pair_key(l.id, r.id));
                if (it != rules_.end()) queue.push({-double(it->second.rank), left, l.end, r.end, it->second.result});
            } else {
                const TokenId id = lookup(vocab, std::string_view(text).substr(l.begin, r.end - l.begin));
                if (id >= 0) queue.push({double(vocab.score(id)), left, l.end, r.end, id});
            }
        };
        for (std::size_t i = 0; i + 1 < n; ++i) push(i);
        while (!queue.empty()) {
            const Candidate c = queue.top();
            queue.pop();
            Symbol& l = sym[c.left];
            if (!l.alive || l.end != c.left_end || l.next >= n || sym[l.next].end != c.right_end) continue;  // stale
            Symbol& r = sym[l.next];
            l.end = r.end;
            l.id = c.result;
            l.next = r.next;
            r.alive = false;
            if (r.next < n) sym[r.next].prev = c.left;
            push(l.prev);
            push(c.left);
        }
        for (std::size_t i = 0; i < n; ++i) {
            if (!sym[i].alive) continue;
            if (sym[i].id >= 0) {
                out.push_back(sym[i].id);
                continue;
            }
            for (std::size_t k = sym[i].begin; k < sym[i].end; ++k) {
                const auto b = static_cast<std::uint8_t>(text[k]);
                if (byte_ids_[b] >= 0) {
                    out.push_back(byte_ids_[b]);
                } else if (unk_id_) {
                    out.push_back(*unk_id_);
                } else {
                    throw format_error(vocab.origin() + ": tokenizer.ggml.tokens: no token for byte " +
                                       byte_token_text(b) + " and no unknown token (tokenizer.ggml.unknown_token_id)");
                }
            }
        }
    }

private:
    /// Id of a piece that may take part in merging: normal (or user-defined / unused) tokens only, so text
    /// like "<s>" never turns into a control token.
    static TokenId lookup(const Vocabulary& vocab, std::string_view piece) {
        const auto id = vocab.find(piece);
        if (!id) return -1;
        const TokenType t = vocab.type(*id);
        if (t == TokenType::control || t == TokenType::unknown || t == TokenType::byte) return -1;
        return *id;
    }

    std::optional<TokenId> unk_id_;
    bool use_merges_ = false;
    std::unordered_map<std::uint64_t, detail::MergeRule> rules_;
    std::array<TokenId, 256> byte_ids_{};
};

}  // namespace qsafe::tokenizer
