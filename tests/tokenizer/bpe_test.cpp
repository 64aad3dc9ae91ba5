// Both BPE kinds on small hand-made vocabularies: merge order by rank / score, byte fallback, special and
// user-defined tokens, invalid UTF-8, round trips, end-of-generation tokens.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include <qsafe/tokenizer/tokenizer.hpp>

#include "tokenizer/test_vocabs.hpp"

using namespace qsafe::tokenizer;
using qsafe::test::byte_level_spec;
using qsafe::test::sentencepiece_spec;
using Ids = std::vector<TokenId>;

namespace {
TokenId byte_id(char c) { return static_cast<TokenId>(static_cast<unsigned char>(c)); }  // see byte_level_spec
TokenId id_of(const Tokenizer& t, std::string_view text) { return t.vocabulary().find(text).value(); }
}  // namespace

TEST_CASE("byte-level BPE: merges apply by rank, not by position") {
    // "helo": pairs he / el / lo exist. With "e l" ranked first, "el" blocks both "he" and "lo".
    const Tokenizer el_first(byte_level_spec({{"e", "l"}, {"h", "e"}, {"l", "o"}}));
    CHECK(el_first.encode("helo") == Ids{byte_id('h'), 256, byte_id('o')});
    const Tokenizer he_first(byte_level_spec({{"h", "e"}, {"e", "l"}, {"l", "o"}}));
    CHECK(he_first.encode("helo") == Ids{256, 258});  // he + lo
}

TEST_CASE("byte-level BPE: equal ranks merge leftmost first, merged symbols merge again") {
    const Tokenizer t(byte_level_spec({{"l", "l"}, {"ll", "o"}, {"h", "e"}, {"he", "llo"}}));
    CHECK(t.encode("lll") == Ids{256, byte_id('l')});
    CHECK(t.encode("hello") == Ids{259});
    CHECK(t.decode(t.encode("hello")) == "hello");
}

TEST_CASE("byte-level BPE: spaces and control bytes use the GPT-2 alphabet, and words do not merge across the split") {
    const Tokenizer t(byte_level_spec({{"\xC4\xA0", "a"}, {"a", "\xC4\xA0"}}));  // "Ġa", "aĠ"
    CHECK(byte_alphabet().text(' ') == "\xC4\xA0");                              // Ġ
    CHECK(byte_alphabet().text('\n') == "\xC4\x8A");                             // Ċ
    CHECK(t.encode("a a") == Ids{byte_id('a'), 256});  // "a" | " a": "aĠ" never forms across words
    for (const std::string& s : std::vector<std::string>{"a a", "\t\n \r", std::string("\0x\x7F", 3)})
        CHECK(t.decode(t.encode(s)) == s);
}

TEST_CASE("byte-level BPE: invalid UTF-8 is encoded byte by byte and decodes to the same bytes") {
    const Tokenizer t(byte_level_spec({{"a", "b"}}));
    const std::string text = "ab\xFF\xFE\xC3";
    CHECK(t.encode(text) == Ids{256, 0xFF, 0xFE, 0xC3});
    CHECK(t.decode(t.encode(text)) == text);
}

TEST_CASE("byte-level BPE: bytes without a token are dropped (as llama.cpp / HF), never mapped to <unk>") {
    auto spec = byte_level_spec({}, {{"<|endoftext|>", TokenType::control}});
    spec.tokens[0xFF] = "<unused-ff>";  // the vocabulary has no token for byte 0xFF
    spec.unk_id = 256;
    const Tokenizer t(spec);
    CHECK(t.encode("a\xFF"
                   "b") == Ids{byte_id('a'), byte_id('b')});
}

TEST_CASE("byte-level BPE: ignore_merges emits whole-word tokens directly (Llama 3)") {
    auto spec = byte_level_spec({{"a", "b"}, {"b", "c"}}, {}, "llama3");
    spec.tokens.push_back("abc");  // reachable only as a whole word
    spec.types.push_back(TokenType::normal);
    CHECK(Tokenizer(spec).encode("abc") == Ids{256, byte_id('c')});
    spec.ignore_merges = true;
    CHECK(Tokenizer(spec).encode("abc") == Ids{258});
}

