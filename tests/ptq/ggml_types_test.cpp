// int4-g32-sym / int8-g32-sym layers written as llama.cpp's Q4_0 / Q8_0: the bytes hold exactly qsafe's values
// (checked with qsafe's independent ggml dequantizer), files round-trip with identical logits, and other
// GGUF files keep their fp32 semantics unless asked to load such layers as stored.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <unistd.h>

#include "common/random_matrix.hpp"
#include "model/tiny_llama.hpp"
#include "qsafe/formats/ggml_dequantize.hpp"
#include "qsafe/formats/ggml_equivalent.hpp"
#include "qsafe/formats/ggml_quantize.hpp"
#include "qsafe/model/decoder.hpp"
#include "qsafe/ptq/model_file.hpp"
#include "qsafe/ptq/quantize_model.hpp"

#include "common/model_fixtures.hpp"

using namespace qsafe;
using test_fixtures::all_logits;
using test_fixtures::load_fp;
using test_fixtures::probe;
using test_fixtures::temp_dir;

namespace {

// The tiny model with every row length a multiple of 32 (d 64, head_dim 16, d_ff 96), so Q4_0 / Q8_0 fit.
tiny::TinyLlama tiny_with_whole_blocks(std::uint64_t seed, bool tied) {
    tiny::TinyLlama t(seed, tied);
    const auto resize = [](Eigen::Index n) -> Eigen::Index { return n == 48 ? 64 : n == 24 ? 32 : n == 80 ? 96 : n; };
    t.d = 64;
    t.hd = 16;
    t.ff = 96;
    std::mt19937_64 rng(seed + 1000);
    std::normal_distribution<float> g(0.0f, 1.0f);
    for (auto& [name, m] : t.w) {
        RowMatrixF r(resize(m.rows()), resize(m.cols()));
        const bool norm = name.find("norm") != std::string::npos, embed = name.find("embed") != std::string::npos;
        const float s = embed ? 1.0f : 1.0f / std::sqrt(static_cast<float>(r.cols()));
        for (Eigen::Index i = 0; i < r.size(); ++i) r.data()[i] = norm ? 1.0f + 0.1f * g(rng) : s * g(rng);
        m = r;
    }
    return t;
}

// Weights with a few large values per row, as real layers have: groups with a positive and a negative extreme.
RowMatrixF weights_with_outliers(std::size_t rows, std::size_t cols, std::uint64_t seed) {
    RowMatrixF w = test_data::heavy_tailed(rows, cols, seed) * 0.02f;
    for (std::size_t r = 0; r < rows; ++r) w(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>((r * 37) % cols)) = (r % 2 ? 1.0f : -1.0f) * 0.5f;
    return w;
}

template <QuantScheme S>
void check_blocks_hold_the_layer(const QuantizedLinear& layer, GgmlType type) {
    const QuantizedMatrix<S> m = deserialize_quantized_matrix<S>(layer.serialize());
    const std::vector<std::byte> blocks = to_ggml_blocks(m);
    CHECK(blocks.size() == m.rows * m.cols / 32 * ggml_bytes_per_block(type));
    RowMatrixF ggml(static_cast<Eigen::Index>(m.rows), static_cast<Eigen::Index>(m.cols));
    dequantize_row(type, blocks, {ggml.data(), static_cast<std::size_t>(ggml.size())});
    CHECK(ggml == layer.dequantize());  // bit for bit
    CHECK(from_ggml_blocks<S>(blocks, m.rows, m.cols, "test") == m);
}
}  // namespace

