// GGUF reader/writer: round trips of every value and tensor type through the Writer, typed access rules,
// one test per malformed-file case (each must raise format_error naming the file and the problem), prefix
// truncation and byte-corruption sweeps (run under ASan), and the real SmolLM2 model when it is cached.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "common/skip.hpp"
#include "io/test_files.hpp"
#include "qsafe/formats/ggml_quantize.hpp"
#include "qsafe/io/gguf.hpp"
#include "qsafe/io/mmap_file.hpp"

using namespace qsafe;
using namespace qsafe::gguf;
using qsafe::test::check_error;
using qsafe::test::write_bytes;

namespace {

std::vector<std::byte> bytes_of(std::initializer_list<int> values) {
    std::vector<std::byte> out;
    for (const int v : values) out.push_back(static_cast<std::byte>(v));
    return out;
}

/// Hand-assembles GGUF bytes, including invalid ones.
struct Raw {
    std::vector<std::byte> b;
    template <class T>
    Raw& put(T v) {
        const auto* p = reinterpret_cast<const std::byte*>(&v);
        b.insert(b.end(), p, p + sizeof(T));
        return *this;
    }
    Raw& str(std::string_view s) {
        put<std::uint64_t>(s.size());
        for (const char c : s) b.push_back(static_cast<std::byte>(c));
        return *this;
    }
    Raw& header(std::uint64_t n_tensors, std::uint64_t n_kv, std::uint32_t version = 3) {
        return put<std::uint32_t>(0x46554747).put(version).put(n_tensors).put(n_kv);
    }
    Raw& tensor(std::string_view name, std::vector<std::uint64_t> dims, std::uint32_t type, std::uint64_t offset) {
        str(name).put<std::uint32_t>(static_cast<std::uint32_t>(dims.size()));
        for (const auto d : dims) put(d);
        return put(type).put(offset);
    }
    Raw& pad(std::size_t align = 32) {
        while (b.size() % align != 0) b.push_back(std::byte{0});
        return *this;
    }
    Raw& zeros(std::size_t n) {
        b.insert(b.end(), n, std::byte{0});
        return *this;
    }
};

void expect_malformed(const std::string& name, const std::vector<std::byte>& bytes,
                      std::initializer_list<std::string_view> fragments) {
    const auto path = write_bytes(name, bytes);
    check_error<format_error>([&] { (void)File::open(path); }, path, fragments);
}

Writer sample_writer() {
    Writer w;
    w.set("general.architecture", "llama");
    w.set("u8", std::uint8_t{200});
    w.set("i8", std::int8_t{-100});
    w.set("u16", std::uint16_t{60000});
    w.set("i16", std::int16_t{-30000});
    w.set("u32", std::uint32_t{4000000000u});
    w.set("i32", std::int32_t{-2000000000});
    w.set("f32", 0.25f);
    w.set("b", true);
    w.set("s", std::string("h\xC3\xA9llo"));
    w.set("u64", std::uint64_t{18000000000000000000ull});
    w.set("i64", std::int64_t{-9000000000000000000ll});
    w.set("f64", 1e300);
    w.set("tokens", Value::array_of(std::vector<std::string>{"<s>", "", "hello world"}));
    w.set("types", Value::array_of(std::vector<std::int32_t>{1, 2, 3}));
    w.set("scores", Value::array_of(std::vector<float>{-1.5f, 0.0f}));
    w.set("empty", Value::array(ValueType::UINT64, {}));
    w.set("nested", Value::array(ValueType::ARRAY,
                                 {Value::array_of(std::vector<std::int16_t>{1, -2}),
                                  Value::array_of(std::vector<std::string>{"x"}), Value::array(ValueType::BOOL, {})}));
    return w;
}

}  // namespace

