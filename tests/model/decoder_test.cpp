#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <numeric>
#include <set>
#include <unistd.h>

#include "model/tiny_llama.hpp"
#include "qsafe/core/parallel.hpp"
#include "qsafe/model/decoder.hpp"
#include "qsafe/model/sampler.hpp"
#include "qsafe/ptq/model_file.hpp"

using namespace qsafe;

namespace {
std::filesystem::path temp_dir(const std::string& name) {
    auto dir = std::filesystem::temp_directory_path() / ("qsafe_test_" + name + "_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    return dir;
}
double max_relative(const RowMatrixF& a, const Eigen::MatrixXd& b) {
    return (a.cast<double>() - b).cwiseAbs().maxCoeff() / b.cwiseAbs().maxCoeff();
}
LlamaModel load_gguf(const std::filesystem::path& p, const std::string& rules = "*=fp32") {
    const auto file = gguf::File::open(p);
    return LlamaModel(load_llama_weights(config_from_gguf(file), GgufTensorSource(file), rtn_builder(SchemeRules::parse(rules))));
}
LlamaModel load_hf(const std::filesystem::path& dir) {
    std::ifstream in(dir / "config.json");
    const auto config = config_from_hf_json(nlohmann::json::parse(in), (dir / "config.json").string());
    const auto ckpt = safetensors::Checkpoint::open(dir);
    return LlamaModel(load_llama_weights(config, SafetensorsTensorSource(ckpt, config, dir.string()),
                                         rtn_builder(SchemeRules::parse("*=fp32"))));
}
const std::vector<std::int32_t> tokens = {3, 17, 60, 0, 42, 42, 9, 31, 5, 58, 1, 22, 47};
}  // namespace

TEST_CASE("tiny Llama: GGUF and safetensors loaders agree with each other and with an independent HF-style reference") {
    for (bool tied : {false, true}) {
        CAPTURE(tied);
        const tiny::TinyLlama t(tied ? 7 : 5, tied);
        const auto dir = temp_dir(tied ? "tied" : "untied");
        t.write_gguf(dir / "tiny.gguf");
        t.write_hf(dir / "hf");
        LlamaModel from_gguf = load_gguf(dir / "tiny.gguf");
        LlamaModel from_hf = load_hf(dir / "hf");
        CHECK(from_gguf.config().tied_embeddings == tied);
        CHECK(from_hf.config().n_kv_heads == 2);
        KvCache c1 = from_gguf.new_cache(), c2 = from_hf.new_cache();
        const RowMatrixF a = from_gguf.forward_sequence(c1, tokens, true);
        const RowMatrixF b = from_hf.forward_sequence(c2, tokens, true);
        CHECK(a == b);  // identical weights after the q/k permutation: identical arithmetic
        const Eigen::MatrixXd ref = t.reference_logits(tokens);
        CHECK(max_relative(a, ref) < 1e-5);
        std::filesystem::remove_all(dir);
    }
}

TEST_CASE("tiny Llama: incremental decoding, batched decoding and prefill agree, and results do not depend on threads") {
    const tiny::TinyLlama t(11);
    const auto dir = temp_dir("batch");
    t.write_gguf(dir / "tiny.gguf");
    LlamaModel model = load_gguf(dir / "tiny.gguf");
    KvCache full = model.new_cache();
    const RowMatrixF prefill = model.forward_sequence(full, tokens, true);
    CHECK(full.length() == tokens.size());

    // Token by token through a fresh cache.
    KvCache inc = model.new_cache();
    for (std::size_t i = 0; i < tokens.size(); ++i) {
        const std::int32_t one[] = {tokens[i]};
        const RowMatrixF row = model.forward_sequence(inc, one);
        CHECK((row.row(0) - prefill.row(static_cast<Eigen::Index>(i))).cwiseAbs().maxCoeff() < 1e-4f);
    }

    // Three sequences of different lengths decoded in one batch match their separate runs.
    std::vector<KvCache> caches;
    std::vector<std::vector<std::int32_t>> prompts = {{1, 2, 3}, {4, 5, 6, 7, 8}, {9}};
    std::vector<RowMatrixF> separate;
    for (const auto& p : prompts) {
        caches.push_back(model.new_cache());
        KvCache solo = model.new_cache();
        std::vector<std::int32_t> seq = p;
        seq.push_back(30);
        separate.push_back(model.forward_sequence(solo, seq));
        model.forward_sequence(caches.back(), p);
    }
    std::vector<KvCache*> ptrs = {&caches[0], &caches[1], &caches[2]};
    const std::int32_t next[] = {30, 30, 30};
    const RowMatrixF batched = model.decode_step(ptrs, next);
    for (std::size_t i = 0; i < 3; ++i) CHECK((batched.row(static_cast<Eigen::Index>(i)) - separate[i].row(0)).cwiseAbs().maxCoeff() < 1e-4f);

    // Thread-count independence, fp32 and quantized.
    for (const std::string rules : {"*=fp32", "*=int4-g32-asym", "*=int8-pc-sym,output=nf4-g64"}) {
        CAPTURE(rules);
        LlamaModel m = load_gguf(dir / "tiny.gguf", rules);
        const int saved = num_threads();
        set_num_threads(1);
        KvCache a = m.new_cache();
        const RowMatrixF one = m.forward_sequence(a, tokens, true);
        set_num_threads(2);
        KvCache b = m.new_cache();
        const RowMatrixF two = m.forward_sequence(b, tokens, true);
        set_num_threads(saved);
        CHECK(one == two);
    }
    std::filesystem::remove_all(dir);
}

TEST_CASE("tiny Llama: scheme rules put each tensor under its scheme, and quantized logits stay close to fp32") {
    const tiny::TinyLlama t(13);
    const auto dir = temp_dir("rules");
    t.write_gguf(dir / "tiny.gguf");
    LlamaModel fp = load_gguf(dir / "tiny.gguf");
    LlamaModel q = load_gguf(dir / "tiny.gguf", "*=int8-pc-sym,blk.1.*=int4-g32-asym,output=fp32");
    CHECK(q.weights().layers[0].wq->scheme_name() == "int8-pc-sym");
    CHECK(q.weights().layers[1].w_down->scheme_name() == "int4-g32-asym");
    CHECK(q.weights().output->scheme_name() == "fp32");
    KvCache a = fp.new_cache(), b = q.new_cache();
    const RowMatrixF la = fp.forward_sequence(a, tokens, true), lb = q.forward_sequence(b, tokens, true);
    const double rel = std::sqrt((la - lb).squaredNorm() / la.squaredNorm());
    CHECK(rel > 0.0);
    CHECK(rel < 0.2);
    std::filesystem::remove_all(dir);
}

TEST_CASE("HF config.json: zero, negative, non-integer and absurd counts are named errors, not crashes or huge sizes") {
    const nlohmann::json good = {{"architectures", {"LlamaForCausalLM"}}, {"num_hidden_layers", 2}, {"hidden_size", 64},
                                 {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"intermediate_size", 96},
                                 {"vocab_size", 300}};
    const LlamaConfig c = config_from_hf_json(good, "good/config.json");
    CHECK(c.head_dim == 16);
    auto with = [&](const char* key, nlohmann::json value) {
        nlohmann::json j = good;
        j[key] = std::move(value);
        return j;
    };
    // Zero heads: validated, where it used to divide by zero (SIGFPE) while computing the head dimension.
    CHECK_THROWS_WITH_AS(config_from_hf_json(with("num_attention_heads", 0), "bad/config.json"),
                         doctest::Contains("bad/config.json: invalid model config: a dimension is zero"), format_error);
    CHECK_THROWS_WITH_AS(config_from_hf_json(with("num_hidden_layers", -1), "bad/config.json"),
                         doctest::Contains("'num_hidden_layers' is -1, not a count"), format_error);
    CHECK_THROWS_WITH_AS(config_from_hf_json(with("num_key_value_heads", -2), "bad/config.json"),
                         doctest::Contains("'num_key_value_heads' is -2, not a count"), format_error);
    CHECK_THROWS_WITH_AS(config_from_hf_json(with("hidden_size", "64"), "bad/config.json"),
                         doctest::Contains("'hidden_size' must be a non-negative integer, not string"), format_error);
    CHECK_THROWS_WITH_AS(config_from_hf_json(with("hidden_size", 64.5), "bad/config.json"),
                         doctest::Contains("'hidden_size' must be a non-negative integer, not number"), format_error);
    CHECK_THROWS_WITH_AS(config_from_hf_json(with("vocab_size", 1000000000000LL), "bad/config.json"),
                         doctest::Contains("vocabulary size 1000000000000 exceeds 16777216"), format_error);
    LlamaConfig inf_theta = c;
    inf_theta.rope_theta = std::numeric_limits<float>::infinity();
    CHECK_THROWS_WITH_AS(inf_theta.validate("x.gguf"), doctest::Contains("x.gguf: invalid model config: rope theta and norm epsilon must be positive and finite"),
                         format_error);
}

TEST_CASE("non-finite weights are refused at load, naming the file, tensor, row and column") {
    const auto dir = temp_dir("nonfinite");
    // A NaN in one F32 weight of a GGUF file and an Inf in a safetensors checkpoint: the model used to load
    // and answer nothing.
    tiny::TinyLlama t(17);
    t.w["model.layers.1.mlp.up_proj.weight"](2, 3) = std::numeric_limits<float>::quiet_NaN();
    t.w["model.norm.weight"](0, 5) = std::numeric_limits<float>::infinity();
    t.write_gguf(dir / "nan.gguf");
    CHECK_THROWS_WITH_AS(load_gguf(dir / "nan.gguf"),
                         doctest::Contains("nan.gguf: tensor 'blk.1.ffn_up.weight': non-finite value (nan) at row 2, column 3"),
                         format_error);
    t.w["model.layers.1.mlp.up_proj.weight"](2, 3) = 0.5f;
    t.write_hf(dir / "hf");
    CHECK_THROWS_WITH_AS(load_hf(dir / "hf"), doctest::Contains("tensor 'model.norm.weight': non-finite value (inf) at row 0, column 5"),
                         format_error);

    // A NaN block scale in a qsafe quantized layer, and a NaN fp16 outlier column value.
    const RowMatrixF w = RowMatrixF::Random(8, 256);
    using Sym = Scheme<Bits<4>, GroupSize<32>, Symmetric>;
    auto m = quantize_rtn<Sym>(w);
    m.scales[2 * m.groups_per_row + 5] = to_fp16(std::numeric_limits<float>::quiet_NaN());
    CHECK_THROWS_WITH_AS((void)deserialize_quantized_matrix<Sym>(serialize(m), "layer 'x'"),
                         doctest::Contains("layer 'x'"), format_error);
    CHECK_THROWS_WITH_AS((void)deserialize_quantized_matrix<Sym>(serialize(m), "layer 'x'"),
                         doctest::Contains("non-finite scale (nan) at row 2, group 5"), format_error);
    using Columns = Scheme<Bits<4>, GroupSize<32>, Asymmetric, UniformGrid, OutlierColumns<4>>;
    QuantizeOptions opt;
    auto c = quantize_rtn<Columns>(w, opt);
    REQUIRE(c.outlier_columns.columns.size() == 4);
    c.outlier_columns.values[3 * 4 + 1] = to_fp16(std::numeric_limits<float>::infinity());
    const std::string where = "non-finite outlier column value at row 3, column " + std::to_string(c.outlier_columns.columns[1]);
    CHECK_THROWS_WITH_AS((void)deserialize_quantized_matrix<Columns>(serialize(c)), doctest::Contains(where.c_str()), format_error);
    std::filesystem::remove_all(dir);
}

TEST_CASE("a quantized layer whose shape claims more than its bytes hold is refused before allocating") {
    using Sym = Scheme<Bits<4>, GroupSize<32>, Symmetric>;
    const RowMatrixF w = RowMatrixF::Random(8, 256);
    std::vector<std::byte> bytes = serialize(quantize_rtn<Sym>(w));
    // The shape is two little-endian u64 (rows 8, cols 256) after the header: make it 2^30 x 2^10.
    std::array<std::byte, 16> shape{};
    const std::uint64_t rows = 8, cols = 256, huge_rows = 1ull << 30, huge_cols = 1ull << 10;
    std::memcpy(shape.data(), &rows, 8);
    std::memcpy(shape.data() + 8, &cols, 8);
    const auto at = std::search(bytes.begin(), bytes.end(), shape.begin(), shape.end());
    REQUIRE(at != bytes.end());
    std::memcpy(&*at, &huge_rows, 8);
    std::memcpy(&*at + 8, &huge_cols, 8);
    // 2^30 rows of 512 code bytes and 32 fp16 scales: 576 GiB claimed by a 1.2 kB buffer.
    CHECK_THROWS_WITH_AS((void)deserialize_quantized_matrix<Sym>(bytes, "layer 'x'"),
                         doctest::Contains("layer 'x'"), format_error);
    CHECK_THROWS_WITH_AS((void)deserialize_quantized_matrix<Sym>(bytes, "layer 'x'"),
                         doctest::Contains("shape 1073741824x1024 needs 618475290624 bytes of codes and scales, but only"),
                         format_error);
}

TEST_CASE("a block count beyond the file's tensors is refused before the layer table is allocated") {
    const auto dir = temp_dir("blocks");
    const tiny::TinyLlama t(19);
    t.write_gguf(dir / "tiny.gguf");
    const auto file = gguf::File::open(dir / "tiny.gguf");
    LlamaConfig config = config_from_gguf(file);
    config.n_layers = 10000000;  // as a corrupted llama.block_count would claim
    CHECK_THROWS_WITH_AS(load_llama_weights(config, GgufTensorSource(file), rtn_builder(SchemeRules::parse("*=fp32"))),
                         doctest::Contains("tiny.gguf: the model config says 10000000 blocks, but tensor "
                                           "'blk.9999999.attn_norm.weight' is missing"),
                         format_error);
    std::filesystem::remove_all(dir);
}

TEST_CASE("the loader's memory estimate is what it builds, for stored and built layers") {
    const auto dir = temp_dir("estimate");
    const tiny::TinyLlama t(23);
    t.write_gguf(dir / "tiny.gguf");
    const auto file = gguf::File::open(dir / "tiny.gguf");
    const LlamaConfig config = config_from_gguf(file);
    for (const char* rules : {"*=fp32", "*=int4-g32-asym,output=int8-pc-sym", "*=int2-g32-asym+ocol8,ffn_down=int3-g128-asym+sparse1%",
                              "*=nf4-g64,ffn_down=vq2-d4,output=cb3-g128"}) {
        const std::string named = rules;
        CAPTURE(named);
        const auto build = rtn_builder(SchemeRules::parse(rules));
        const ModelMemoryEstimate e = estimate_model_memory(config, GgufTensorSource(file), build);
        const LlamaWeights w = load_llama_weights(config, GgufTensorSource(file), build);
        CHECK(e.layers_counted == e.layers_total);
        CHECK(e.layers_total == 7 * config.n_layers + 1);
        CHECK(e.linear_layers == w.linear_storage_bytes());
        CHECK(e.embedding == 4 * config.vocab_size * config.d_model);
        CHECK(e.largest_built == 4 * std::max(config.vocab_size, config.d_ff) * config.d_model);
    }
    // A layer whose size the builder cannot tell counts as nothing (the check is then a lower bound).
    const LinearBuilder opaque = [](const std::string& name, const RowMatrixF& m) { return quantize_by_name("fp32", m, {.tensor_name = name}); };
    const ModelMemoryEstimate e = estimate_model_memory(config, GgufTensorSource(file), opaque);
    CHECK(e.layers_counted == 0);
    CHECK(e.linear_layers == 0);
    // A qsafe quantized file (Q4_0 blocks and I8 blobs): stored layers count at their stored size and are
    // not built, so the fp32 builder's estimate and transient play no part.
    {
        const auto rules = "*=int4-g32-sym,ffn_down=int2-g32-asym+ocol4";
        const LlamaWeights q = load_llama_weights(config, GgufTensorSource(file), rtn_builder(SchemeRules::parse(rules)));
        save_quantized_model(dir / "q.gguf", file, q, {"rtn", rules, ""});
        const auto saved = gguf::File::open(dir / "q.gguf");
        const auto fp32 = rtn_builder(SchemeRules::parse("*=fp32"));
        const ModelMemoryEstimate s = estimate_model_memory(config, GgufTensorSource(saved), fp32);
        const LlamaWeights loaded = load_llama_weights(config, GgufTensorSource(saved), fp32);
        CHECK(s.layers_counted == s.layers_total);
        CHECK(s.largest_built == 0);
        CHECK(s.linear_layers >= loaded.linear_storage_bytes());
        CHECK(s.linear_layers <= loaded.linear_storage_bytes() * 11 / 10);  // the blobs' headers (large on a tiny model)
    }
    std::filesystem::remove_all(dir);
}

TEST_CASE("scheme rules: globs, last match wins, bare names match the last part") {
    const auto r = SchemeRules::parse("*=int4-g128-asym, output=int8-pc-sym ,ffn_down=int3-g128-asym,blk.0.*=fp32");
    CHECK(r.scheme_for("blk.3.attn_q.weight") == "int4-g128-asym");
    CHECK(r.scheme_for("output.weight") == "int8-pc-sym");
    CHECK(r.scheme_for("blk.7.ffn_down.weight") == "int3-g128-asym");
    CHECK(r.scheme_for("blk.0.ffn_down.weight") == "fp32");
    CHECK(SchemeRules::parse("int2-g32-asym").scheme_for("blk.1.attn_v.weight") == "int2-g32-asym");
    CHECK(SchemeRules().scheme_for("output.weight") == "fp32");
    CHECK_THROWS_AS(SchemeRules::parse("output="), config_error);
    // A pattern written with the file's ".weight" suffix names the same tensor.
    CHECK(SchemeRules::parse("blk.1.ffn_up.weight=int4-g32-sym").scheme_for("blk.1.ffn_up.weight") == "int4-g32-sym");
}

TEST_CASE("scheme rules: a pattern that names no tensor, or no rule at all, is refused with the pattern named") {
    const std::vector<std::string> names = {"blk.0.attn_q.weight", "blk.0.ffn_down.weight", "blk.1.attn_q.weight", "output.weight"};
    CHECK_NOTHROW(SchemeRules::parse("*=int4-g128-asym,ffn_down=int3-g128-asym,blk.1.*=fp32,output=int8-pc-sym").require_all_match(names, "--rules"));
    CHECK(SchemeRules::parse("blk.2.*=a,ffn_up=b,attn_q=c").unmatched_patterns(names) == std::vector<std::string>{"blk.2.*", "ffn_up"});
    CHECK_THROWS_WITH_AS(SchemeRules::parse("blk.*=int4-g128-asym,blk.9?.*=int2-g64-asym").require_all_match(names, "--rules"),
                         doctest::Contains("--rules: 'blk.9?.*' matches no tensor of the model (4 linear tensors"), config_error);
    CHECK_THROWS_WITH_AS(SchemeRules::parse("").require_all_match(names, "--rules"), doctest::Contains("--rules is empty"), config_error);
}

TEST_CASE("sampler: greedy is argmax, sampling is deterministic for a seed and respects top-k / top-p") {
    std::vector<float> logits = {0.1f, 2.0f, 1.9f, -1.0f, 0.5f};
    CHECK(Sampler({}).sample(logits) == 1);
    SamplingOptions hot{.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .seed = 42};
    std::vector<std::int32_t> a, b;
    Sampler s1(hot), s2(hot);
    for (int i = 0; i < 50; ++i) {
        a.push_back(s1.sample(logits));
        b.push_back(s2.sample(logits));
    }
    CHECK(a == b);
    CHECK(std::set<std::int32_t>(a.begin(), a.end()).size() > 1);
    SamplingOptions k1 = hot;
    k1.top_k = 1;
    Sampler s3(k1);
    for (int i = 0; i < 20; ++i) CHECK(s3.sample(logits) == 1);
    SamplingOptions k2 = hot;
    k2.top_k = 2;
    Sampler s4(k2);
    for (int i = 0; i < 50; ++i) {
        const auto t = s4.sample(logits);
        CHECK((t == 1 || t == 2));
    }
    SamplingOptions p = hot;
    p.top_p = 0.3f;
    Sampler s5(p);
    for (int i = 0; i < 20; ++i) CHECK(s5.sample(logits) == 1);
}
