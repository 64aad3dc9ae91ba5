// libFuzzer harness: tokenizer loading and use (tokenizer/*.hpp). The first input byte picks the mode:
//   0: tokenizer.json (+ tokenizer_config.json next to it when the second part is not empty; the rest is split
//      by fuzz_common.hpp split_input), read by spec_from_tokenizer_json(path);
//   1: a GGUF file whose tokenizer.ggml.* metadata (model, tokens, BPE merges, SentencePiece scores, token
//      types, special ids, flags) is read by spec_from_gguf;
//   2: the rest is a Jinja chat template: family detection, default system prompt, ChatTemplate::format.
// When a spec loads, a Tokenizer is built from it (vocabulary checks, merge parsing, byte fallback) and encodes
// and decodes a fixed string and a slice of the input, and renders every token's piece; the spec's chat
// template goes through detection as in mode 2.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.hpp"
#include "qsafe/io/gguf.hpp"
#include "qsafe/tokenizer/chat_template.hpp"
#include "qsafe/tokenizer/from_gguf.hpp"
#include "qsafe/tokenizer/from_tokenizer_json.hpp"
#include "qsafe/tokenizer/tokenizer.hpp"

namespace {

using namespace qsafe::tokenizer;

void chat_template(std::string_view jinja) {
    qsafe_fuzz::consume(detect_chat_family(jinja));
    qsafe_fuzz::consume(default_system_prompt_of(jinja));
    try {
        const ChatTemplate t = ChatTemplate::from_jinja(jinja);
        const std::vector<Message> messages = {{"system", "Be brief."}, {"user", "Hi <|im_end|> [INST]"},
                                               {"assistant", "Hello."}, {"user", std::string(jinja.substr(0, 64))}};
        qsafe_fuzz::consume(t.format(messages, true));
        qsafe_fuzz::consume(t.format(std::span(messages).subspan(1, 1), false));
    } catch (const qsafe::error&) {
    }
    if (jinja.size() < 32) {
        try {
            qsafe_fuzz::consume(ChatTemplate::from_jinja("", jinja));
        } catch (const qsafe::error&) {
        }
    }
}

void round_trip(const Tokenizer& tok, std::string_view text) {
    for (const bool special : {false, true}) {
        const std::vector<TokenId> ids = tok.encode(text, {.parse_special = special});
        qsafe_fuzz::consume(tok.decode(ids, {.render_special = special}));
    }
}

void use(TokenizerSpec spec, std::string_view input) {
    const std::string jinja = spec.chat_template;
    const Tokenizer tok(std::move(spec));
    round_trip(tok, "Hello world! <|im_start|>user\n \xC3\xBCn\xC3\xAF c\xC3\xB6" "d\xC3\xA9 123 \xE2\x96\x81x <s></s>");
    round_trip(tok, input.substr(input.size() - std::min<std::size_t>(input.size(), 96)));
    const auto n = static_cast<TokenId>(std::min<std::size_t>(tok.size(), 4096));
    for (TokenId id = 0; id < n; ++id) qsafe_fuzz::consume(tok.token_to_piece(id, (id & 1) != 0));
    qsafe_fuzz::consume(tok.is_end_of_generation(0));
    if (!jinja.empty()) chat_template(jinja);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const int mode = data[0] % 3;
    ++data;
    --size;
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    try {
        if (mode == 0) {
            const auto parts = qsafe_fuzz::split_input(data, size);
            if (parts.second.empty())
                qsafe_fuzz::remove_file("tokenizer_config.json");
            else
                qsafe_fuzz::write_file("tokenizer_config.json", parts.second);
            const auto path = qsafe_fuzz::write_file("tokenizer.json", parts.first);
            use(spec_from_tokenizer_json(path), input);
        } else if (mode == 1) {
            const auto path = qsafe_fuzz::write_file("tokenizer.gguf", data, size);
            const auto file = qsafe::gguf::File::open(path);
            use(spec_from_gguf(file), input);
        } else {
            chat_template(input);
        }
    } catch (const qsafe::error& e) {
        qsafe_fuzz::rejected(e);
    }
    return 0;
}