TEST_CASE("mmap: bytes, bounds-checked reads, and errors naming file and offset") {
    const auto path = write_bytes("mmap.bin", bytes_of({1, 0, 0, 0, 0xFF, 7}));
    const auto file = io::MappedFile::open(path);
    CHECK(file.size() == 6);
    CHECK(file.path() == path);
    const io::ByteReader reader(file.bytes(), path.string());
    CHECK(reader.read<std::uint32_t>(0) == 1u);
    CHECK(reader.read<std::uint8_t>(4) == 0xFF);
    CHECK(reader.subspan(4, 2, "tail").size() == 2);
    check_error<format_error>([&] { (void)reader.read<std::uint32_t>(4, "tensor count"); }, path,
                              {"tensor count", "byte offset 4", "needs 4 bytes"});
    check_error<format_error>([&] { (void)reader.subspan(2, std::numeric_limits<std::uint64_t>::max(), "blob"); }, path,
                              {"blob", "byte offset 2"});
    io::ByteCursor cursor(reader, 4);
    CHECK(cursor.read<std::uint16_t>() == 0x07FF);
    CHECK(cursor.remaining() == 0);
    CHECK_THROWS_AS((void)cursor.read<std::uint8_t>(), format_error);

    auto moved = io::MappedFile::open(path);
    moved = io::MappedFile::open(path);  // move-assign over a live mapping
    CHECK(moved.bytes()[5] == std::byte{7});

    const auto empty = write_bytes("empty.bin", {});
    check_error<format_error>([&] { (void)io::MappedFile::open(empty); }, empty, {"empty"});
    const auto missing = qsafe::test::scratch_file("does-not-exist.gguf");
    check_error<io_error>([&] { (void)io::MappedFile::open(missing); }, missing, {"cannot open"});
    const auto dir = qsafe::test::scratch_dir();
    check_error<io_error>([&] { (void)io::MappedFile::open(dir); }, dir, {"not a regular file"});
}

