// Writes the inputs of the malformed-input table (tests/malformed/cases.cmake, docs/reliability.md) into a
// folder: a small valid model in both layouts (GGUF with its tokenizer and chat template; a Hugging Face
// folder), then copies of it and of small datasets broken in one way each. Files are made from qsafe's own
// writers and then corrupted at byte offsets found by reading the valid file back, so every case breaks
// exactly one thing.
//
//   make_malformed_inputs OUT_DIR              the model files and every case built from them
//   make_malformed_inputs --quantized IN OUT   the cases of a qsafe-quantized file IN (made by `qsafe quantize`)
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "qsafe/io/gguf.hpp"
#include "qsafe/io/safetensors.hpp"
#include "qsafe/tokenizer/byte_level_bpe.hpp"

namespace fs = std::filesystem;
using qsafe::gguf::Value;

namespace {

using Bytes = std::vector<unsigned char>;

Bytes read_all(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return Bytes(std::istreambuf_iterator<char>(in), {});
}
void write_all(const fs::path& p, const Bytes& b) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
    if (!out) throw std::runtime_error("cannot write " + p.string());
}
void write_text(const fs::path& p, const std::string& s) { write_all(p, Bytes(s.begin(), s.end())); }
template <class T>
void poke(Bytes& b, std::size_t offset, T value) {
    if (offset + sizeof(T) > b.size()) throw std::runtime_error("poke past the end");
    std::memcpy(b.data() + offset, &value, sizeof(T));
}
template <class T>
T peek(const Bytes& b, std::size_t offset) {
    T v;
    std::memcpy(&v, b.data() + offset, sizeof(T));
    return v;
}
std::size_t find(const Bytes& b, const std::string& needle, std::size_t from = 0) {
    for (std::size_t i = from; i + needle.size() <= b.size(); ++i)
        if (std::memcmp(b.data() + i, needle.data(), needle.size()) == 0) return i;
    throw std::runtime_error("'" + needle + "' not found");
}

// The tiny model: byte-level BPE (256 byte tokens, 3 merges, ChatML specials), 2 blocks, d=48, ff=80.
constexpr std::uint32_t d = 64, ff = 128, heads = 4, kv_heads = 2, layers = 2, ctx = 256;
const std::vector<std::pair<std::string, std::string>> merges = {{"h", "e"}, {"l", "l"}, {"he", "ll"}};
const std::vector<std::string> specials = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
const std::string chatml =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

std::vector<std::string> vocabulary() {
    std::vector<std::string> tokens;
    for (int b = 0; b < 256; ++b) tokens.push_back(qsafe::tokenizer::byte_alphabet().text(static_cast<std::uint8_t>(b)));
    for (const auto& [l, r] : merges) tokens.push_back(l + r);
    for (const auto& s : specials) tokens.push_back(s);
    return tokens;
}
std::uint32_t n_vocab() { return static_cast<std::uint32_t>(vocabulary().size()); }

struct Tensor {
    std::string gguf_name, hf_name;
    std::uint32_t rows, cols;  // rows = 1: a vector
    std::vector<float> values;
};

std::vector<Tensor> weights(std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> g(0.0f, 1.0f);
    std::vector<Tensor> out;
    auto mat = [&](std::string gn, std::string hn, std::uint32_t r, std::uint32_t c, bool norm) {
        Tensor t{std::move(gn), std::move(hn), r, c, std::vector<float>(std::size_t{r} * c)};
        for (auto& v : t.values) v = norm ? 1.0f + 0.1f * g(rng) : g(rng) / std::sqrt(static_cast<float>(c));
        out.push_back(std::move(t));
    };
    const std::uint32_t hd = d / heads;
    mat("token_embd.weight", "model.embed_tokens.weight", n_vocab(), d, false);
    for (std::uint32_t l = 0; l < layers; ++l) {
        const std::string g_ = "blk." + std::to_string(l) + ".", h = "model.layers." + std::to_string(l) + ".";
        mat(g_ + "attn_norm.weight", h + "input_layernorm.weight", 1, d, true);
        mat(g_ + "ffn_norm.weight", h + "post_attention_layernorm.weight", 1, d, true);
        mat(g_ + "attn_q.weight", h + "self_attn.q_proj.weight", heads * hd, d, false);
        mat(g_ + "attn_k.weight", h + "self_attn.k_proj.weight", kv_heads * hd, d, false);
        mat(g_ + "attn_v.weight", h + "self_attn.v_proj.weight", kv_heads * hd, d, false);
        mat(g_ + "attn_output.weight", h + "self_attn.o_proj.weight", d, heads * hd, false);
        mat(g_ + "ffn_gate.weight", h + "mlp.gate_proj.weight", ff, d, false);
        mat(g_ + "ffn_up.weight", h + "mlp.up_proj.weight", ff, d, false);
        mat(g_ + "ffn_down.weight", h + "mlp.down_proj.weight", d, ff, false);
    }
    mat("output_norm.weight", "model.norm.weight", 1, d, true);
    mat("output.weight", "lm_head.weight", n_vocab(), d, false);
    return out;
}

