// The tokenizer on the real SmolLM2-135M-Instruct GGUF: exact ids against the reference tokenizer
// (tests/fixtures/smollm2/tokenizer_cases.json, produced with llama-cpp-python), round trips, and the chat
// prompt. The model is looked up in $QSAFE_CACHE_DIR or ~/.cache/qsafe; without it the checks are skipped.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <qsafe/tokenizer/chat_template.hpp>
#include <qsafe/tokenizer/from_gguf.hpp>
#include <qsafe/tokenizer/from_tokenizer_json.hpp>
#include <qsafe/tokenizer/tokenizer.hpp>

#include "common/skip.hpp"

using namespace qsafe::tokenizer;
using Ids = std::vector<TokenId>;

namespace {

constexpr const char* model_file = "SmolLM2-135M-Instruct.Q4_1.gguf";

std::optional<std::filesystem::path> find_model() {
    std::vector<std::filesystem::path> candidates;
    if (const char* dir = std::getenv("QSAFE_CACHE_DIR"))
        candidates.emplace_back(std::filesystem::path(dir) / model_file);
    if (const char* home = std::getenv("HOME"))
        candidates.emplace_back(std::filesystem::path(home) / ".cache" / "qsafe" / model_file);
    for (const auto& c : candidates)
        if (std::filesystem::exists(c)) return c;
    return std::nullopt;
}

/// Loaded once for all test cases (49k tokens, 49k merges).
const Tokenizer* smollm2() {
    static const std::optional<Tokenizer> tokenizer = []() -> std::optional<Tokenizer> {
        const auto path = find_model();
        if (!path) return std::nullopt;
        return Tokenizer(spec_from_gguf(*path));
    }();
    if (!tokenizer) {
        test_fixtures::skip_test(std::string(model_file) + " not found in $QSAFE_CACHE_DIR or ~/.cache/qsafe "
                                 "(scripts/fetch_model.sh fetches it)");
        return nullptr;
    }
    return &*tokenizer;
}

}  // namespace

TEST_CASE("SmolLM2 GGUF: tokenizer metadata") {
    const Tokenizer* t = smollm2();
    if (t == nullptr) return;
    CHECK(t->model_kind() == ModelKind::byte_level_bpe);
    CHECK(t->spec().pre == "smollm");
    CHECK(t->size() == 49152);
    CHECK(t->spec().merges.size() == 48900);
    CHECK(t->bos_id() == 1);  // <|im_start|>
    CHECK(t->eos_id() == 2);  // <|im_end|>
    CHECK(t->eot_id() == 2);
    CHECK_FALSE(t->spec().add_bos);
    CHECK(t->is_end_of_generation(0));  // <|endoftext|>
    CHECK(t->is_end_of_generation(2));
    CHECK_FALSE(t->is_end_of_generation(1));
}

TEST_CASE("SmolLM2 GGUF: known encodings (checked against Hugging Face tokenizers)") {
    const Tokenizer* t = smollm2();
    if (t == nullptr) return;
    CHECK(t->encode("Hello world") == Ids{19556, 905});
    CHECK(t->encode("I've 12345 apples!!  \n\n  ok") ==
          Ids{57, 3543, 216, 33, 34, 35, 36, 37, 13855, 10095, 256, 8866, 10907});
    CHECK(t->encode("<|im_start|>user\nhi<|im_end|>", {.parse_special = true}) == Ids{1, 4093, 198, 6004, 2});
    const Ids spelled = t->encode("<|im_start|>");
    CHECK(spelled.size() > 1);  // without parse_special the control token is plain text
    CHECK(t->decode(spelled) == "<|im_start|>");
}