TEST_CASE("gguf: every metadata type and tensor type round-trips through the writer") {
    Writer w = sample_writer();
    std::vector<float> values(64 * 3);
    for (std::size_t i = 0; i < values.size(); ++i) values[i] = std::sin(static_cast<float>(i)) * 2.0f;
    w.add_tensor_f32("f32", {64, 3}, values);
    w.add_tensor_f32("f16", {64, 3}, values, GgmlType::F16);
    w.add_tensor_f32("bf16", {64, 3}, values, GgmlType::BF16);
    w.add_tensor_f32("q4_0", {64, 3}, values, GgmlType::Q4_0);
    w.add_tensor_f32("q4_1", {64, 3}, values, GgmlType::Q4_1);
    w.add_tensor_f32("q8_0", {64, 3}, values, GgmlType::Q8_0);
    std::vector<std::byte> q6(2 * 210);
    for (std::size_t i = 0; i < q6.size(); ++i) q6[i] = static_cast<std::byte>(i * 37 % 251);
    w.add_tensor("q6_k", {256, 1, 2}, GgmlType::Q6_K, q6);
    std::vector<std::byte> iq(66);
    w.add_tensor_view("iq2_xxs", {256}, GgmlType::IQ2_XXS, iq);  // any type can be stored, even if not decodable
    w.add_tensor("scalar", {}, GgmlType::F32, std::vector<std::byte>(4, std::byte{0}));

    const auto path = qsafe::test::scratch_file("roundtrip.gguf");
    w.write(path);
    CHECK_FALSE(std::filesystem::exists(path.string() + ".tmp"));
    const File f = File::open(path);
    CHECK(f.version() == 3);
    CHECK(f.alignment() == 32);
    CHECK(f.data_offset() % 32 == 0);

    // metadata in file order with identical values
    REQUIRE(f.metadata().size() == w.metadata().size());
    for (std::size_t i = 0; i < w.metadata().size(); ++i) {
        CAPTURE(w.metadata()[i].key);
        CHECK(f.metadata()[i].key == w.metadata()[i].key);
        CHECK(f.metadata()[i].value == w.metadata()[i].value);
        CHECK(f.metadata()[i].value.type() == w.metadata()[i].value.type());
    }
    CHECK(f.get<std::string>("general.architecture") == "llama");
    CHECK(f.get<int>("u8") == 200);
    CHECK(f.get<int>("i8") == -100);
    CHECK(f.get<std::uint16_t>("u16") == 60000);
    CHECK(f.get<long>("i16") == -30000);
    CHECK(f.get<std::uint32_t>("u32") == 4000000000u);
    CHECK(f.get<std::int64_t>("i32") == -2000000000);
    CHECK(f.get<float>("f32") == 0.25f);
    CHECK(f.get<double>("f32") == 0.25);
    CHECK(f.get<bool>("b"));
    CHECK(f.get<std::string>("s") == "h\xC3\xA9llo");
    CHECK(f.get<std::uint64_t>("u64") == 18000000000000000000ull);
    CHECK(f.get<std::int64_t>("i64") == -9000000000000000000ll);
    CHECK(f.get<double>("f64") == 1e300);
    CHECK(f.get_array<std::string>("tokens") == std::vector<std::string>{"<s>", "", "hello world"});
    CHECK(f.get_array<std::int64_t>("types") == std::vector<std::int64_t>{1, 2, 3});
    CHECK(f.get_array<float>("scores") == std::vector<float>{-1.5f, 0.0f});
    CHECK(f.get_array<std::uint64_t>("empty").empty());
    const Array* nested = f.find("nested")->array();
    REQUIRE(nested != nullptr);
    CHECK(nested->element_type == ValueType::ARRAY);
    REQUIRE(nested->items.size() == 3);
    CHECK(nested->items[0].array()->element_type == ValueType::INT16);
    CHECK(*nested->items[0].array()->items[1].get_if<std::int16_t>() == -2);
    CHECK(*nested->items[1].array()->items[0].get_if<std::string>() == "x");
    CHECK(f.find("nested")->to_string() == "[[1, -2], [\"x\"], []]");

    // tensors in file order, bytes identical, dequantization as the reference
    REQUIRE(f.tensors().size() == 9);
    CHECK(f.tensors()[0].name == "f32");
    CHECK(f.tensor("f32").dims == std::vector<std::uint64_t>{64, 3});
    CHECK(f.tensor("f32").rows() == 3);
    CHECK(f.tensor("f32").row_length() == 64);
    CHECK(f.tensor_to_f32(f.tensor("f32")) == values);
    for (const auto type : {GgmlType::F16, GgmlType::BF16, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0}) {
        const auto& info = f.tensor(ggml_type_name(type));
        CHECK(info.type == type);
        CHECK(info.offset % 32 == 0);
        std::vector<std::byte> expected(info.n_bytes());
        quantize_row(type, values, expected);
        const auto stored = f.tensor_bytes(info);
        CHECK(std::vector<std::byte>(stored.begin(), stored.end()) == expected);
        std::vector<float> decoded(values.size());
        dequantize_row(type, expected, decoded);
        CHECK(f.tensor_to_f32(info) == decoded);
    }
    const auto& q6_info = f.tensor("q6_k");
    CHECK(q6_info.rows() == 2);
    CHECK(q6_info.n_bytes() == 420);
    const auto q6_stored = f.tensor_bytes(q6_info);
    CHECK(std::vector<std::byte>(q6_stored.begin(), q6_stored.end()) == q6);
    CHECK(f.tensor_to_f32(q6_info).size() == 512);
    CHECK(f.tensor("scalar").n_elements() == 1);
    check_error<config_error>([&] { (void)f.tensor_to_f32(f.tensor("iq2_xxs")); }, path, {"iq2_xxs"});
    check_error<format_error>([&] { (void)f.tensor("nope"); }, path, {"tensor 'nope'", "missing"});
    CHECK(f.find_tensor("nope") == nullptr);
}

