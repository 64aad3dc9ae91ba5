// safetensors: writer -> reader round trips (F32/F16/BF16, metadata, integer tensors), sharded checkpoints
// through model.safetensors.index.json, and malformed headers (each a format_error naming file and tensor).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "io/test_files.hpp"
#include "qsafe/core/half.hpp"
#include "qsafe/io/safetensors.hpp"

using namespace qsafe;
using namespace qsafe::safetensors;
using qsafe::test::check_error;
using qsafe::test::write_bytes;
using qsafe::test::write_text;

namespace {

/// A safetensors file from a header string and a data section of `data_size` zero bytes.
std::vector<std::byte> raw_file(const std::string& header, std::size_t data_size) {
    std::vector<std::byte> out(8);
    const std::uint64_t n = header.size();
    std::memcpy(out.data(), &n, 8);
    for (const char c : header) out.push_back(static_cast<std::byte>(c));
    out.insert(out.end(), data_size, std::byte{0});
    return out;
}

void expect_malformed(const std::string& name, const std::vector<std::byte>& bytes,
                      std::initializer_list<std::string_view> fragments) {
    const auto path = write_bytes(name, bytes);
    check_error<format_error>([&] { (void)File::open(path); }, path, fragments);
}

std::vector<float> ramp(std::size_t n, float scale) {
    std::vector<float> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = (static_cast<float>(i) - 7.0f) * scale;
    return v;
}

}  // namespace

TEST_CASE("safetensors: F32/F16/BF16 round trip, metadata, header order, raw integer tensors") {
    Writer w;
    w.set_metadata("format", "pt");
    const auto a = ramp(6, 0.3f);
    const auto b = ramp(12, 1.7f);
    w.add_tensor_f32("model.layers.0.self_attn.q_proj.weight", {2, 3}, a);
    w.add_tensor_f32("b.f16", {3, 4}, b, Dtype::F16);
    w.add_tensor_f32("a.bf16", {12}, b, Dtype::BF16);
    std::vector<std::byte> ids(3 * 8);
    const std::int64_t id_values[3] = {5, -1, 1ll << 40};
    std::memcpy(ids.data(), id_values, sizeof(id_values));
    w.add_tensor("ids", Dtype::I64, {3}, ids);
    w.add_tensor("empty", Dtype::F32, {0, 4}, {});
    const auto path = qsafe::test::scratch_file("model.safetensors");
    w.write(path);

    const File f = File::open(path);
    CHECK(f.data_offset() % 8 == 0);
    CHECK(f.metadata().at("format") == "pt");
    REQUIRE(f.tensors().size() == 5);
    CHECK(f.tensors()[0].name == "model.layers.0.self_attn.q_proj.weight");  // file order, not sorted
    CHECK(f.tensors()[2].name == "a.bf16");
    const auto& q = f.tensor("model.layers.0.self_attn.q_proj.weight");
    CHECK(q.shape == std::vector<std::uint64_t>{2, 3});
    CHECK(q.rows() == 2);
    CHECK(q.row_length() == 3);
    CHECK(f.tensor_to_f32(q) == a);
    const auto f16 = f.tensor_to_f32(f.tensor("b.f16"));
    const auto bf16 = f.tensor_to_f32(f.tensor("a.bf16"));
    for (std::size_t i = 0; i < b.size(); ++i) {
        CHECK(f16[i] == round_to_fp16(b[i]));
        CHECK(bf16[i] == bf16_bits_to_float(float_to_bf16_bits(b[i])));
    }
    const auto& ids_info = f.tensor("ids");
    CHECK(ids_info.dtype == Dtype::I64);
    const auto raw = f.tensor_bytes(ids_info);
    CHECK(std::vector<std::byte>(raw.begin(), raw.end()) == ids);
    check_error<config_error>([&] { (void)f.tensor_to_f32(ids_info); }, path, {"tensor 'ids'", "I64"});
    CHECK(f.tensor_to_f32(f.tensor("empty")).empty());
    check_error<format_error>([&] { (void)f.tensor("nope"); }, path, {"tensor 'nope'", "missing"});

    CHECK_THROWS_AS(w.add_tensor("x", Dtype::F32, {2}, std::vector<std::byte>(4)), shape_error);
    CHECK_THROWS_AS(w.add_tensor("ids", Dtype::I64, {3}, ids), config_error);
    CHECK_THROWS_AS(w.add_tensor_f32("y", {1}, a, Dtype::I8), config_error);
}