TEST_CASE("int4-g32-sym and int8-g32-sym stored as Q4_0 and Q8_0 blocks dequantize with ggml's formulas to exactly qsafe's values") {
    const RowMatrixF w = weights_with_outliers(40, 256, 5);
    const RowMatrixF x = test_data::gaussian(512, 256, 6);
    const Eigen::MatrixXf h = (x.transpose() * x).eval();
    for (const std::string scheme : {"int4-g32-sym", "int8-g32-sym"}) {
        CAPTURE(scheme);
        const ResolvedScheme r = resolve_scheme(scheme);
        QuantizeOptions opt;
        opt.tensor_name = "test";
        QuantizeOptions clipped = opt;
        clipped.clip_search = true;  // codes at both ends of the grid
        const auto rtn = r.entry->quantize_rtn(w, opt, scheme);
        const auto rtn_clipped = r.entry->quantize_rtn(w, clipped, scheme);
        const auto gptq = r.entry->quantize_gptq(w, h, GptqOptions{}, opt, scheme);
        for (const auto* layer : {rtn.get(), rtn_clipped.get(), gptq.get()}) {
            if (scheme == "int4-g32-sym") check_blocks_hold_the_layer<GgmlQ4_0Scheme>(*layer, GgmlType::Q4_0);
            else check_blocks_hold_the_layer<GgmlQ8_0Scheme>(*layer, GgmlType::Q8_0);
        }
    }
    CHECK(ggml_equivalent_type("int4-g32-sym") == GgmlType::Q4_0);
    CHECK(ggml_equivalent_type("int8-g32-sym") == GgmlType::Q8_0);
    CHECK(!ggml_equivalent_type("int4-g32-asym"));
    CHECK(scheme_equivalent_to(GgmlType::Q8_0) == "int8-g32-sym");
    CHECK(!scheme_equivalent_to(GgmlType::Q4_1));
}

TEST_CASE("qsafe's int4-g32-sym round-to-nearest is ggml's Q4_0 grid: same scales, codes differ only where qsafe rounds with the stored fp16 scale") {
    const RowMatrixF w = weights_with_outliers(64, 512, 9);
    const auto layer = quantize_by_name("int4-g32-sym", w);
    const auto ours = to_ggml_blocks(deserialize_quantized_matrix<GgmlQ4_0Scheme>(layer->serialize()));
    std::vector<std::byte> theirs(ours.size());
    quantize_row(GgmlType::Q4_0, {w.data(), static_cast<std::size_t>(w.size())}, theirs);
    std::size_t blocks = ours.size() / sizeof(ggml::BlockQ4_0), same_scale = 0, codes = 0, same_code = 0;
    for (std::size_t b = 0; b < blocks; ++b) {
        ggml::BlockQ4_0 a, g;
        std::memcpy(&a, ours.data() + b * sizeof a, sizeof a);
        std::memcpy(&g, theirs.data() + b * sizeof g, sizeof g);
        same_scale += a.d == g.d;
        for (int j = 0; j < 16; ++j) {
            codes += 2;
            same_code += (a.qs[j] & 0x0F) == (g.qs[j] & 0x0F);
            same_code += (a.qs[j] >> 4) == (g.qs[j] >> 4);
        }
    }
    MESSAGE("int4-g32-sym RTN vs ggml's quantize_row_q4_0: " << same_scale << "/" << blocks << " scales and " << same_code << "/"
                                                             << codes << " codes identical");
    CHECK(same_scale == blocks);
    CHECK(static_cast<double>(same_code) >= 0.99 * static_cast<double>(codes));
    // qsafe's codes are the nearest level to each weight under the stored scale, so never worse.
    RowMatrixF ggml_values(w.rows(), w.cols());
    dequantize_row(GgmlType::Q4_0, theirs, {ggml_values.data(), static_cast<std::size_t>(ggml_values.size())});
    CHECK((w - layer->dequantize()).squaredNorm() <= (w - ggml_values).squaredNorm() * (1.0 + 1e-6));
}