TEST_CASE("gguf: typed access errors name the file and key") {
    const auto path = qsafe::test::scratch_file("typed.gguf");
    sample_writer().write(path);
    const File f = File::open(path);
    check_error<format_error>([&] { (void)f.get<int>("llama.block_count"); }, path, {"'llama.block_count'", "missing"});
    check_error<format_error>([&] { (void)f.get<std::string>("u32"); }, path,
                              {"'u32'", "has type uint32", "expected string"});
    check_error<format_error>([&] { (void)f.get<int>("f32"); }, path, {"has type float32", "expected an integer"});
    check_error<format_error>([&] { (void)f.get<float>("u8"); }, path, {"has type uint8", "expected a float"});
    check_error<format_error>([&] { (void)f.get<bool>("u8"); }, path, {"expected bool"});
    check_error<format_error>([&] { (void)f.get<std::uint8_t>("u16"); }, path, {"'u16'", "60000", "does not fit"});
    check_error<format_error>([&] { (void)f.get<std::uint32_t>("i8"); }, path, {"-100", "does not fit"});
    check_error<format_error>([&] { (void)f.get<std::int32_t>("u64"); }, path, {"does not fit"});
    check_error<format_error>([&] { (void)f.get_array<int>("u8"); }, path, {"'u8'", "expected array"});
    check_error<format_error>([&] { (void)f.get_array<int>("tokens"); }, path, {"element 0", "has type string"});
    check_error<format_error>([&] { (void)f.get_array<std::int8_t>("nested"); }, path, {"has type array"});
    CHECK_FALSE(f.get_optional<int>("missing").has_value());
    CHECK(f.get_optional<int>("u8") == 200);
    CHECK_THROWS_AS((void)f.get_optional<std::string>("u8"), format_error);
    CHECK(f.has("b"));
    // integer types that are not fixed-width aliases map to the GGUF type of the same size and sign
    CHECK(Value(5ull).type() == ValueType::UINT64);
    CHECK(Value(-5ll).type() == ValueType::INT64);
    CHECK(Value(5).type() == ValueType::INT32);
    CHECK(Value(true).type() == ValueType::BOOL);
    CHECK(Value("text").type() == ValueType::STRING);
    CHECK_FALSE(f.has("c"));
}

TEST_CASE("gguf: custom alignment and v2 files") {
    Writer w;
    w.set("general.alignment", std::uint32_t{64});
    w.add_tensor_f32("a", {3}, std::vector<float>{1, 2, 3});
    w.add_tensor_f32("b", {5}, std::vector<float>{4, 5, 6, 7, 8});
    auto bytes = w.to_bytes();
    const auto path = write_bytes("align64.gguf", bytes);
    const File f = File::open(path);
    CHECK(f.alignment() == 64);
    CHECK(f.data_offset() % 64 == 0);
    CHECK(f.tensor("b").offset == 64);
    CHECK(f.tensor_to_f32(f.tensor("b")) == std::vector<float>{4, 5, 6, 7, 8});

    bytes[4] = std::byte{2};  // v2 has the same layout as v3 (v3 only adds big-endian support)
    const auto v2 = write_bytes("v2.gguf", bytes);
    CHECK(File::open(v2).version() == 2);

    CHECK_THROWS_AS(w.set("general.alignment", std::uint32_t{48}), config_error);
    CHECK_THROWS_AS(w.set("general.alignment", std::uint64_t{64}), config_error);
    CHECK_THROWS_AS(w.add_tensor("a", {3}, GgmlType::F32, std::vector<std::byte>(12)), config_error);
    CHECK_THROWS_AS(w.add_tensor("c", {3}, GgmlType::F32, std::vector<std::byte>(8)), shape_error);
    CHECK_THROWS_AS(w.add_tensor("c", {33}, GgmlType::Q4_0, std::vector<std::byte>(18)), shape_error);
    CHECK_THROWS_AS(w.add_tensor("c", {1, 1, 1, 1, 1}, GgmlType::F32, std::vector<std::byte>(4)), shape_error);
}