TEST_CASE("safetensors: known bytes of a hand-written file") {
    const std::string header =
        R"({"__metadata__":{"k":"v","n":3},"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})";
    auto bytes = raw_file(header, 4);
    const std::uint16_t halves[2] = {0x3C00, 0xC000};  // 1, -2
    std::memcpy(bytes.data() + 8 + header.size(), halves, 4);
    const File f = File::open(write_bytes("hand.safetensors", bytes));
    CHECK(f.metadata().size() == 1);  // non-string metadata values are skipped
    CHECK(f.tensor_to_f32(f.tensor("w")) == std::vector<float>{1.0f, -2.0f});
}

TEST_CASE("safetensors malformed headers") {
    expect_malformed("short.safetensors", std::vector<std::byte>(5), {"header length", "needs 8 bytes"});
    auto too_long = raw_file("{}", 0);
    too_long[0] = std::byte{100};
    expect_malformed("header-long.safetensors", too_long, {"header length", "exceeds"});
    expect_malformed("json.safetensors", raw_file(R"({"w": {"dtype": "F32",)", 0), {"header", "invalid JSON"});
    expect_malformed("array.safetensors", raw_file("[1, 2]", 0), {"not an object"});
    expect_malformed("dtype.safetensors", raw_file(R"({"w":{"dtype":"F7","shape":[1],"data_offsets":[0,1]}})", 1),
                     {"tensor 'w'", "unknown dtype \"F7\""});
    expect_malformed("no-dtype.safetensors", raw_file(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", 4),
                     {"tensor 'w'", "dtype"});
    expect_malformed("shape.safetensors", raw_file(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4),
                     {"tensor 'w'", "shape entry -1"});
    expect_malformed("shape-overflow.safetensors",
                     raw_file(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", 4),
                     {"tensor 'w'", "overflows"});
    expect_malformed("past-end.safetensors", raw_file(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 12),
                     {"tensor 'w'", "past the end"});
    expect_malformed(
        "huge-offset.safetensors",
        raw_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[18446744073709551612,18446744073709551615]}})", 4),
        {"tensor 'w'", "past the end"});
    expect_malformed("bytes.safetensors", raw_file(R"({"w":{"dtype":"F16","shape":[2,3],"data_offsets":[0,8]}})", 8),
                     {"tensor 'w'", "hold 8 bytes", "needs 12"});
    expect_malformed("reversed.safetensors", raw_file(R"({"w":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}})", 4),
                     {"tensor 'w'", "begin after end"});
    expect_malformed("offsets.safetensors", raw_file(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0]}})", 4),
                     {"tensor 'w'", "data_offsets"});
    expect_malformed("overlap.safetensors",
                     raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                              R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                              12),
                     {"tensor 'b'", "overlap tensor 'a'"});
    expect_malformed("meta.safetensors", raw_file(R"({"__metadata__":[1]})", 0), {"__metadata__"});
    // A shape nested 10^5 deep: parsed fine, but any recursive use of it would overflow the stack. Level 257
    // is opened by the shape's 255th '[' (the object and "w" are levels 1 and 2), 8 header-length bytes in.
    const std::string deep = R"({"w":{"dtype":"F32","data_offsets":[0,4],"shape":)" + std::string(100000, '[') +
                             std::string(100000, ']') + "}}";
    expect_malformed("deep.safetensors", raw_file(deep, 4),
                     {"header at byte offset " + std::to_string(8 + 49 + 254), "JSON nested deeper than 256 levels"});
}

TEST_CASE("safetensors: every truncation of a valid file is rejected") {
    Writer w;
    w.add_tensor_f32("x", {4, 2}, ramp(8, 0.5f), Dtype::BF16);
    w.add_tensor_f32("y", {3}, ramp(3, 0.5f));
    const auto bytes = w.to_bytes();
    CHECK_NOTHROW((void)File::open(write_bytes("full.safetensors", bytes)));
    for (std::size_t n = 0; n < bytes.size(); ++n) {
        CAPTURE(n);
        const auto path = write_bytes("prefix.safetensors", std::span(bytes).first(n));
        CHECK_THROWS_AS((void)File::open(path), format_error);
    }
}