TEST_CASE("a quantized file stores int4-g32-sym and int8-g32-sym layers as Q4_0 and Q8_0 tensors and loads them with identical logits") {
    for (const bool tied : {false, true}) {
        CAPTURE(tied);
        const tiny::TinyLlama t = tiny_with_whole_blocks(51, tied);
        const auto dir = temp_dir("ggml_types");
        t.write_gguf(dir / "tiny.gguf");
        const auto file = gguf::File::open(dir / "tiny.gguf");
        LlamaModel m(load_fp(file));
        PtqOptions opt;
        opt.rules = SchemeRules::parse("*=int4-g32-sym,output=int8-g32-sym,blk.1.ffn_down=int4-g32-asym");
        quantize_model(m.mutable_weights(), nullptr, opt);
        const RowMatrixF expected = all_logits(m, probe);

        const auto path = dir / "native.gguf";
        save_quantized_model(path, file, m.weights(), {"rtn", "test rules", ""});
        const auto q = gguf::File::open(path);
        CHECK(q.get<std::uint32_t>("qsafe.format_version") == 2);
        const auto& attn_q = q.tensor("blk.0.attn_q.weight");
        CHECK(attn_q.type == GgmlType::Q4_0);
        CHECK(attn_q.dims == std::vector<std::uint64_t>{64, 64});
        CHECK(q.tensor("blk.0.ffn_down.weight").type == GgmlType::Q4_0);
        CHECK(q.tensor("blk.0.ffn_down.weight").dims == std::vector<std::uint64_t>{96, 64});
        CHECK(q.tensor("blk.1.attn_k.weight").dims == std::vector<std::uint64_t>{64, 32});
        CHECK(q.tensor("blk.1.ffn_down.weight").type == GgmlType::I8);  // no ggml type for this scheme
        const auto& output = q.tensor("output.weight");
        CHECK(output.type == GgmlType::Q8_0);
        CHECK(output.dims == std::vector<std::uint64_t>{64, t.vocab});
        CHECK(q.get<std::string>("qsafe.tensor.blk.0.attn_q.weight.scheme") == "int4-g32-sym");
        // The stored blocks dequantize (ggml's formulas, as any GGUF reader) to the layers' values.
        for (const auto* name : {"output.weight", "blk.1.attn_v.weight"}) {
            const auto& info = q.tensor(name);
            const std::vector<float> v = q.tensor_to_f32(info);
            const RowMatrixF stored = Eigen::Map<const RowMatrixF>(v.data(), static_cast<Eigen::Index>(info.rows()),
                                                                   static_cast<Eigen::Index>(info.row_length()));
            CHECK(stored == (name[0] == 'o' ? m.weights().output : m.weights().layers[1].wv)->dequantize());
        }

        LlamaModel loaded(load_fp(q));
        CHECK(loaded.weights().layers[0].wq->scheme_name() == "int4-g32-sym");
        CHECK(loaded.weights().layers[1].w_down->scheme_name() == "int4-g32-asym");
        CHECK(loaded.weights().output->scheme_name() == "int8-g32-sym");
        CHECK(all_logits(loaded, probe) == expected);

        // The same model in qsafe's own layout: I8 blobs, same logits.
        QuantizedFileOptions blobs;
        blobs.ggml_types = false;
        save_quantized_model(dir / "blobs.gguf", file, m.weights(), {"rtn", "test rules", ""}, blobs);
        const auto qb = gguf::File::open(dir / "blobs.gguf");
        CHECK(qb.tensor("blk.0.attn_q.weight").type == GgmlType::I8);
        CHECK(qb.tensor("output.weight").type == GgmlType::I8);
        LlamaModel loaded_blobs(load_fp(qb));
        CHECK(all_logits(loaded_blobs, probe) == expected);
    }
}

TEST_CASE("rows that are not whole ggml blocks stay in qsafe's layout") {
    const tiny::TinyLlama t(53);  // d = 48, d_ff = 80
    const auto dir = temp_dir("ggml_types_partial");
    t.write_gguf(dir / "tiny.gguf");
    const auto file = gguf::File::open(dir / "tiny.gguf");
    LlamaModel m(load_fp(file));
    PtqOptions opt;
    opt.rules = SchemeRules::parse("*=int4-g32-sym");
    quantize_model(m.mutable_weights(), nullptr, opt);
    save_quantized_model(dir / "q.gguf", file, m.weights(), {"rtn", "*=int4-g32-sym", ""});
    const auto q = gguf::File::open(dir / "q.gguf");
    CHECK(q.tensor("blk.0.attn_q.weight").type == GgmlType::I8);
    LlamaModel loaded(load_fp(q));
    CHECK(all_logits(loaded, probe) == all_logits(m, probe));
}