TEST_CASE("SmolLM2 GGUF: exact agreement with the reference tokenizer fixture") {
    const Tokenizer* t = smollm2();
    if (t == nullptr) return;
    // $QSAFE_TOKENIZER_CASES points at another case file of the same layout (e.g. a larger local one).
    const char* override_path = std::getenv("QSAFE_TOKENIZER_CASES");
    const auto fixture = override_path != nullptr
                             ? std::filesystem::path(override_path)
                             : std::filesystem::path(QSAFE_FIXTURE_DIR) / "smollm2" / "tokenizer_cases.json";
    INFO("the case file is committed (tests/fixtures/smollm2) or named by $QSAFE_TOKENIZER_CASES: " << fixture.string());
    REQUIRE(std::filesystem::exists(fixture));
    const nlohmann::json doc = detail::parse_json_file(fixture);
    const nlohmann::json& cases = doc.is_array() ? doc : doc.at("cases");
    REQUIRE(!cases.empty());
    std::size_t matched = 0;
    // Field names are read tolerantly: the fixture's exact layout was not fixed when this test was written.
    const auto first_of = [](const nlohmann::json& c,
                             std::initializer_list<const char*> keys) -> const nlohmann::json* {
        for (const char* k : keys)
            if (c.contains(k)) return &c.at(k);
        return nullptr;
    };
    for (const auto& c : cases) {
        const std::string text = first_of(c, {"text", "prompt", "input"})->get<std::string>();
        const bool parse_special = c.value("parse_special", c.value("special", false));
        const bool add_bos = c.value("add_bos", c.value("add_special", false));
        const auto want = first_of(c, {"ids", "tokens", "token_ids"})->get<Ids>();
        CAPTURE(text);
        CAPTURE(parse_special);
        const Ids got = t->encode(text, {.add_bos = add_bos, .parse_special = parse_special});
        CHECK(got == want);
        CHECK(t->decode(got, {.render_special = parse_special}) == text);
        if (const auto* decoded = first_of(c, {"decoded", "detokenized", "decoded_text"})) {
            const std::string ref = decoded->get<std::string>();
            CHECK((t->decode(want) == ref || t->decode(want, {.render_special = true}) == ref));
        }
        if (got == want) ++matched;
    }
    MESSAGE(matched << " of " << cases.size() << " fixture cases match the reference ids exactly");
    CHECK(matched == cases.size());
}

TEST_CASE("SmolLM2 GGUF: decode(encode(s)) == s, invalid UTF-8 included") {
    const Tokenizer* t = smollm2();
    if (t == nullptr) return;
    for (const std::string s :
         {"", " ", "  leading and trailing  ", "naïve café 日本語 😀👍🏽 ½ ٣", "\t\r\n\x01\x7F",
          "code:\n    return x**2  # ok", "bad \x80\xBF utf-8 \xC3 \xE2\x82 \xF0"}) {
        CAPTURE(s);
        CHECK(t->decode(t->encode(s)) == s);
        CHECK(t->decode(t->encode(s, {.parse_special = true}), {.render_special = true}) == s);
    }
    // SmolLM2 has no token for 21 bytes (0x04, 0xF5-0xFF, ...): they are dropped, as by llama.cpp and HF.
    CHECK(t->decode(t->encode("a\x04"
                              "b\xFF")) == "ab");
    // streaming: concatenated pieces equal the decoded text
    const Ids ids = t->encode("Streaming 😀 works.");
    std::string streamed;
    for (const TokenId id : ids) streamed += t->token_to_piece(id);
    CHECK(streamed == "Streaming 😀 works.");
}

TEST_CASE("SmolLM2 GGUF: chat template from metadata, prompt encodes with the control tokens") {
    const Tokenizer* t = smollm2();
    if (t == nullptr) return;
    const ChatTemplate chat = ChatTemplate::from_jinja(t->spec().chat_template);
    CHECK(chat.family() == ChatFamily::chatml);
    CHECK(chat.default_system_prompt() ==
          std::string("You are a helpful AI assistant named SmolLM, trained by Hugging Face"));
    const std::vector<Message> conversation = {{"user", "What is 2+2?"}};
    const std::string prompt = chat.format(conversation, true);
    const Ids ids = t->encode(prompt, {.parse_special = true});
    CHECK(ids.front() == 1);
    CHECK(ids.back() == 198);  // "\n" after "<|im_start|>assistant"
    CHECK(std::count(ids.begin(), ids.end(), 1) == 3);
    CHECK(std::count(ids.begin(), ids.end(), 2) == 2);
    CHECK(t->decode(ids, {.render_special = true}) == prompt);
}