/// Options of one GGUF variant (the valid model when all are defaults).
struct GgufOptions {
    std::uint32_t head_count = heads, head_count_kv = kv_heads, block_count = layers, context = ctx, embedding = d;
    float freq_base = 10000.0f;
    std::uint32_t vocab_entries = 0;  // more than the vocabulary: extra tokens the embedding has no row for
    std::string chat_template = chatml;
    bool duplicate_key = false, drop_ffn_up = false, q8_0_ffn_down = false;
};

void write_gguf(const fs::path& path, const GgufOptions& o) {
    qsafe::gguf::Writer w;
    w.set("general.architecture", std::string("llama"));
    w.set("general.name", std::string("tiny-malformed-base"));
    w.set("llama.block_count", o.block_count);
    w.set("llama.context_length", o.context);
    w.set("llama.embedding_length", o.embedding);
    w.set("llama.feed_forward_length", ff);
    w.set("llama.attention.head_count", o.head_count);
    w.set("llama.attention.head_count_kv", o.head_count_kv);
    w.set("llama.rope.freq_base", o.freq_base);
    w.set("llama.attention.layer_norm_rms_epsilon", 1e-5f);
    auto tokens = vocabulary();
    for (std::uint32_t i = static_cast<std::uint32_t>(tokens.size()); i < o.vocab_entries; ++i) tokens.push_back("<|extra_" + std::to_string(i) + "|>");
    std::vector<std::int32_t> types(tokens.size(), 1);
    for (std::size_t i = 256 + merges.size(); i < types.size(); ++i) types[i] = 3;  // control
    std::vector<std::string> merge_lines;
    for (const auto& [l, r] : merges) merge_lines.push_back(l + " " + r);
    w.set("tokenizer.ggml.model", std::string("gpt2"));
    w.set("tokenizer.ggml.pre", std::string("smollm"));
    w.set("tokenizer.ggml.tokens", Value::array_of(tokens));
    w.set("tokenizer.ggml.token_type", Value::array_of(types));
    w.set("tokenizer.ggml.merges", Value::array_of(merge_lines));
    w.set("tokenizer.ggml.bos_token_id", std::uint32_t{259});
    w.set("tokenizer.ggml.eos_token_id", std::uint32_t{261});
    w.set("tokenizer.ggml.add_bos_token", false);
    w.set("tokenizer.chat_template", o.chat_template);
    if (o.duplicate_key) w.set("general.nXme", std::string("again"));  // made a duplicate byte-wise below
    for (const auto& t : weights(7)) {
        if (o.drop_ffn_up && t.gguf_name == "blk.1.ffn_up.weight") continue;
        std::vector<std::uint64_t> dims = t.rows == 1 ? std::vector<std::uint64_t>{t.cols} : std::vector<std::uint64_t>{t.cols, t.rows};
        if (o.q8_0_ffn_down && t.gguf_name == "blk.0.ffn_down.weight") {
            // Q8_0 blocks: fp16 scale + 32 int8 codes, a scale of 1/64 and codes from the values.
            std::vector<std::byte> blocks;
            for (std::size_t i = 0; i < t.values.size(); i += 32) {
                const std::uint16_t half_scale = 0x2400;  // 2^-6
                blocks.push_back(static_cast<std::byte>(half_scale & 0xFF));
                blocks.push_back(static_cast<std::byte>(half_scale >> 8));
                for (std::size_t j = 0; j < 32; ++j)
                    blocks.push_back(static_cast<std::byte>(static_cast<std::int8_t>(std::lround(std::clamp(t.values[i + j] * 64.0f, -127.0f, 127.0f)))));
            }
            w.add_tensor(t.gguf_name, dims, qsafe::GgmlType::Q8_0, std::move(blocks));
            continue;
        }
        w.add_tensor_f32(t.gguf_name, dims, t.values);
    }
    w.write(path);
}