TEST_CASE("special tokens: control tokens only with parse_special, user-defined always, longest first") {
    const Tokenizer t(byte_level_spec(
        {},
        {{"<|im_start|>", TokenType::control}, {"<|im", TokenType::control}, {"<extra>", TokenType::user_defined}}));
    const TokenId im_start = id_of(t, "<|im_start|>");
    const TokenId extra = id_of(t, "<extra>");
    const Ids with = t.encode("x<|im_start|>y<extra>", {.parse_special = true});
    CHECK(with == Ids{byte_id('x'), im_start, byte_id('y'), extra});
    const Ids without = t.encode("x<|im_start|>y<extra>");
    CHECK(without.size() == 1 + 12 + 1 + 1);  // the control token spelled out in bytes
    CHECK(without.back() == extra);
    // decode: control tokens are hidden unless rendered; user-defined tokens are text
    CHECK(t.decode(with) == "xy<extra>");
    CHECK(t.decode(with, {.render_special = true}) == "x<|im_start|>y<extra>");
    CHECK(t.decode(without) == "x<|im_start|>y<extra>");
    CHECK(t.token_to_piece(im_start).empty());
    CHECK(t.token_to_piece(im_start, true) == "<|im_start|>");
}

TEST_CASE("BOS / EOS: model flags by default, overridable per call") {
    auto spec = byte_level_spec({}, {{"<s>", TokenType::control}, {"</s>", TokenType::control}});
    spec.bos_id = 256;
    spec.eos_id = 257;
    spec.add_bos = true;
    const Tokenizer t(spec);
    CHECK(t.encode("a") == Ids{256, byte_id('a')});
    CHECK(t.encode("a", {.add_bos = false}) == Ids{byte_id('a')});
    CHECK(t.encode("a", {.add_bos = false, .add_eos = true}) == Ids{byte_id('a'), 257});
    CHECK(t.encode("") == Ids{256});
    CHECK(t.is_end_of_generation(257));
    CHECK_FALSE(t.is_end_of_generation(256));
    qsafe::test::check_throws_naming<qsafe::config_error>(
        [] { Tokenizer(byte_level_spec({})).encode("a", {.add_bos = true}); }, {"bos_token_id"});
}

TEST_CASE("end of generation: EOS plus turn-end tokens found by text, and EOT defaults to <|im_end|>") {
    auto spec = byte_level_spec({}, {{"<|endoftext|>", TokenType::control}, {"<|im_end|>", TokenType::control}});
    spec.eos_id = 256;
    const Tokenizer t(spec);
    CHECK(t.is_end_of_generation(256));
    CHECK(t.is_end_of_generation(257));
    CHECK(t.eot_id() == 257);
    CHECK_FALSE(t.is_end_of_generation(byte_id('a')));
}

TEST_CASE("SentencePiece BPE: highest score merges first, dummy prefix, decode removes it") {
    // "▁hello": ▁h (score -5) vs he (-1) vs ll (-2) ... the best pair wins each step.
    const Tokenizer t(sentencepiece_spec({{"\xE2\x96\x81", -10},
                                          {"h", -10},
                                          {"e", -10},
                                          {"l", -10},
                                          {"o", -10},
                                          {"he", -1},
                                          {"ll", -2},
                                          {"llo", -3},
                                          {"hello", -4},
                                          {"\xE2\x96\x81h", -5},
                                          {"\xE2\x96\x81hello", -6}}));
    const TokenId hello = id_of(t, "hello");
    const TokenId marker = id_of(t, "\xE2\x96\x81");
    // he, ll, llo, hello, then ▁+hello: ▁h never forms because "he" (-1) beat it.
    CHECK(t.encode("hello", {.add_bos = false}) == Ids{id_of(t, "\xE2\x96\x81hello")});
    CHECK(t.encode("hello hello", {.add_bos = false}) ==
          Ids{id_of(t, "\xE2\x96\x81hello"), id_of(t, "\xE2\x96\x81hello")});
    CHECK(t.encode("hello") == Ids{1, id_of(t, "\xE2\x96\x81hello")});
    CHECK(t.encode(" hello", {.add_bos = false}) == Ids{marker, id_of(t, "\xE2\x96\x81hello")});
    CHECK(t.encode("ohello", {.add_bos = false}).back() == hello);
    for (const std::string s : {"hello", " hello", "hello  hello ", "", "o"}) {
        CAPTURE(s);
        CHECK(t.decode(t.encode(s)) == s);
    }
    CHECK(t.token_to_piece(id_of(t, "\xE2\x96\x81hello")) == " hello");  // streaming keeps the space
}