TEST_CASE("safetensors: sharded checkpoint through model.safetensors.index.json") {
    const auto dir = qsafe::test::scratch_dir() / "sharded";
    std::filesystem::create_directories(dir);
    Writer s1, s2;
    s1.add_tensor_f32("embed", {2, 2}, std::vector<float>{1, 2, 3, 4});
    s1.add_tensor_f32("layer.0", {2}, std::vector<float>{5, 6}, Dtype::F16);
    s2.add_tensor_f32("layer.1", {2}, std::vector<float>{7, 8}, Dtype::BF16);
    s1.write(dir / "model-00001-of-00002.safetensors");
    s2.write(dir / "model-00002-of-00002.safetensors");
    write_text("sharded/model.safetensors.index.json",
               R"({"metadata": {"total_size": 24}, "weight_map": {"embed": "model-00001-of-00002.safetensors",
                  "layer.0": "model-00001-of-00002.safetensors", "layer.1": "model-00002-of-00002.safetensors"}})");
    const auto checkpoint = Checkpoint::open(dir);
    CHECK(checkpoint.shards().size() == 2);
    CHECK(checkpoint.size() == 3);
    CHECK(checkpoint.tensor_names() == std::vector<std::string>{"embed", "layer.0", "layer.1"});
    CHECK(checkpoint.tensor_to_f32("layer.1") == std::vector<float>{7, 8});
    CHECK(checkpoint.tensor_to_f32("layer.0") == std::vector<float>{5, 6});
    CHECK(checkpoint.tensor("embed").shape == std::vector<std::uint64_t>{2, 2});
    CHECK(checkpoint.file_of("layer.1").path() == dir / "model-00002-of-00002.safetensors");
    CHECK(checkpoint.tensor_bytes("embed").size() == 16);
    CHECK_FALSE(checkpoint.has("layer.2"));
    check_error<format_error>([&] { (void)checkpoint.tensor("layer.2"); }, dir, {"tensor 'layer.2'", "missing"});
    CHECK(Checkpoint::open(dir / "model.safetensors.index.json").size() == 3);

    // single-file checkpoints: a folder with model.safetensors, or the file itself
    const auto single = qsafe::test::scratch_dir() / "single";
    std::filesystem::create_directories(single);
    s2.write(single / "model.safetensors");
    CHECK(Checkpoint::open(single).tensor_to_f32("layer.1") == std::vector<float>{7, 8});
    CHECK(Checkpoint::open(single / "model.safetensors").has("layer.1"));
    const auto nothing = qsafe::test::scratch_dir() / "nothing";
    std::filesystem::create_directories(nothing);
    check_error<io_error>([&] { (void)Checkpoint::open(nothing); }, nothing, {"model.safetensors"});

    // broken indexes
    const auto bad = write_text("sharded/bad.index.json", R"({"weight_map": {"embed": "../etc/passwd"}})");
    check_error<format_error>([&] { (void)Checkpoint::open(bad); }, bad, {"tensor 'embed'", "not a file name"});
    const auto wrong =
        write_text("sharded/wrong.index.json", R"({"weight_map": {"layer.1": "model-00001-of-00002.safetensors"}})");
    check_error<format_error>([&] { (void)Checkpoint::open(wrong); }, wrong,
                              {"tensor 'layer.1'", "not found in shard"});
    const auto no_map = write_text("sharded/nomap.index.json", R"({"metadata": {}})");
    check_error<format_error>([&] { (void)Checkpoint::open(no_map); }, no_map, {"weight_map"});
    const auto not_json = write_text("sharded/notjson.index.json", "{");
    check_error<format_error>([&] { (void)Checkpoint::open(not_json); }, not_json, {"invalid JSON"});
    const auto missing_shard = write_text("sharded/missing.index.json", R"({"weight_map": {"x": "gone.safetensors"}})");
    CHECK_THROWS_AS((void)Checkpoint::open(missing_shard), io_error);
}