void write_hf(const fs::path& dir) {
    fs::create_directories(dir);
    qsafe::safetensors::Writer st;
    for (const auto& t : weights(7)) {
        std::vector<std::uint64_t> shape = t.rows == 1 ? std::vector<std::uint64_t>{t.cols} : std::vector<std::uint64_t>{t.rows, t.cols};
        st.add_tensor_f32(t.hf_name, shape, t.values);
    }
    st.write(dir / "model.safetensors");
    nlohmann::json config = {{"architectures", {"LlamaForCausalLM"}}, {"hidden_size", d}, {"intermediate_size", ff},
                             {"num_attention_heads", heads}, {"num_key_value_heads", kv_heads}, {"num_hidden_layers", layers},
                             {"vocab_size", n_vocab()}, {"max_position_embeddings", ctx}, {"rope_theta", 10000.0},
                             {"rms_norm_eps", 1e-5}, {"tie_word_embeddings", false}};
    write_text(dir / "config.json", config.dump(2));
    nlohmann::json vocab = nlohmann::json::object();
    const auto tokens = vocabulary();
    for (std::size_t i = 0; i < 256 + merges.size(); ++i) vocab[tokens[i]] = i;
    nlohmann::json added = nlohmann::json::array();
    for (std::size_t i = 256 + merges.size(); i < tokens.size(); ++i)
        added.push_back({{"id", i}, {"content", tokens[i]}, {"special", true}, {"single_word", false}, {"lstrip", false},
                         {"rstrip", false}, {"normalized", false}});
    nlohmann::json merge_list = nlohmann::json::array();
    for (const auto& [l, r] : merges) merge_list.push_back(l + " " + r);
    nlohmann::json tok = {{"version", "1.0"}, {"added_tokens", added}, {"normalizer", nullptr},
                          {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}}},
                          {"decoder", {{"type", "ByteLevel"}}},
                          {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merge_list}}}};
    write_text(dir / "tokenizer.json", tok.dump(1));
    write_text(dir / "tokenizer_config.json", nlohmann::json{{"chat_template", chatml}}.dump(1));
}

/// Byte offsets inside a valid GGUF file, found by walking its header as the format defines it.
struct GgufLayout {
    std::size_t first_key = 24;                // u64 length of the first metadata key
    std::size_t tensor_infos = 0;              // first tensor info
    std::size_t data = 0;                      // start of the tensor data section
    std::vector<std::size_t> info_offset_at;   // per tensor: where its u64 data offset is stored
    std::vector<std::size_t> info_type_at;     // per tensor: where its u32 type is stored
    std::vector<std::size_t> info_dims_at;     // per tensor: where its first u64 dimension is stored
    std::vector<std::string> names;
    std::size_t key_at(const Bytes& b, const std::string& key) const { return find(b, key) - 8; }
};