TEST_CASE("gguf malformed: bad magic, unsupported version, big-endian") {
    auto good = Raw().header(0, 0).b;
    auto bad = good;
    bad[0] = std::byte{'X'};
    expect_malformed("magic.gguf", bad, {"magic", "not a GGUF file"});
    for (const std::uint32_t version : {1u, 4u, 0u}) {
        expect_malformed("version.gguf", Raw().header(0, 0, version).b,
                         {"unsupported GGUF version " + std::to_string(version)});
    }
    expect_malformed("big.gguf", Raw().header(0, 0, 0x03000000u).b, {"big-endian"});
}

TEST_CASE("gguf malformed: truncated header and metadata") {
    expect_malformed("short.gguf", bytes_of({'G', 'G', 'U', 'F', 3, 0}), {"version", "byte offset 4"});
    expect_malformed("kv-count.gguf", Raw().header(0, 1000).b, {"metadata count", "cannot fit"});
    expect_malformed("t-count.gguf", Raw().header(1ull << 60, 0).b, {"tensor count", "cannot fit"});
    expect_malformed("trunc-value.gguf", Raw().header(0, 1).str("k").put<std::uint32_t>(4).put<std::uint16_t>(1).b,
                     {"key 'k'", "needs 4 bytes"});
}

TEST_CASE("gguf malformed: string longer than the file") {
    expect_malformed("long-key.gguf", Raw().header(0, 1).put<std::uint64_t>(1ull << 40).zeros(64).b,
                     {"key of metadata entry #0", "string length 1099511627776"});
    expect_malformed("long-value.gguf",
                     Raw().header(0, 1).str("name").put<std::uint32_t>(8).put<std::uint64_t>(~0ull).b,
                     {"key 'name'", "exceeds"});
    expect_malformed("long-tensor.gguf", Raw().header(1, 0).put<std::uint64_t>(100).zeros(64).b,
                     {"name of tensor #0", "exceeds"});
}

TEST_CASE("gguf malformed: unknown value type, bad bool, oversized and too deep arrays, duplicate key") {
    expect_malformed("vtype.gguf", Raw().header(0, 1).str("k").put<std::uint32_t>(13).zeros(8).b,
                     {"key 'k'", "unknown value type 13"});
    expect_malformed("atype.gguf",
                     Raw().header(0, 1).str("k").put<std::uint32_t>(9).put<std::uint32_t>(99).put<std::uint64_t>(0).b,
                     {"key 'k'", "unknown value type 99"});
    expect_malformed("bool.gguf", Raw().header(0, 1).str("flag").put<std::uint32_t>(7).put<std::uint8_t>(2).b,
                     {"key 'flag'", "bool value 2"});
    expect_malformed(
        "big-array.gguf",
        Raw().header(0, 1).str("arr").put<std::uint32_t>(9).put<std::uint32_t>(8).put<std::uint64_t>(1ull << 61).b,
        {"key 'arr'", "cannot fit"});
    Raw deep;
    deep.header(0, 1).str("deep").put<std::uint32_t>(9);
    for (int i = 0; i < 20; ++i) deep.put<std::uint32_t>(9).put<std::uint64_t>(1);
    deep.zeros(64);
    expect_malformed("deep.gguf", deep.b, {"key 'deep'", "nested deeper"});
    expect_malformed("dup.gguf",
                     Raw()
                         .header(0, 2)
                         .str("a")
                         .put<std::uint32_t>(0)
                         .put<std::uint8_t>(1)
                         .str("a")
                         .put<std::uint32_t>(0)
                         .put<std::uint8_t>(1)
                         .b,
                     {"key 'a'", "duplicate key"});
    expect_malformed("align.gguf",
                     Raw().header(0, 1).str("general.alignment").put<std::uint32_t>(4).put<std::uint32_t>(24).b,
                     {"general.alignment", "power of two"});
}

