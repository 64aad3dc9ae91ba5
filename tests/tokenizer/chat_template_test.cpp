// Chat templates on fixed conversations, with the expected prompts written out; family detection from the
// Jinja sources models ship, and SmolLM2's default system prompt.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include <qsafe/tokenizer/chat_template.hpp>

#include "tokenizer/test_vocabs.hpp"

using namespace qsafe::tokenizer;

namespace {
// tokenizer.chat_template of SmolLM2-135M-Instruct (GGUF), verbatim: real newlines inside the literals.
const std::string smollm2_jinja =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n"
    "' + message['content'] + '<|im_end|>' + '\n"
    "'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n"
    "' }}{% endif %}";

// Qwen2-style: escaped "\n" inside the Jinja string literal.
const std::string qwen2_jinja =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}";

const std::string llama2_jinja =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
    "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}{% if loop.index0 == 0 and system_message != false %}{% set content = "
    "'<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = "
    "message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + "
    "' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}"
    "{% endfor %}";

const std::string mistral_v1_jinja =
    "{{- bos_token }}{%- for message in loop_messages %}{%- if message['role'] == 'user' %}{%- if loop.first and "
    "system_message is defined %}{{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}"
    "{%- else %}{{- ' [INST] ' + message['content'] + ' [/INST]' }}{%- endif %}{%- elif message['role'] == "
    "'assistant' %}{{- ' ' + message['content'] + eos_token}}{%- endif %}{%- endfor %}";

const std::string mistral_v3_jinja =
    "{{- bos_token }}{%- for message in loop_messages %}{%- if message[\"role\"] == \"user\" %}{%- if loop.last and "
    "system_message is defined %}{{- \"[INST] \" + system_message + \"\\n\\n\" + message[\"content\"] + \"[/INST]\" }}"
    "{%- else %}{{- \"[INST] \" + message[\"content\"] + \"[/INST]\" }}{%- endif %}{%- elif message[\"role\"] == "
    "\"assistant\" %}{{- \" \" + message[\"content\"]|trim + eos_token}}{%- endif %}{%- endfor %}";

const std::string llama3_jinja =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

const std::vector<Message> with_system = {
    {"system", "Be brief."}, {"user", "Hi!"}, {"assistant", " Hello. "}, {"user", "How do I bake bread?"}};
const std::vector<Message> without_system = {{"user", "Hi!"}, {"assistant", "Hello."}, {"user", "Why?"}};
}  // namespace

TEST_CASE("chat template detection from the Jinja sources") {
    CHECK(detect_chat_family(smollm2_jinja) == ChatFamily::chatml);
    CHECK(detect_chat_family(qwen2_jinja) == ChatFamily::chatml);
    CHECK(detect_chat_family(llama2_jinja) == ChatFamily::llama2);
    CHECK(detect_chat_family(mistral_v1_jinja) == ChatFamily::mistral_v1);
    CHECK(detect_chat_family(mistral_v3_jinja) == ChatFamily::mistral_v3);
    CHECK(detect_chat_family(llama3_jinja) == ChatFamily::llama3);
    CHECK_FALSE(detect_chat_family("{{ messages }}").has_value());
    qsafe::test::check_throws_naming<qsafe::config_error>([] { ChatTemplate::from_jinja("{{ messages }}"); },
                                                          {"tokenizer.chat_template"});
    CHECK(ChatTemplate::from_jinja("{{ messages }}", "llama3").family() == ChatFamily::llama3);
    CHECK(ChatTemplate::from_jinja(smollm2_jinja, "mistral").family() == ChatFamily::mistral_v1);
    qsafe::test::check_throws_naming<qsafe::config_error>([] { chat_family_from_name("vicuna"); }, {"vicuna"});
}

TEST_CASE("ChatML (SmolLM2): default system prompt when none is given, exactly as the template writes it") {
    const ChatTemplate t = ChatTemplate::from_jinja(smollm2_jinja);
    REQUIRE(t.default_system_prompt() ==
            std::string("You are a helpful AI assistant named SmolLM, trained by Hugging Face"));
    CHECK(t.format(without_system) ==
          "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
          "<|im_start|>user\nHi!<|im_end|>\n"
          "<|im_start|>assistant\nHello.<|im_end|>\n"
          "<|im_start|>user\nWhy?<|im_end|>\n"
          "<|im_start|>assistant\n");
    CHECK(t.format(with_system, false) ==
          "<|im_start|>system\nBe brief.<|im_end|>\n"
          "<|im_start|>user\nHi!<|im_end|>\n"
          "<|im_start|>assistant\n Hello. <|im_end|>\n"
          "<|im_start|>user\nHow do I bake bread?<|im_end|>\n");
    CHECK(t.format({}, true) == "<|im_start|>assistant\n");  // the default sits inside the message loop
    CHECK(ChatTemplate::from_jinja(qwen2_jinja).default_system_prompt() == std::string("You are a helpful assistant."));
    CHECK_FALSE(ChatTemplate(ChatFamily::chatml).default_system_prompt().has_value());
}

TEST_CASE("Llama 2: <<SYS>> in the first [INST], stripped contents, later turns open with <s>") {
    const ChatTemplate t = ChatTemplate::from_jinja(llama2_jinja);
    CHECK(t.format(with_system) ==
          "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi! [/INST] Hello. </s><s>[INST] How do I bake bread? [/INST]");
    CHECK(t.format(without_system) == "[INST] Hi! [/INST] Hello. </s><s>[INST] Why? [/INST]");
}

TEST_CASE("Mistral v1: ' [INST] ', system prompt in the first user turn") {
    const ChatTemplate t(ChatFamily::mistral_v1);
    CHECK(t.format(with_system) == " [INST] Be brief.\n\nHi! [/INST]  Hello. </s> [INST] How do I bake bread? [/INST]");
    CHECK(t.format(without_system) == " [INST] Hi! [/INST] Hello.</s> [INST] Why? [/INST]");
}

TEST_CASE("Mistral v3: '[INST] ', system prompt in the last user turn, trimmed answers") {
    const ChatTemplate t(ChatFamily::mistral_v3);
    CHECK(t.format(with_system) == "[INST] Hi![/INST] Hello.</s>[INST] Be brief.\n\nHow do I bake bread?[/INST]");
}

TEST_CASE("Llama 3: header per message, trimmed contents, assistant header as generation prompt") {
    const ChatTemplate t = ChatTemplate::from_jinja(llama3_jinja);
    CHECK(t.format(with_system) ==
          "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
          "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
          "<|start_header_id|>user<|end_header_id|>\n\nHow do I bake bread?<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\n");
    CHECK(t.format(without_system, false).ends_with("Why?<|eot_id|>"));
}

TEST_CASE("[INST] formats reject conversations that do not alternate user / assistant") {
    const std::vector<Message> bad = {{"user", "a"}, {"user", "b"}};
    qsafe::test::check_throws_naming<qsafe::config_error>([&] { ChatTemplate(ChatFamily::llama2).format(bad); },
                                                          {"llama2", "alternate", "message 1"});
}