GgufLayout layout_of(const Bytes& b) {
    GgufLayout L;
    const auto n_tensors = peek<std::uint64_t>(b, 8), n_kv = peek<std::uint64_t>(b, 16);
    std::size_t p = 24;
    auto skip_string = [&] { p += 8 + peek<std::uint64_t>(b, p); };
    std::function<void(std::uint32_t)> skip_value = [&](std::uint32_t type) {
        static const std::size_t sizes[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
        if (type == 8) return skip_string();
        if (type == 9) {
            const auto et = peek<std::uint32_t>(b, p);
            const auto n = peek<std::uint64_t>(b, p + 4);
            p += 12;
            for (std::uint64_t i = 0; i < n; ++i) skip_value(et);
            return;
        }
        p += sizes[type];
    };
    for (std::uint64_t i = 0; i < n_kv; ++i) {
        skip_string();
        const auto type = peek<std::uint32_t>(b, p);
        p += 4;
        skip_value(type);
    }
    L.tensor_infos = p;
    for (std::uint64_t i = 0; i < n_tensors; ++i) {
        const auto len = peek<std::uint64_t>(b, p);
        L.names.emplace_back(reinterpret_cast<const char*>(b.data() + p + 8), len);
        p += 8 + len;
        const auto n_dims = peek<std::uint32_t>(b, p);
        L.info_dims_at.push_back(p + 4);
        p += 4 + 8 * n_dims;
        L.info_type_at.push_back(p);
        p += 4;
        L.info_offset_at.push_back(p);
        p += 8;
    }
    L.data = (p + 31) / 32 * 32;
    return L;
}

std::size_t tensor_index(const GgufLayout& L, const std::string& name) {
    for (std::size_t i = 0; i < L.names.size(); ++i)
        if (L.names[i] == name) return i;
    throw std::runtime_error("no tensor " + name);
}

void make_gguf_cases(const fs::path& out) {
    const fs::path base = out / "tiny.gguf";
    write_gguf(base, {});
    const Bytes valid = read_all(base);
    const GgufLayout L = layout_of(valid);
    auto variant = [&](const std::string& name, auto&& edit) {
        Bytes b = valid;
        edit(b);
        write_all(out / name, b);
    };
    auto truncated = [&](const std::string& name, std::size_t size) { write_all(out / name, Bytes(valid.begin(), valid.begin() + static_cast<std::ptrdiff_t>(size))); };
    truncated("truncated-header.gguf", 13);
    truncated("truncated-metadata.gguf", L.tensor_infos / 2);
    truncated("truncated-tensor-infos.gguf", (L.tensor_infos + L.data) / 2);
    truncated("truncated-data.gguf", valid.size() - 1000);
    variant("bad-magic.gguf", [](Bytes& b) { std::memcpy(b.data(), "GGML", 4); });
    variant("version-4.gguf", [](Bytes& b) { poke<std::uint32_t>(b, 4, 4); });
    variant("version-1.gguf", [](Bytes& b) { poke<std::uint32_t>(b, 4, 1); });
    variant("string-length-2-63.gguf", [](Bytes& b) { poke<std::uint64_t>(b, 24, std::uint64_t{1} << 63); });
    variant("array-2-40-elements.gguf", [&](Bytes& b) {
        const std::size_t key = L.key_at(b, "tokenizer.ggml.merges");
        poke<std::uint64_t>(b, key + 8 + std::strlen("tokenizer.ggml.merges") + 4 + 4, std::uint64_t{1} << 40);
    });
    variant("tensor-count-2-60.gguf", [](Bytes& b) { poke<std::uint64_t>(b, 8, std::uint64_t{1} << 60); });
    variant("unknown-value-type.gguf", [&](Bytes& b) {
        const std::size_t key = L.key_at(b, "general.name");
        poke<std::uint32_t>(b, key + 8 + std::strlen("general.name"), 77);
    });
    variant("unknown-ggml-type.gguf", [&](Bytes& b) { poke<std::uint32_t>(b, L.info_type_at[tensor_index(L, "blk.0.attn_q.weight")], 99); });
    variant("type-size-mismatch.gguf", [&](Bytes& b) {  // Q4_K needs rows of whole 256-blocks: 64 is not one
        poke<std::uint32_t>(b, L.info_type_at[tensor_index(L, "blk.0.attn_q.weight")], 12);
    });
    variant("data-past-end.gguf", [&](Bytes& b) { poke<std::uint64_t>(b, L.info_offset_at.back(), valid.size()); });
    variant("data-offset-unaligned.gguf", [&](Bytes& b) { poke<std::uint64_t>(b, L.info_offset_at[1], peek<std::uint64_t>(b, L.info_offset_at[1]) + 4); });
    variant("overlapping-tensors.gguf", [&](Bytes& b) { poke<std::uint64_t>(b, L.info_offset_at[2], peek<std::uint64_t>(b, L.info_offset_at[1])); });
    variant("dims-overflow-64-bits.gguf", [&](Bytes& b) {
        const std::size_t at = L.info_dims_at[tensor_index(L, "blk.0.attn_q.weight")];
        poke<std::uint64_t>(b, at, std::uint64_t{1} << 40);
        poke<std::uint64_t>(b, at + 8, std::uint64_t{1} << 40);
    });
    variant("nan-in-f32-weight.gguf", [&](Bytes& b) {
        const std::size_t i = tensor_index(L, "blk.1.ffn_gate.weight");
        poke<float>(b, L.data + peek<std::uint64_t>(b, L.info_offset_at[i]) + 4 * 17, std::nanf(""));
    });
    variant("inf-in-norm.gguf", [&](Bytes& b) {
        const std::size_t i = tensor_index(L, "output_norm.weight");
        poke<float>(b, L.data + peek<std::uint64_t>(b, L.info_offset_at[i]) + 4 * 3, INFINITY);
    });

    auto from = [&](const std::string& name, GgufOptions o) { write_gguf(out / name, o); };
    GgufOptions o;
    o.freq_base = INFINITY;  from("rope-freq-base-inf.gguf", o);  o = {};
    o.head_count = 0;        from("head-count-0.gguf", o);  o = {};
    o.head_count = 6;        from("heads-do-not-divide-embedding.gguf", o);  o = {};
    o.head_count_kv = 3;     from("kv-heads-do-not-divide-heads.gguf", o);  o = {};
    o.block_count = 1000000000; from("block-count-1e9.gguf", o);  o = {};
    o.block_count = 3;       from("missing-block.gguf", o);  o = {};
    o.context = 0;           from("context-length-0.gguf", o);  o = {};
    o.context = 24;          from("context-length-24.gguf", o);  o = {};
    o.embedding = 96;        from("embedding-disagrees-with-tensors.gguf", o);  o = {};
    o.vocab_entries = 300;   from("vocabulary-larger-than-embedding.gguf", o);  o = {};
    o.chat_template = "{{ bos_token }}{% for m in messages %}### {{ m['content'] }}{% endfor %}";
    from("unknown-chat-template.gguf", o);  o = {};
    o.duplicate_key = true;  from("duplicate-key.gguf", o);  o = {};
    {   // qsafe's writer refuses duplicates: rename in the bytes instead
        Bytes b = read_all(out / "duplicate-key.gguf");
        std::memcpy(b.data() + find(b, "general.nXme"), "general.name", 12);
        write_all(out / "duplicate-key.gguf", b);
    }
    variant("duplicate-tensor.gguf", [&](Bytes& b) { b[find(b, "blk.0.ffn_up.weight", L.tensor_infos) + 4] = '1'; });
    o.drop_ffn_up = true;    from("missing-tensor.gguf", o);  o = {};
    o.q8_0_ffn_down = true;  from("q8_0.gguf", o);  o = {};
    {   // a Q8_0 block scale of +Inf (fp16 0x7C00)
        Bytes b = read_all(out / "q8_0.gguf");
        const GgufLayout Q = layout_of(b);
        const std::size_t i = tensor_index(Q, "blk.0.ffn_down.weight");
        poke<std::uint16_t>(b, Q.data + peek<std::uint64_t>(b, Q.info_offset_at[i]) + 34 * 5, 0x7C00);
        write_all(out / "inf-in-q8_0-scale.gguf", b);
    }
}

/// The small byte-level BPE tokenizer and the ChatML template of the valid model, as GGUF metadata.
void set_tokenizer_and_template(qsafe::gguf::Writer& w) {
    std::vector<std::string> merge_lines;
    for (const auto& [l, r] : merges) merge_lines.push_back(l + " " + r);
    w.set("tokenizer.ggml.model", std::string("gpt2"));
    w.set("tokenizer.ggml.tokens", Value::array_of(vocabulary()));
    w.set("tokenizer.ggml.merges", Value::array_of(merge_lines));
    w.set("tokenizer.chat_template", chatml);
}

/// A model whose token embedding alone is 2^24 x 16384 (a Q4_0 file of 154 GB, sparse on disk: only its
/// header and last tensor are written): loading would need 2 TiB of fp32 before any layer is built.
void make_huge_model(const fs::path& path) {
    constexpr std::uint32_t width = 16384;
    constexpr std::uint64_t rows = std::uint64_t{1} << 24, q4_0_row_bytes = width / 32 * 18;
    qsafe::gguf::Writer w;
    w.set("general.architecture", std::string("llama"));
    w.set("llama.block_count", std::uint32_t{1});
    w.set("llama.context_length", std::uint32_t{256});
    w.set("llama.embedding_length", width);
    w.set("llama.feed_forward_length", width);
    w.set("llama.attention.head_count", std::uint32_t{128});
    w.set("llama.attention.head_count_kv", std::uint32_t{128});
    set_tokenizer_and_template(w);
    w.add_tensor("token_embd.weight", {width, 1}, qsafe::GgmlType::Q4_0, std::vector<std::byte>(q4_0_row_bytes));
    w.add_tensor_f32("blk.0.attn_norm.weight", {width}, std::vector<float>(width, 1.0f));
    w.write(path);
    Bytes b = read_all(path);
    const GgufLayout L = layout_of(b);
    poke<std::uint64_t>(b, L.info_dims_at[0] + 8, rows);
    const std::uint64_t norm_offset = rows * q4_0_row_bytes;
    poke<std::uint64_t>(b, L.info_offset_at[1], norm_offset);
    b.resize(L.data);  // header only: the data is placed below
    write_all(path, b);
    fs::resize_file(path, L.data + norm_offset + 4 * width);  // a hole, not 154 GB of zeros
}

/// A model each of whose tensors is modest (no layer above 1 GiB as fp32) but whose 256 blocks of 8192-wide
/// layers add up to 1.1 TB as fp32: a Q4_0 file of 155 GB, sparse on disk (header only). Only the sum over
/// the whole model, under the rules it is loaded with, shows it cannot fit.
void make_deep_model(const fs::path& path) {
    constexpr std::uint32_t width = 8192, ffn = 32768, blocks = 256, heads = 64;
    const auto q4_0_row_bytes = [](std::uint64_t cols) { return cols / 32 * 18; };
    qsafe::gguf::Writer w;
    w.set("general.architecture", std::string("llama"));
    w.set("llama.block_count", blocks);
    w.set("llama.context_length", std::uint32_t{256});
    w.set("llama.embedding_length", width);
    w.set("llama.feed_forward_length", ffn);
    w.set("llama.attention.head_count", heads);
    w.set("llama.attention.head_count_kv", heads);
    set_tokenizer_and_template(w);
    // Every matrix is written with one row and given its real row count below; its data lands in the hole.
    std::vector<std::uint64_t> rows;  // per tensor, in order; 0 = a 1-D f32 norm
    auto matrix = [&](const std::string& name, std::uint64_t r, std::uint64_t cols) {
        w.add_tensor(name, {cols, 1}, qsafe::GgmlType::Q4_0, std::vector<std::byte>(q4_0_row_bytes(cols)));
        rows.push_back(r);
    };
    auto norm = [&](const std::string& name) {
        w.add_tensor_f32(name, {width}, std::vector<float>(width, 1.0f));
        rows.push_back(0);
    };
    matrix("token_embd.weight", vocabulary().size(), width);
    for (std::uint32_t b = 0; b < blocks; ++b) {
        const std::string p = "blk." + std::to_string(b) + ".";
        norm(p + "attn_norm.weight");
        norm(p + "ffn_norm.weight");
        for (const char* t : {"attn_q", "attn_k", "attn_v", "attn_output"}) matrix(p + t + ".weight", width, width);
        matrix(p + "ffn_gate.weight", ffn, width);
        matrix(p + "ffn_up.weight", ffn, width);
        matrix(p + "ffn_down.weight", width, ffn);
    }
    norm("output_norm.weight");
    w.write(path);
    Bytes b = read_all(path);
    const GgufLayout L = layout_of(b);
    std::uint64_t offset = 0;  // every tensor's size is a multiple of the 32-byte alignment
    for (std::size_t i = 0; i < rows.size(); ++i) {
        poke<std::uint64_t>(b, L.info_offset_at[i], offset);
        if (rows[i] == 0) {
            offset += 4 * width;
        } else {
            poke<std::uint64_t>(b, L.info_dims_at[i] + 8, rows[i]);
            offset += rows[i] * q4_0_row_bytes(peek<std::uint64_t>(b, L.info_dims_at[i]));
        }
    }
    b.resize(L.data);
    write_all(path, b);
    fs::resize_file(path, L.data + offset);
}

void make_hf_cases(const fs::path& out) {
    const fs::path base = out / "tiny-hf";
    write_hf(base);
    auto copy = [&](const std::string& name) {
        const fs::path dir = out / name;
        fs::remove_all(dir);
        fs::copy(base, dir, fs::copy_options::recursive);
        return dir;
    };
    auto edit_config = [&](const std::string& name, auto&& edit) {
        const fs::path dir = copy(name);
        auto config = nlohmann::json::parse(read_all(dir / "config.json"));
        edit(config);
        write_text(dir / "config.json", config.dump(2));
    };
    edit_config("hf-heads-0", [](auto& c) { c["num_attention_heads"] = 0; });
    edit_config("hf-layers-minus-1", [](auto& c) { c["num_hidden_layers"] = -1; });
    edit_config("hf-hidden-size-string", [](auto& c) { c["hidden_size"] = "forty-eight"; });
    edit_config("hf-vocab-disagrees", [](auto& c) { c["vocab_size"] = 1000; });
    write_text(copy("hf-config-not-json") / "config.json", "{\"hidden_size\": 48,");
    {
        const fs::path dir = copy("hf-tokenizer-id-5e7");
        auto tok = nlohmann::json::parse(read_all(dir / "tokenizer.json"));
        tok["added_tokens"][0]["id"] = 50000000;
        write_text(dir / "tokenizer.json", tok.dump(1));
    }
    {
        const fs::path dir = copy("hf-deep-json");
        write_text(dir / "config.json", "{\"hidden_size\": 48, \"x\": " + std::string(200000, '[') + std::string(200000, ']') + "}");
    }
    const Bytes st = read_all(base / "model.safetensors");
    const auto header_len = peek<std::uint64_t>(st, 0);
    const std::string header(reinterpret_cast<const char*>(st.data() + 8), header_len);
    auto st_variant = [&](const std::string& name, const std::string& new_header, std::size_t data_bytes) {
        const fs::path dir = copy(name);
        Bytes b(8);
        poke<std::uint64_t>(b, 0, new_header.size());
        b.insert(b.end(), new_header.begin(), new_header.end());
        b.insert(b.end(), st.begin() + 8 + static_cast<std::ptrdiff_t>(header_len), st.begin() + 8 + static_cast<std::ptrdiff_t>(header_len + data_bytes));
        write_all(dir / "model.safetensors", b);
    };
    auto j = nlohmann::json::parse(header);
    const std::size_t data_size = st.size() - 8 - header_len;
    {
        Bytes b = st;
        poke<std::uint64_t>(b, 0, std::uint64_t{1} << 40);
        write_all(copy("st-header-size-2-40") / "model.safetensors", b);
    }
    {
        auto k = j;
        k["model.norm.weight"]["data_offsets"] = k["lm_head.weight"]["data_offsets"];
        k["model.norm.weight"]["shape"] = k["lm_head.weight"]["shape"];
        st_variant("st-overlapping-tensors", k.dump(), data_size);
    }
    {
        auto k = j;
        k["model.norm.weight"]["data_offsets"] = {data_size, data_size + 4 * d};
        st_variant("st-data-past-end", k.dump(), data_size);
    }
    {
        auto k = j;
        k["model.norm.weight"]["shape"] = {d + 1};
        st_variant("st-shape-disagrees-with-size", k.dump(), data_size);
    }
    {
        auto k = j;
        k["model.norm.weight"]["dtype"] = "F8_E9M9";
        st_variant("st-unknown-dtype", k.dump(), data_size);
    }
    {
        Bytes b = st;
        const auto offsets = j["model.layers.0.mlp.up_proj.weight"]["data_offsets"];
        poke<float>(b, 8 + header_len + offsets[0].get<std::size_t>() + 40, std::nanf(""));
        write_all(copy("st-nan-weight") / "model.safetensors", b);
    }
}

void make_dataset_cases(const fs::path& out) {
    write_text(out / "answers.csv", "prompt,response,category\n\"How do I bake bread?\",\"Mix flour and water.\",benign\n"
                                    "\"Say hi\",\"I can't help with that.\",x\n");
    write_text(out / "missing-column.csv", "question,answer\n\"a\",\"b\"\n");
    write_text(out / "unterminated-quote.csv", "prompt,response\n\"a\",\"b\n\"c\",d\n");
    write_text(out / "invalid-utf8.csv", "prompt,response\n\"a\xC3\x28 b\",\"c\"\n");
    write_text(out / "duplicate-column.csv", "prompt,response,response\n\"a\",\"b\",\"c\"\n");
    write_text(out / "empty.csv", "");
    write_text(out / "broken-line.jsonl", "{\"prompt\": \"a\", \"response\": \"b\"}\n{\"prompt\": \"c\", \"resp\n"
                                          "{\"prompt\": \"d\", \"response\": \"e\"}\n");
    write_text(out / "deep.jsonl", "{\"prompt\": \"a\", \"response\": \"b\", \"x\": " + std::string(300000, '[') +
                                       std::string(300000, ']') + "}\n");
    write_text(out / "short.txt", "A few words of calibration text.\n");
}

/// Cases of a qsafe-quantized file: a layer blob's scales set to NaN, and its shape set to 2^31 x 2^31.
void make_quantized_cases(const fs::path& in, const fs::path& out_dir) {
    const Bytes valid = read_all(in);
    const GgufLayout L = layout_of(valid);
    const std::size_t i = tensor_index(L, "blk.0.attn_q.weight");
    const std::size_t blob = L.data + peek<std::uint64_t>(valid, L.info_offset_at[i]);
    const std::size_t magic = find(valid, "QSQM", blob);
    std::size_t p = magic + 8;
    p += 4 + peek<std::uint32_t>(valid, p);  // scheme description
    const std::size_t shape_at = p;
    p += 16;
    p += 8 + peek<std::uint64_t>(valid, p);  // codes
    const std::size_t scales_at = p + 8;
    {
        Bytes b = valid;
        std::memset(b.data() + scales_at, 0xFF, 8);  // NaN as fp16 and as fp32
        write_all(out_dir / "qsafe-nan-scales.gguf", b);
    }
    {
        Bytes b = valid;
        poke<std::uint64_t>(b, shape_at, std::uint64_t{1} << 31);
        poke<std::uint64_t>(b, shape_at + 8, std::uint64_t{1} << 31);
        write_all(out_dir / "qsafe-huge-shape.gguf", b);
    }
    {
        Bytes b = valid;
        poke<std::uint32_t>(b, magic, 0x12345678);
        write_all(out_dir / "qsafe-bad-blob-magic.gguf", b);
    }
}

}  // namespace

int main(int argc, char** argv) try {
    if (argc == 4 && std::string(argv[1]) == "--quantized") {
        make_quantized_cases(argv[2], argv[3]);
        return 0;
    }
    if (argc != 2) {
        std::fprintf(stderr, "usage: make_malformed_inputs OUT_DIR | --quantized IN OUT_DIR\n");
        return 2;
    }
    const fs::path out = argv[1];
    fs::create_directories(out);
    make_gguf_cases(out);
    make_huge_model(out / "embedding-2-TiB.gguf");
    make_deep_model(out / "layers-1-TB.gguf");
    make_hf_cases(out);
    make_dataset_cases(out);
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "make_malformed_inputs: %s\n", e.what());
    return 1;
}
