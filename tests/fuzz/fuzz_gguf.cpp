// libFuzzer harness: the GGUF reader (io/gguf_reader.hpp: header, metadata values and nested arrays, tensor
// infos, alignment, data offsets and overlaps), typed metadata access, and dequantization of every tensor of
// every ggml block type the reader dequantizes (formats/ggml_dequantize.hpp) through File::tensor_to_f32.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_common.hpp"
#include "qsafe/io/gguf.hpp"

namespace {

template <class F>
void expect_qsafe_error(F&& f) {
    try {
        f();
    } catch (const qsafe::error&) {
    }
}

void exercise(const qsafe::gguf::File& file) {
    qsafe_fuzz::consume(file.data_offset());
    for (const auto& entry : file.metadata()) {
        const std::string& key = entry.key;
        if (entry.value.array() == nullptr || entry.value.array()->items.size() < 4096)
            qsafe_fuzz::consume(entry.value.to_string());
        expect_qsafe_error([&] { qsafe_fuzz::consume(file.get<std::uint32_t>(key)); });
        expect_qsafe_error([&] { qsafe_fuzz::consume(file.get<std::int64_t>(key)); });
        expect_qsafe_error([&] { qsafe_fuzz::consume(file.get<std::size_t>(key)); });
        expect_qsafe_error([&] { qsafe_fuzz::consume(file.get<float>(key)); });
        expect_qsafe_error([&] { qsafe_fuzz::consume(file.get<bool>(key)); });
        expect_qsafe_error([&] { qsafe_fuzz::consume(file.get<std::string>(key)); });
        expect_qsafe_error([&] { qsafe_fuzz::consume(file.get_array<std::string>(key)); });
        expect_qsafe_error([&] { qsafe_fuzz::consume(file.get_array<float>(key)); });
        expect_qsafe_error([&] { qsafe_fuzz::consume(file.get_array<std::int32_t>(key)); });
    }
    for (const auto& t : file.tensors()) {
        const auto bytes = file.tensor_bytes(t);
        qsafe_fuzz::consume(bytes);
        qsafe_fuzz::consume(t.rows());
        if (!qsafe::can_dequantize(t.type) || t.n_elements() > qsafe_fuzz::max_elements) continue;
        expect_qsafe_error([&] {
            const std::vector<float> values = file.tensor_to_f32(t);
            float sum = 0;
            for (const float v : values) sum += v;
            qsafe_fuzz::consume(sum);
        });
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto path = qsafe_fuzz::write_file("input.gguf", data, size);
    try {
        const auto file = qsafe::gguf::File::open(path);
        exercise(file);
    } catch (const qsafe::error& e) {
        qsafe_fuzz::rejected(e);
    }
    return 0;
}
