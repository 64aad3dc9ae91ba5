// UTF-8 units, the generated Unicode class table, and the hand-written pre-tokenizer splits on known inputs.
#include <doctest/doctest.h>

#include <string>
#include <string_view>
#include <vector>

#include <qsafe/tokenizer/pre_tokenizer.hpp>
#include <qsafe/tokenizer/unicode.hpp>

#include "tokenizer/test_vocabs.hpp"

using namespace qsafe::tokenizer;

namespace {
std::vector<std::string> split(PreTokenizer kind, std::string_view text) {
    std::vector<std::string> out;
    for (const auto w : pre_tokenize(kind, text)) out.emplace_back(w);
    return out;
}
using Words = std::vector<std::string>;
}  // namespace

TEST_CASE("utf8: valid sequences decode to code points, invalid bytes become single-byte units") {
    const auto units = split_utf8("a\xC3\xA9\xE2\x96\x81\xF0\x9F\x98\x80");
    REQUIRE(units.size() == 4);
    CHECK(units[1].code_point == U'é');
    CHECK(units[2].code_point == U'\u2581');
    CHECK(units[3].code_point == U'\U0001F600');
    CHECK(units[3].offset == 6);
    CHECK(is_valid_utf8("a\xC3\xA9"));
    // stray continuation, overlong '/', surrogate U+D800, truncated sequence, beyond U+10FFFF
    for (const std::string_view bad : {"\x80", "\xC0\xAF", "\xED\xA0\x80", "\xE2\x96", "\xF4\x90\x80\x80"}) {
        CAPTURE(std::string(bad));
        CHECK_FALSE(is_valid_utf8(bad));
        const auto u = split_utf8(bad);
        CHECK(u.size() == bad.size());  // every byte its own invalid unit
        CHECK_FALSE(u[0].valid);
    }
    std::string s;
    for (const char32_t cp : {U'A', U'é', U'中', U'\U0001F600'}) append_utf8(s, cp);
    CHECK(s == "A\xC3\xA9\xE4\xB8\xAD\xF0\x9F\x98\x80");
}

TEST_CASE("unicode table: general category classes and White_Space") {
    CHECK(char_info(U'a').is_letter());
    CHECK(char_info(U'中').is_letter());
    CHECK(char_info(U'7').is_number());
    CHECK(char_info(U'½').is_number());  // No
    CHECK(char_info(U'Ⅻ').is_number());  // Nl
    CHECK(char_info(U'٣').is_number());  // Arabic-Indic digit, Nd
    CHECK(char_info(U'\u0301').cls == CharClass::mark);
    CHECK(char_info(U'!').cls == CharClass::punctuation);
    CHECK(char_info(U'$').cls == CharClass::symbol);
    CHECK(char_info(U'\U0001F600').cls == CharClass::symbol);
    CHECK(char_info(U' ').whitespace);
    CHECK(char_info(U'\u00A0').whitespace);
    CHECK(char_info(U'\u3000').whitespace);
    CHECK(char_info(U'\n').whitespace);
    CHECK(char_info(U'\n').cls == CharClass::other);
    CHECK_FALSE(char_info(U'\u200B').whitespace);  // zero width space is Cf, not White_Space
    CHECK(char_info(0x10FFFF).cls == CharClass::unassigned);
    CHECK(char_info(0x110000).cls == CharClass::invalid);
}

TEST_CASE(
    "pre-tokenizer gpt2: contractions, optional leading space, whitespace runs keep one space for the next word") {
    CHECK(split(PreTokenizer::gpt2, "I've 12 apples!!  \n\n  ok") ==
          Words{"I", "'ve", " 12", " apples", "!!", "  \n\n ", " ok"});
    CHECK(split(PreTokenizer::gpt2, "DON'T") == Words{"DON", "'", "T"});  // case-sensitive contractions
    CHECK(split(PreTokenizer::gpt2, "end   ") == Words{"end", "   "});
    CHECK(split(PreTokenizer::gpt2, "") == Words{});
}

TEST_CASE("pre-tokenizer smollm: every digit isolated before the GPT-2 split") {
    CHECK(split(PreTokenizer::smollm, "I have 12345 apples") ==
          Words{"I", " have", " ", "1", "2", "3", "4", "5", " apples"});
    CHECK(split(PreTokenizer::smollm, "x٣½") == Words{"x", "٣", "½"});
}

TEST_CASE("pre-tokenizer llama3 / qwen2: case-insensitive contractions, digit groups, newline runs") {
    CHECK(split(PreTokenizer::llama3, "DON'T 1234567 ok\n\n  x") ==
          Words{"DON", "'T", " ", "123", "456", "7", " ok", "\n\n", " ", " x"});
    CHECK(split(PreTokenizer::qwen2, "a 123") == Words{"a", " ", "1", "2", "3"});
    CHECK(split(PreTokenizer::llama3, "$hello...\n\nworld") == Words{"$hello", "...\n\n", "world"});
}

TEST_CASE("pre-tokenizer: invalid UTF-8 bytes are kept and every byte is covered exactly once") {
    const std::string text = "ab\xFF\xFE cd \xC3";
    for (const auto kind : {PreTokenizer::gpt2, PreTokenizer::smollm, PreTokenizer::llama3, PreTokenizer::qwen2}) {
        std::string joined;
        for (const auto w : pre_tokenize(kind, text)) joined += w;
        CHECK(joined == text);
    }
    CHECK(split(PreTokenizer::gpt2, text) == Words{"ab", "\xFF\xFE", " cd", " \xC3"});
}

TEST_CASE("pre-tokenizer names: llama.cpp aliases resolve, unknown names name the key") {
    CHECK(pre_tokenizer_from_name("smollm") == PreTokenizer::smollm);
    CHECK(pre_tokenizer_from_name("starcoder") == PreTokenizer::smollm);
    CHECK(pre_tokenizer_from_name("llama-bpe") == PreTokenizer::llama3);
    CHECK(pre_tokenizer_from_name("qwen2") == PreTokenizer::qwen2);
    CHECK(pre_tokenizer_from_name("gpt-2") == PreTokenizer::gpt2);
    qsafe::test::check_throws_naming<qsafe::config_error>([] { pre_tokenizer_from_name("bogus", "m.gguf"); },
                                                          {"m.gguf", "tokenizer.ggml.pre", "bogus"});
}
