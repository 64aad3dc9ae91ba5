#pragma once
// Pre-tokenizers of byte-level BPE models: the regex splits of GPT-2, SmolLM2 (= StarCoder: every digit
// isolated, then GPT-2), Llama 3 and Qwen2, written by hand over code points because std::regex has no \p{L}.
// Each function reproduces leftmost-first alternation of its regex, with the lookahead (?!\S) seeing only the
// current chunk, as Hugging Face tokenizers and llama.cpp do.
//   gpt2:   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   llama3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
//           \s*[\r\n]+|\s+(?!\S)|\s+          (qwen2: the same with \p{N} instead of \p{N}{1,3})
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include <qsafe/core/error.hpp>
#include <qsafe/tokenizer/unicode.hpp>

namespace qsafe::tokenizer {

enum class PreTokenizer {
    gpt2,    ///< GPT-2 regex
    smollm,  ///< digits split one by one, then the GPT-2 regex (SmolLM, StarCoder, Refact, Command-R, ...)
    llama3,  ///< Llama 3 regex (numbers in groups of up to three)
    qwen2,   ///< Qwen2 regex (Llama 3's with single digits)
};

/// Maps a GGUF `tokenizer.ggml.pre` name (with llama.cpp's aliases) to the split it stands for.
inline PreTokenizer pre_tokenizer_from_name(std::string_view name, std::string_view origin = "tokenizer") {
    for (std::string_view n : {"gpt2", "gpt-2", "phi-2", "mpt", "olmo", "jais", "roberta-bpe"})
        if (name == n) return PreTokenizer::gpt2;
    for (std::string_view n : {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"})
        if (name == n) return PreTokenizer::smollm;
    for (std::string_view n : {"llama3", "llama-v3", "llama-bpe", "falcon3", "dbrx", "smaug-bpe", "chatglm-bpe"})
        if (name == n) return PreTokenizer::llama3;
    for (std::string_view n : {"qwen2", "stablelm2", "megrez"})
        if (name == n) return PreTokenizer::qwen2;
    throw config_error(std::string(origin) + ": tokenizer.ggml.pre: unsupported pre-tokenizer '" + std::string(name) +
                       "' (supported: gpt2, smollm, llama3, qwen2 and their llama.cpp aliases)");
}

/// Llama 3 style vocabularies emit a whole word as one token when it is in the vocabulary (llama.cpp and HF
/// `ignore_merges`).
inline bool pre_tokenizer_ignores_merges(std::string_view name) noexcept {
    return name == "llama3" || name == "llama-v3" || name == "llama-bpe" || name == "falcon3";
}

namespace detail {

struct CharFlags {
    char32_t cp = 0;
    bool letter = false, number = false, space = false;
};

class ChunkSplitter {
public:
    ChunkSplitter(const std::vector<CharFlags>& chars, std::size_t end, std::vector<std::size_t>& cuts)
        : chars_(chars), end_(end), cuts_(cuts) {}

    bool in(std::size_t i) const noexcept { return i < end_; }
    char32_t cp(std::size_t i) const noexcept { return in(i) ? chars_[i].cp : 0; }
    bool letter(std::size_t i) const noexcept { return in(i) && chars_[i].letter; }
    bool number(std::size_t i) const noexcept { return in(i) && chars_[i].number; }
    bool space(std::size_t i) const noexcept { return in(i) && chars_[i].space; }
    /// [^\s\p{L}\p{N}]: any character (or invalid byte) that is not whitespace, letter or number.
    bool other(std::size_t i) const noexcept {
        return in(i) && !chars_[i].space && !chars_[i].letter && !chars_[i].number;
    }
    static bool is_crlf(char32_t c) noexcept { return c == U'\r' || c == U'\n'; }
    static char32_t lower_ascii(char32_t c) noexcept { return c >= U'A' && c <= U'Z' ? c + 32 : c; }

    /// Length of a contraction ('s 't 're 've 'm 'll 'd) starting at i, 0 if none.
    std::size_t contraction(std::size_t i, bool ignore_case) const noexcept {
        if (cp(i) != U'\'' || !in(i + 1)) return 0;
        const auto low = [&](std::size_t k) { return ignore_case ? lower_ascii(cp(k)) : cp(k); };
        const char32_t a = low(i + 1);
        if (a == U's' || a == U't' || a == U'm' || a == U'd') return 2;
        if (!in(i + 2)) return 0;
        const char32_t b = low(i + 2);
        if ((a == U'r' && b == U'e') || (a == U'v' && b == U'e') || (a == U'l' && b == U'l')) return 3;
        return 0;
    }

    /// \s+(?!\S) then \s+ for the whitespace run at i; 0 if i is not whitespace.
    std::size_t trailing_space_run(std::size_t i) const noexcept {
        std::size_t n = 0;
        while (space(i + n)) ++n;
        if (n > 1 && in(i + n)) return n - 1;  // leave the last space to prefix the next word
        return n;
    }

    void gpt2(std::size_t pos) {
        while (pos < end_) {
            std::size_t len = contraction(pos, false);
            if (len == 0) {
                const std::size_t body = cp(pos) == U' ' ? pos + 1 : pos;  // optional leading space
                if (letter(body)) {
                    len = run(body, &ChunkSplitter::letter) - pos;
                } else if (number(body)) {
                    len = run(body, &ChunkSplitter::number) - pos;
                } else if (other(body)) {
                    len = run(body, &ChunkSplitter::other) - pos;
                } else {
                    len = trailing_space_run(pos);
                    if (len == 0) len = 1;
                }
            }
            pos = cut(pos + len);
        }
    }

    void llama3(std::size_t pos, std::size_t max_digits) {
        while (pos < end_) {
            std::size_t len = contraction(pos, true);
            if (len == 0 && !is_crlf(cp(pos)) && !number(pos) && (letter(pos) || letter(pos + 1))) {
                len = run(pos + 1, &ChunkSplitter::letter) - pos;  // [^\r\n\p{L}\p{N}]?\p{L}+
            }
            if (len == 0 && number(pos)) {
                while (number(pos + len) && len < max_digits) ++len;
            }
            if (len == 0) {
                const std::size_t body = cp(pos) == U' ' ? pos + 1 : pos;
                if (other(body)) {  //  ?[^\s\p{L}\p{N}]+[\r\n]*
                    std::size_t e = run(body, &ChunkSplitter::other);
                    while (in(e) && is_crlf(cp(e))) ++e;
                    len = e - pos;
                }
            }
            if (len == 0) {  // \s*[\r\n]+ : the whitespace run up to its last \r or \n
                std::size_t last_crlf = 0;
                for (std::size_t k = pos; space(k); ++k)
                    if (is_crlf(cp(k))) last_crlf = k + 1;
                len = last_crlf > 0 ? last_crlf - pos : trailing_space_run(pos);
                if (len == 0) len = 1;
            }
            pos = cut(pos + len);
        }
    }

private:
    std::size_t run(std::size_t i, bool (ChunkSplitter::*pred)(std::size_t) const noexcept) const noexcept {
        while ((this->*pred)(i)) ++i;
        return i;
    }
    std::size_t cut(std::size_t at) {
        cuts_.push_back(at);
        return at;
    }

    const std::vector<CharFlags>& chars_;
    std::size_t end_;
    std::vector<std::size_t>& cuts_;
};

}  // namespace detail

/// Splits `text` into the words BPE merges within. The words are views into `text`, in order, and together
/// cover it exactly. Invalid UTF-8 bytes are kept, each treated as a non-letter, non-number character.
inline std::vector<std::string_view> pre_tokenize(PreTokenizer kind, std::string_view text) {
    const std::vector<Utf8Unit> units = split_utf8(text);
    std::vector<detail::CharFlags> chars(units.size());
    for (std::size_t i = 0; i < units.size(); ++i) {
        const CharInfo info = units[i].valid ? char_info(units[i].code_point) : CharInfo{};
        chars[i] = {units[i].code_point, info.is_letter(), info.is_number(), info.whitespace};
    }
    // Chunk boundaries (in units) from the digit split, if any; the regex then runs inside each chunk.
    std::vector<std::size_t> chunk_ends;
    if (kind == PreTokenizer::smollm) {
        for (std::size_t i = 0; i < chars.size(); ++i) {
            if (chars[i].number) {
                if (chunk_ends.empty() ? i > 0 : chunk_ends.back() < i) chunk_ends.push_back(i);
                chunk_ends.push_back(i + 1);
            }
        }
    }
    if (chunk_ends.empty() || chunk_ends.back() != chars.size()) chunk_ends.push_back(chars.size());

    std::vector<std::size_t> cuts;
    std::size_t begin = 0;
    for (const std::size_t end : chunk_ends) {
        detail::ChunkSplitter splitter(chars, end, cuts);
        if (kind == PreTokenizer::llama3 || kind == PreTokenizer::qwen2)
            splitter.llama3(begin, kind == PreTokenizer::llama3 ? 3 : 1);
        else
            splitter.gpt2(begin);
        begin = end;
    }
    std::vector<std::string_view> words;
    words.reserve(cuts.size());
    std::size_t from = 0;
    for (const std::size_t to : cuts) {
        if (to == from) continue;
        const std::size_t b = units[from].offset;
        const std::size_t e = to < units.size() ? units[to].offset : text.size();
        words.push_back(text.substr(b, e - b));
        from = to;
    }
    return words;
}

}  // namespace qsafe::tokenizer