TEST_CASE("SentencePiece BPE: characters without a token fall back to <0xAB> byte tokens") {
    const Tokenizer t(sentencepiece_spec({{"\xE2\x96\x81", -1}, {"h", -1}}));
    const TokenId byte_c3 = id_of(t, "<0xC3>");
    const TokenId byte_a9 = id_of(t, "<0xA9>");
    CHECK(t.encode("h\xC3\xA9", {.add_bos = false}) == Ids{id_of(t, "\xE2\x96\x81"), id_of(t, "h"), byte_c3, byte_a9});
    CHECK(t.decode(t.encode("h\xC3\xA9")) == "h\xC3\xA9");
    // invalid UTF-8: each stray byte is its own byte token, so the bytes round-trip
    const std::string bad = "h\xFF\xC3";
    CHECK(t.encode(bad, {.add_bos = false}) ==
          Ids{id_of(t, "\xE2\x96\x81"), id_of(t, "h"), id_of(t, "<0xFF>"), byte_c3});
    CHECK(t.decode(t.encode(bad)) == bad);
    CHECK(t.token_to_piece(byte_c3) == "\xC3");
}

TEST_CASE("SentencePiece BPE: without byte tokens, unknown characters become <unk>") {
    const Tokenizer t(sentencepiece_spec({{"\xE2\x96\x81", -1}, {"h", -1}}, false));
    CHECK(t.encode("h\xC3\xA9", {.add_bos = false}) == Ids{3, 4, 0, 0});  // one <unk> per byte
    CHECK(t.decode(t.encode("h\xC3\xA9")) == "h");
}

TEST_CASE("SentencePiece BPE: special tokens split the text and each run gets the dummy prefix") {
    const Tokenizer t(sentencepiece_spec({{"\xE2\x96\x81", -10},
                                          {"a", -10},
                                          {"\xE2\x96\x81"
                                           "a",
                                           -1}}));
    const TokenId pa = id_of(t,
                             "\xE2\x96\x81"
                             "a");
    CHECK(t.encode("a</s>a", {.add_bos = false, .parse_special = true}) == Ids{pa, 2, pa});
    CHECK(t.decode(Ids{1, pa, 2, pa}, {.render_special = true}) == "<s>a</s>a");
    CHECK(t.decode(Ids{1, pa, 2, pa}) == "aa");
    // never merges into a control token, even if the text spells one
    const Ids spelled = t.encode("</s>", {.add_bos = false});
    CHECK(std::find(spelled.begin(), spelled.end(), 2) == spelled.end());
}

TEST_CASE("SentencePiece BPE: merges (tokenizer.json) take precedence over scores") {
    auto spec = sentencepiece_spec({{"a", 0}, {"b", 0}, {"c", 0}, {"ab", 5}, {"bc", 1}}, false);
    spec.add_space_prefix = false;
    CHECK(Tokenizer(spec).encode("abc", {.add_bos = false}) == Ids{6, 5});  // score: "ab" (5) wins
    spec.merges = {"b c", "a b"};
    CHECK(Tokenizer(spec).encode("abc", {.add_bos = false}) == Ids{3, 7});  // rank: "bc" first
}