TEST_CASE("gguf malformed: tensor infos") {
    expect_malformed("ndims.gguf", Raw().header(1, 0).tensor("w", {1, 1, 1, 1, 1}, 0, 0).pad().zeros(32).b,
                     {"tensor 'w'", "5 dimensions"});
    expect_malformed("overflow.gguf", Raw().header(1, 0).tensor("w", {1ull << 32, 1ull << 32}, 0, 0).pad().b,
                     {"tensor 'w'", "overflow"});
    expect_malformed("huge-dim.gguf", Raw().header(1, 0).tensor("w", {~0ull}, 0, 0).pad().b,
                     {"tensor 'w'", "overflow"});
    expect_malformed("bytes-overflow.gguf", Raw().header(1, 0).tensor("w", {1ull << 62}, 0, 0).pad().b,
                     {"tensor 'w'", "byte size overflows"});
    expect_malformed("type.gguf", Raw().header(1, 0).tensor("w", {32}, 4, 0).pad().zeros(32).b,
                     {"tensor 'w'", "unknown ggml type id 4"});
    expect_malformed("type2.gguf", Raw().header(1, 0).tensor("w", {32}, 1000, 0).pad().zeros(32).b,
                     {"unknown ggml type id 1000"});
    expect_malformed("block.gguf", Raw().header(1, 0).tensor("w", {33}, 2, 0).pad().zeros(64).b,
                     {"tensor 'w'", "not a multiple of the q4_0 block size 32"});
    expect_malformed("dup-tensor.gguf",
                     Raw().header(2, 0).tensor("w", {4}, 0, 0).tensor("w", {4}, 0, 32).pad().zeros(64).b,
                     {"tensor 'w'", "duplicate tensor name"});
}

TEST_CASE("gguf malformed: tensor data placement") {
    expect_malformed("past-end.gguf", Raw().header(1, 0).tensor("w", {8}, 0, 0).pad().zeros(31).b,
                     {"tensor 'w'", "past the end"});
    expect_malformed("offset-past-end.gguf", Raw().header(1, 0).tensor("w", {8}, 0, 1ull << 50).pad().zeros(32).b,
                     {"tensor 'w'", "past the end"});
    expect_malformed("offset-wrap.gguf", Raw().header(1, 0).tensor("w", {8}, 0, ~0ull - 31).pad().zeros(32).b,
                     {"tensor 'w'", "past the end"});
    expect_malformed("misaligned.gguf", Raw().header(1, 0).tensor("w", {4}, 0, 16).pad().zeros(64).b,
                     {"tensor 'w'", "not a multiple of the alignment 32"});
    expect_malformed("overlap.gguf",
                     Raw().header(2, 0).tensor("a", {16}, 0, 0).tensor("b", {4}, 0, 32).pad().zeros(96).b,
                     {"tensor 'b'", "overlaps tensor 'a'"});
    expect_malformed("overlap2.gguf",
                     Raw().header(2, 0).tensor("a", {4}, 0, 64).tensor("b", {32}, 0, 0).pad().zeros(128).b,
                     {"tensor 'a'", "overlaps tensor 'b'"});
    expect_malformed("no-data.gguf", Raw().header(1, 0).tensor("w", {4}, 0, 0).b, {"tensor 'w'", "past the end"});
    // a file with no tensors needs no data section, and zero-size tensors may share offsets
    const auto ok =
        write_bytes("empty-tensors.gguf", Raw().header(2, 0).tensor("a", {0}, 0, 0).tensor("b", {0, 3}, 2, 0).b);
    const File f = File::open(ok);
    CHECK(f.tensor("b").n_bytes() == 0);
    CHECK(f.tensor_to_f32(f.tensor("b")).empty());
}