TEST_CASE("Q4_0 / Q8_0 layers of other GGUF files are fp32 for the rules, or load as stored on request") {
    const tiny::TinyLlama t = tiny_with_whole_blocks(57, false);
    const auto dir = temp_dir("ggml_types_stock");
    t.write_gguf(dir / "tiny.gguf");
    // A llama.cpp-style file: the same model with Q4_0 blocks and a Q8_0 output layer, no qsafe keys.
    const auto f32 = gguf::File::open(dir / "tiny.gguf");
    {
        gguf::Writer w;
        for (const auto& e : f32.metadata()) w.set(e.key, e.value);
        for (const auto& info : f32.tensors()) {
            const auto v = f32.tensor_to_f32(info);
            const bool linear = info.dims.size() == 2 && info.name != "token_embd.weight";
            w.add_tensor_f32(info.name, info.dims, v,
                             !linear ? GgmlType::F32 : info.name == "output.weight" ? GgmlType::Q8_0 : GgmlType::Q4_0);
        }
        w.write(dir / "stock.gguf");
    }
    const auto stock = gguf::File::open(dir / "stock.gguf");
    const LlamaWeights as_fp32 = load_fp(stock);
    CHECK(as_fp32.layers[0].wq->scheme_name() == "fp32");
    CHECK(as_fp32.output->scheme_name() == "fp32");
    const LlamaWeights as_stored = load_fp(stock, GgmlBlockLayers::all);
    CHECK(as_stored.layers[0].wq->scheme_name() == "int4-g32-sym");
    CHECK(as_stored.output->scheme_name() == "int8-g32-sym");
    CHECK(as_stored.layers[1].w_down->dequantize() == as_fp32.layers[1].w_down->dequantize());
    CHECK(as_stored.output->dequantize() == as_fp32.output->dequantize());
    CHECK(as_stored.linear_bits_per_weight() < 5.0);
}

TEST_CASE("a layer marked with a scheme but stored in another ggml type is an error naming the file and tensor") {
    const tiny::TinyLlama t = tiny_with_whole_blocks(59, false);
    const auto dir = temp_dir("ggml_types_bad");
    t.write_gguf(dir / "tiny.gguf");
    const auto file = gguf::File::open(dir / "tiny.gguf");
    LlamaModel m(load_fp(file));
    PtqOptions opt;
    opt.rules = SchemeRules::parse("*=int4-g32-sym");
    quantize_model(m.mutable_weights(), nullptr, opt);
    save_quantized_model(dir / "q.gguf", file, m.weights(), {"rtn", "*=int4-g32-sym", ""});
    {
        const auto q = gguf::File::open(dir / "q.gguf");
        gguf::Writer w;
        for (const auto& e : q.metadata()) w.set(e.key, e.value);
        w.set("qsafe.tensor.blk.0.attn_k.weight.scheme", std::string("int8-g32-sym"));  // but the tensor is Q4_0
        for (const auto& info : q.tensors()) w.add_tensor_view(info.name, info.dims, info.type, q.tensor_bytes(info));
        w.write(dir / "bad.gguf");
    }
    const auto bad = gguf::File::open(dir / "bad.gguf");
    CHECK_THROWS_WITH_AS(load_fp(bad), doctest::Contains("'blk.0.attn_k.weight' is marked as qsafe scheme 'int8-g32-sym' but is a 2-D q4_0 tensor"),
                         format_error);
    CHECK_THROWS_WITH_AS(load_fp(bad), doctest::Contains("bad.gguf"), format_error);
}
