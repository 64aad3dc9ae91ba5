// libFuzzer harness: the safetensors reader (io/safetensors.hpp). The first input byte picks the mode:
//   even: the rest is one .safetensors file, read through File::open and Checkpoint::open (header JSON,
//         dtypes, shapes, data_offsets, overlaps, __metadata__), every F32/F16/BF16 tensor read as float;
//   odd:  the rest is split (4-byte little-endian length, fuzz_common.hpp split_input) into a sharded
//         checkpoint's model.safetensors.index.json and one shard written as
//         model-00001-of-00001.safetensors next to it, opened through Checkpoint::open(index) and read
//         tensor by tensor by name.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_common.hpp"
#include "qsafe/io/safetensors.hpp"

namespace {

void read_all(const qsafe::safetensors::File& file) {
    qsafe_fuzz::consume(file.metadata().size());
    for (const auto& t : file.tensors()) {
        qsafe_fuzz::consume(file.tensor_bytes(t));
        qsafe_fuzz::consume(t.rows());
        if (!qsafe::safetensors::can_convert_to_f32(t.dtype) || t.n_elements() > qsafe_fuzz::max_elements) continue;
        const std::vector<float> v = file.tensor_to_f32(t);
        qsafe_fuzz::consume(v);
    }
}

void read_all(const qsafe::safetensors::Checkpoint& ckpt) {
    for (const auto& name : ckpt.tensor_names()) {
        const auto& t = ckpt.tensor(name);
        qsafe_fuzz::consume(ckpt.tensor_bytes(name));
        if (!qsafe::safetensors::can_convert_to_f32(t.dtype) || t.n_elements() > qsafe_fuzz::max_elements) continue;
        const std::vector<float> v = ckpt.tensor_to_f32(name);
        qsafe_fuzz::consume(v);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const bool sharded = (data[0] & 1) != 0;
    ++data;
    --size;
    try {
        if (!sharded) {
            const auto path = qsafe_fuzz::write_file("model.safetensors", data, size);
            try {
                read_all(qsafe::safetensors::File::open(path));
            } catch (const qsafe::error&) {
            }
            read_all(qsafe::safetensors::Checkpoint::open(path));
        } else {
            const auto parts = qsafe_fuzz::split_input(data, size);
            qsafe_fuzz::write_file("model-00001-of-00001.safetensors", parts.second);
            const auto index = qsafe_fuzz::write_file("model.safetensors.index.json", parts.first);
            read_all(qsafe::safetensors::Checkpoint::open(index));
        }
    } catch (const qsafe::error& e) {
        qsafe_fuzz::rejected(e);
    }
    return 0;
}