TEST_CASE("gguf malformed: every truncation of a valid file is rejected cleanly") {
    Writer w = sample_writer();
    w.add_tensor_f32("t", {32, 2}, std::vector<float>(64, 0.5f), GgmlType::Q8_0);
    const auto bytes = w.to_bytes();
    const File full = File::open(write_bytes("full.gguf", bytes));
    // the padding after the last tensor is not needed; every shorter prefix must be rejected
    const std::uint64_t needed = full.data_offset() + full.tensor("t").offset + full.tensor("t").n_bytes();
    for (std::size_t n = 0; n < bytes.size(); ++n) {
        CAPTURE(n);
        const auto path = write_bytes("prefix.gguf", std::span(bytes).first(n));
        if (n >= needed) {
            CHECK_NOTHROW((void)File::open(path));
            continue;
        }
        try {
            (void)File::open(path);
            FAIL("prefix accepted");
        } catch (const format_error& e) {
            CHECK(std::string(e.what()).find(path.string()) != std::string::npos);
        }
    }
}

TEST_CASE("gguf malformed: corrupted bytes never crash") {
    Writer w = sample_writer();
    w.add_tensor_f32("t", {32, 2}, std::vector<float>(64, 0.5f), GgmlType::Q4_1);
    const auto bytes = w.to_bytes();
    std::uint32_t state = 12345;
    int opened = 0, rejected = 0;
    for (int trial = 0; trial < 400; ++trial) {
        auto corrupt = bytes;
        for (int k = 0; k < 3; ++k) {
            state = state * 1664525u + 1013904223u;
            const std::size_t pos = (state >> 8) % corrupt.size();
            state = state * 1664525u + 1013904223u;
            corrupt[pos] = static_cast<std::byte>(state >> 24);
        }
        const auto path = write_bytes("corrupt.gguf", corrupt);
        try {
            const File f = File::open(path);
            for (const auto& t : f.tensors()) {
                if (can_dequantize(t.type)) (void)f.tensor_to_f32(t);
            }
            ++opened;
        } catch (const qsafe::error&) {
            ++rejected;
        }
    }
    CHECK(opened + rejected == 400);
    MESSAGE("corrupted files: ", opened, " still valid, ", rejected, " rejected");
}

TEST_CASE("gguf: real SmolLM2-135M-Instruct Q4_1 model") {
    const auto path = qsafe::test::cached_model();
    if (path.empty()) {
        test_fixtures::skip_test("SmolLM2-135M-Instruct.Q4_1.gguf not found in $QSAFE_CACHE_DIR or ~/.cache/qsafe "
                                 "(scripts/fetch_model.sh fetches it)");
        return;
    }
    const File f = File::open(path);
    CHECK(f.version() == 3);
    CHECK(f.get<std::string>("general.architecture") == "llama");
    CHECK(f.get<int>("llama.block_count") == 30);
    CHECK(f.get<int>("llama.embedding_length") == 576);
    CHECK(f.get<int>("llama.attention.head_count") == 9);
    CHECK(f.get<int>("llama.attention.head_count_kv") == 3);
    CHECK(f.get<float>("llama.rope.freq_base") == 100000.0f);
    CHECK(f.get_array<std::string>("tokenizer.ggml.tokens").size() == 49152);
    CHECK(f.get_array<std::int32_t>("tokenizer.ggml.token_type").size() == 49152);
    CHECK(f.get_array<std::string>("tokenizer.ggml.merges").size() == 48900);
    CHECK(f.tensors().size() == 272);
    const auto& q = f.tensor("blk.0.attn_q.weight");
    CHECK(q.type == GgmlType::Q4_1);
    CHECK(q.dims == std::vector<std::uint64_t>{576, 576});
    const auto& embd = f.tensor("token_embd.weight");
    CHECK(embd.type == GgmlType::Q8_0);
    CHECK(embd.rows() == 49152);
    const auto w = f.tensor_to_f32(q);
    double sum_sq = 0;
    for (const float v : w) sum_sq += static_cast<double>(v) * v;
    CHECK(std::isfinite(sum_sq));
    CHECK(sum_sq > 0.0);
}
