// Spec loaders: hand-made tokenizer.json documents (byte-level and SentencePiece-style) and small GGUF files
// written with gguf::Writer; malformed inputs must fail with errors that name the file and the key.
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <qsafe/io/gguf.hpp>
#include <qsafe/tokenizer/from_gguf.hpp>
#include <qsafe/tokenizer/from_tokenizer_json.hpp>
#include <qsafe/tokenizer/tokenizer.hpp>

#include "tokenizer/test_vocabs.hpp"

using namespace qsafe::tokenizer;
using qsafe::test::check_throws_naming;
using Json = nlohmann::json;
using Ids = std::vector<TokenId>;

namespace {

std::filesystem::path scratch(const std::string& name) {
    const auto dir = std::filesystem::temp_directory_path() / ("qsafe_test_tokenizer_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir / name);
    return dir / name;
}

/// SmolLM2-like tokenizer.json: byte alphabet + two merges, Digits + ByteLevel, two special added tokens.
Json byte_level_json() {
    Json vocab = Json::object();
    for (int b = 0; b < 256; ++b) vocab[byte_alphabet().text(static_cast<std::uint8_t>(b))] = b;
    vocab["he"] = 256;
    vocab["hel"] = 257;
    vocab["<|im_start|>"] = 258;
    vocab["<|im_end|>"] = 259;
    return Json{
        {"added_tokens", Json::array({Json{{"id", 258}, {"content", "<|im_start|>"}, {"special", true}},
                                      Json{{"id", 259}, {"content", "<|im_end|>"}, {"special", true}}})},
        {"normalizer", nullptr},
        {"pre_tokenizer",
         {{"type", "Sequence"},
          {"pretokenizers",
           Json::array({Json{{"type", "Digits"}, {"individual_digits", true}},
                        Json{{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}})}}},
        {"decoder", {{"type", "ByteLevel"}}},
        {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", Json::array({"h e", Json::array({"he", "l"})})}}}};
}

/// Llama-2-like tokenizer.json: byte_fallback, Prepend/Replace normalizer, <0xAB> tokens, merges.
Json sentencepiece_json() {
    Json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
    for (int b = 0; b < 256; ++b) vocab[SentencePieceBpe::byte_token_text(static_cast<std::uint8_t>(b))] = 3 + b;
    int next = 259;
    for (const char* piece : {"\xE2\x96\x81", "h", "i", "hi", "\xE2\x96\x81hi"}) vocab[piece] = next++;
    return Json{
        {"added_tokens", Json::array({Json{{"id", 0}, {"content", "<unk>"}, {"special", true}},
                                      Json{{"id", 1}, {"content", "<s>"}, {"special", true}},
                                      Json{{"id", 2}, {"content", "</s>"}, {"special", true}}})},
        {"normalizer",
         {{"type", "Sequence"},
          {"normalizers",
           Json::array({Json{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}},
                        Json{{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}}})}}},
        {"pre_tokenizer", nullptr},
        {"post_processor",
         {{"type", "TemplateProcessing"},
          {"single", Json::array({Json{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                  Json{{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})}}},
        {"decoder", {{"type", "Sequence"}, {"decoders", Json::array({Json{{"type", "ByteFallback"}}})}}},
        {"model",
         {{"type", "BPE"},
          {"byte_fallback", true},
          {"unk_token", "<unk>"},
          {"vocab", vocab},
          {"merges", Json::array({"h i", "\xE2\x96\x81 hi"})}}}};
}

}  // namespace

TEST_CASE("tokenizer.json: byte-level BPE with Digits pre-tokenizer and special added tokens") {
    const Json config = {{"bos_token", "<|im_start|>"},
                         {"eos_token", {{"content", "<|im_end|>"}}},
                         {"chat_template", "{{'<|im_start|>' + message['role']}}"}};
    const TokenizerSpec spec = spec_from_tokenizer_json(byte_level_json(), config);
    CHECK(spec.model == ModelKind::byte_level_bpe);
    CHECK(spec.pre == "smollm");
    CHECK(spec.merges == std::vector<std::string>{"h e", "he l"});
    CHECK(spec.bos_id == 258);
    CHECK(spec.eos_id == 259);
    CHECK_FALSE(spec.add_bos);
    CHECK(spec.types[258] == TokenType::control);
    CHECK(spec.chat_template.starts_with("{{'<|im_start|>'"));
    const Tokenizer t(spec);
    CHECK(t.encode("<|im_start|>hel12", {.parse_special = true}) == Ids{258, 257, '1', '2'});
    CHECK(t.is_end_of_generation(259));
}

TEST_CASE("tokenizer.json: SentencePiece-style BPE with byte fallback, dummy prefix and BOS from the template") {
    const TokenizerSpec spec = spec_from_tokenizer_json(sentencepiece_json(), Json());
    CHECK(spec.model == ModelKind::sentencepiece_bpe);
    CHECK(spec.add_space_prefix);
    CHECK(spec.add_bos);  // from TemplateProcessing, since there is no tokenizer_config.json
    CHECK(spec.unk_id == 0);
    CHECK(spec.types[3 + 0xC3] == TokenType::byte);
    CHECK(spec.types[1] == TokenType::control);
    const Tokenizer t(spec);
    CHECK(t.encode("hi\xC3\xA9") == Ids{1, 263, 3 + 0xC3, 3 + 0xA9});  // <s> ▁hi <0xC3> <0xA9>
    CHECK(t.decode(t.encode("hi\xC3\xA9 hi")) == "hi\xC3\xA9 hi");
}

TEST_CASE("tokenizer.json from files: tokenizer_config.json next to it is read") {
    const auto dir = scratch("json_files");
    std::ofstream(dir / "tokenizer.json") << byte_level_json().dump();
    std::ofstream(dir / "tokenizer_config.json") << Json{{"eos_token", "<|im_end|>"}, {"add_bos_token", false}}.dump();
    const TokenizerSpec spec = spec_from_tokenizer_json(dir / "tokenizer.json");
    CHECK(spec.eos_id == 259);
    CHECK(spec.origin.ends_with("tokenizer.json"));
    std::ofstream(dir / "broken.json") << "{\"model\": ";
    check_throws_naming<qsafe::format_error>([&] { spec_from_tokenizer_json(dir / "broken.json"); }, {"broken.json"});
    check_throws_naming<qsafe::io_error>([&] { spec_from_tokenizer_json(dir / "missing.json"); }, {"missing.json"});
}

TEST_CASE("tokenizer.json: unsupported or inconsistent documents name the key") {
    Json unigram = byte_level_json();
    unigram["model"]["type"] = "Unigram";
    check_throws_naming<qsafe::config_error>([&] { spec_from_tokenizer_json(unigram, Json(), "u.json"); },
                                             {"u.json", "model.type", "Unigram"});
    Json gap = byte_level_json();
    gap["model"]["vocab"].erase("he");
    check_throws_naming<qsafe::format_error>([&] { spec_from_tokenizer_json(gap, Json()); }, {"model.vocab", "256"});
    // An id far beyond the entries cannot be gapless: refused before a table of 5*10^7 entries is made.
    Json far = byte_level_json();
    far["model"]["vocab"]["far"] = 50000000;
    check_throws_naming<qsafe::format_error>([&] { spec_from_tokenizer_json(far, Json()); },
                                             {"model.vocab", "'far'", "id 50000000", "263 tokens are listed", "without gaps"});
    Json far_added = byte_level_json();
    far_added["added_tokens"].push_back(Json{{"id", 4000000000LL}, {"content", "<x>"}});
    check_throws_naming<qsafe::format_error>([&] { spec_from_tokenizer_json(far_added, Json()); }, {"added_tokens", "bad token id 4000000000"});
    Json odd_pre = byte_level_json();
    odd_pre["pre_tokenizer"] = {{"type", "Whitespace"}, {"x", 1}};
    odd_pre["decoder"] = {{"type", "ByteLevel"}};
    check_throws_naming<qsafe::config_error>([&] { spec_from_tokenizer_json(odd_pre, Json()); }, {"pre_tokenizer"});
    Json bad_merge = byte_level_json();
    bad_merge["model"]["merges"] = Json::array({"h zz"});
    check_throws_naming<qsafe::format_error>([&] { Tokenizer(spec_from_tokenizer_json(bad_merge, Json())); },
                                             {"merges[0]", "zz"});
    check_throws_naming<qsafe::format_error>(
        [&] {
            spec_from_tokenizer_json(byte_level_json(), Json{{"bos_token", "<nope>"}});
        },
        {"bos_token", "<nope>"});
    check_throws_naming<qsafe::format_error>(
        [&] {
            spec_from_tokenizer_json(Json{{"x", 1}}, Json());
        },
        {"malformed tokenizer JSON"});
}

TEST_CASE("GGUF: spec from tokenizer.ggml.* metadata, llama.cpp defaults, malformed metadata names the key") {
    using qsafe::gguf::Value;
    const auto path = scratch("gguf") / "tok.gguf";
    const auto tokens = qsafe::test::byte_level_spec({{"h", "e"}}, {{"<|im_end|>", TokenType::control}}).tokens;
    std::vector<std::int32_t> types(tokens.size(), 1);
    types.back() = 3;
    const auto write = [&](auto&& edit) {
        qsafe::gguf::Writer w;
        w.set("tokenizer.ggml.model", "gpt2");
        w.set("tokenizer.ggml.pre", "smollm");
        w.set("tokenizer.ggml.tokens", Value::array_of(tokens));
        w.set("tokenizer.ggml.token_type", Value::array_of(types));
        w.set("tokenizer.ggml.merges", Value::array_of(std::vector<std::string>{"h e"}));
        w.set("tokenizer.ggml.eos_token_id", std::uint32_t{257});
        w.set("tokenizer.ggml.add_bos_token", false);
        w.set("tokenizer.chat_template", "{{'<|im_start|>'}}");
        edit(w);
        w.write(path);
    };
    write([](auto&) {});
    const TokenizerSpec spec = spec_from_gguf(path);
    CHECK(spec.model == ModelKind::byte_level_bpe);
    CHECK(spec.pre == "smollm");
    CHECK(spec.eos_id == 257);
    CHECK(spec.types[257] == TokenType::control);
    CHECK(spec.chat_template == "{{'<|im_start|>'}}");
    CHECK(Tokenizer(spec).encode("he") == Ids{256});

    write([](auto& w) { w.set("tokenizer.ggml.model", "bert"); });
    check_throws_naming<qsafe::config_error>([&] { spec_from_gguf(path); },
                                             {"tok.gguf", "tokenizer.ggml.model", "bert"});
    write([](auto& w) { w.set("tokenizer.ggml.pre", "bogus"); });
    check_throws_naming<qsafe::config_error>([&] { spec_from_gguf(path); },
                                             {"tok.gguf", "tokenizer.ggml.pre", "bogus"});
    write([](auto& w) { w.set("tokenizer.ggml.eos_token_id", std::uint32_t{9999}); });
    check_throws_naming<qsafe::format_error>([&] { spec_from_gguf(path); }, {"tokenizer.ggml.eos_token_id", "9999"});
    write([](auto& w) {
        w.set("tokenizer.ggml.merges", Value::array_of(std::vector<std::string>{"h \xC3\xA9\xC3\xA9"}));
    });
    check_throws_naming<qsafe::format_error>([&] { Tokenizer(spec_from_gguf(path)); },
                                             {"tok.gguf", "tokenizer.ggml.merges[0]", "unknown token"});
    write([](auto& w) { w.set("tokenizer.ggml.scores", Value::array_of(std::vector<float>{1.0f, 2.0f})); });
    check_throws_naming<qsafe::format_error>([&] { Tokenizer(spec_from_gguf(path)); }, {"tokenizer.ggml.scores"});
    write([](auto& w) { w.set("tokenizer.ggml.tokens", 3u); });
    check_throws_naming<qsafe::format_error>([&] { spec_from_gguf(path); }, {"tokenizer.ggml.tokens"});
}

TEST_CASE("spec validation: merge syntax, duplicate tokens, token types, empty vocabulary") {
    auto spec = qsafe::test::byte_level_spec({{"h", "e"}});
    spec.merges = {"he"};
    check_throws_naming<qsafe::format_error>([&] { Tokenizer{spec}; }, {"merges[0]", "two tokens"});
    spec.merges = {"h e", "q h"};
    spec.tokens.push_back("qh");
    spec.types.push_back(TokenType::normal);
    CHECK_NOTHROW(Tokenizer{spec});
    spec.merges.push_back("e h");  // "eh" is not a token
    check_throws_naming<qsafe::format_error>([&] { Tokenizer{spec}; }, {"merges[2]", "merged token"});
    auto dup = qsafe::test::byte_level_spec({});
    dup.tokens.push_back("a");
    dup.types.push_back(TokenType::normal);
    check_throws_naming<qsafe::format_error>([&] { Tokenizer{dup}; }, {"tokenizer.ggml.tokens[256]", "already has id"});
    auto bad_type = qsafe::test::byte_level_spec({});
    bad_type.types[5] = static_cast<TokenType>(42);
    check_throws_naming<qsafe::format_error>([&] { Tokenizer{bad_type}; }, {"token_type[5]", "42"});
    check_throws_naming<qsafe::format_error>([] { Tokenizer{TokenizerSpec{}}; }, {"empty"});
    check_throws_naming<qsafe::config_error>([] { model_kind_from_name("wpm", "x.gguf"); },
                                             {"x.gguf", "tokenizer.ggml.model", "wpm"});
}
