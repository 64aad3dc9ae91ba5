#pragma once
// safetensors (Hugging Face) reading and writing. File: 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype": "F16", "shape": [rows, cols], "data_offsets": [begin, end]}, "__metadata__": {...}},
// then the data; offsets are relative to the byte after the header. Shapes are in PyTorch order (last
// dimension contiguous), the reverse of GGUF's dims. The header is untrusted: every field, size and offset is
// checked before use and errors are format_error naming the file and the tensor.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "qsafe/core/error.hpp"
#include "qsafe/core/half.hpp"
#include "qsafe/core/json_depth.hpp"
#include "qsafe/io/atomic_write.hpp"
#include "qsafe/io/mmap_file.hpp"

namespace qsafe::safetensors {

enum class Dtype { BOOL, U8, I8, F8_E4M3, F8_E5M2, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64 };

struct DtypeTraits {
    Dtype dtype;
    std::string_view name;
    std::uint32_t size;
};

inline constexpr DtypeTraits dtype_table[] = {
    {Dtype::BOOL, "BOOL", 1},       {Dtype::U8, "U8", 1},   {Dtype::I8, "I8", 1},   {Dtype::F8_E4M3, "F8_E4M3", 1},
    {Dtype::F8_E5M2, "F8_E5M2", 1}, {Dtype::I16, "I16", 2}, {Dtype::U16, "U16", 2}, {Dtype::F16, "F16", 2},
    {Dtype::BF16, "BF16", 2},       {Dtype::I32, "I32", 4}, {Dtype::U32, "U32", 4}, {Dtype::F32, "F32", 4},
    {Dtype::F64, "F64", 8},         {Dtype::I64, "I64", 8}, {Dtype::U64, "U64", 8},
};

constexpr std::string_view dtype_name(Dtype dtype) noexcept {
    for (const auto& t : dtype_table) {
        if (t.dtype == dtype) return t.name;
    }
    return "?";
}
constexpr std::uint32_t dtype_size(Dtype dtype) noexcept {
    for (const auto& t : dtype_table) {
        if (t.dtype == dtype) return t.size;
    }
    return 0;
}
constexpr std::optional<Dtype> dtype_from_name(std::string_view name) noexcept {
    for (const auto& t : dtype_table) {
        if (t.name == name) return t.dtype;
    }
    return std::nullopt;
}

/// Only floating dtypes are converted to fp32 (weights); integer tensors are read as raw bytes.
constexpr bool can_convert_to_f32(Dtype dtype) noexcept {
    return dtype == Dtype::F32 || dtype == Dtype::F16 || dtype == Dtype::BF16;
}

/// One tensor of the header. begin/end are byte offsets relative to the data section.
struct TensorInfo {
    std::string name;
    Dtype dtype = Dtype::F32;
    std::vector<std::uint64_t> shape;  // PyTorch order: shape.back() is the contiguous row length
    std::uint64_t begin = 0;
    std::uint64_t end = 0;

    std::uint64_t n_elements() const noexcept {
        std::uint64_t n = 1;
        for (const auto d : shape) n *= d;
        return n;
    }
    std::uint64_t n_bytes() const noexcept { return end - begin; }
    std::uint64_t row_length() const noexcept { return shape.empty() ? 1 : shape.back(); }
    std::uint64_t rows() const noexcept { return row_length() == 0 ? 0 : n_elements() / row_length(); }
};

inline constexpr std::uint64_t max_header_size = 100u << 20;  // as the reference implementation: 100 MB

class File {
  public:
    static File open(const std::filesystem::path& path) {
        File file(io::MappedFile::open(path));
        file.parse();
        return file;
    }

    const std::filesystem::path& path() const noexcept { return mapping_.path(); }
    std::uint64_t data_offset() const noexcept { return data_offset_; }
    /// Tensors in header order.
    std::span<const TensorInfo> tensors() const noexcept { return tensors_; }
    /// String entries of `__metadata__` (other entries are ignored).
    const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }

    const TensorInfo* find_tensor(std::string_view name) const {
        const auto it = index_.find(name);
        return it == index_.end() ? nullptr : &tensors_[it->second];
    }
    const TensorInfo& tensor(std::string_view name) const {
        const TensorInfo* info = find_tensor(name);
        if (info == nullptr) throw format_error(path().string() + ": tensor '" + std::string(name) + "': missing");
        return *info;
    }

    std::span<const std::byte> tensor_bytes(const TensorInfo& info) const {
        return mapping_.bytes().subspan(static_cast<std::size_t>(data_offset_ + info.begin),
                                        static_cast<std::size_t>(info.n_bytes()));
    }

    /// F32/F16/BF16 tensor converted to fp32 in storage (row-major) order; config_error for other dtypes.
    std::vector<float> tensor_to_f32(const TensorInfo& info) const {
        if (!can_convert_to_f32(info.dtype)) {
            throw config_error(path().string() + ": tensor '" + info.name + "': cannot convert dtype " +
                               std::string(dtype_name(info.dtype)) + " to f32");
        }
        const auto bytes = tensor_bytes(info);
        std::vector<float> out(static_cast<std::size_t>(info.n_elements()));
        for (std::size_t i = 0; i < out.size(); ++i) {
            if (info.dtype == Dtype::F32) {
                std::memcpy(&out[i], bytes.data() + 4 * i, 4);
            } else {
                std::uint16_t bits = 0;
                std::memcpy(&bits, bytes.data() + 2 * i, 2);
                out[i] = info.dtype == Dtype::F16 ? fp16_bits_to_float(bits) : bf16_bits_to_float(bits);
            }
        }
        return out;
    }

  private:
    explicit File(io::MappedFile mapping) : mapping_(std::move(mapping)) {}

    [[noreturn]] void fail(std::string_view where, std::string_view problem) const {
        throw format_error(path().string() + ": " + std::string(where) + ": " + std::string(problem));
    }

    static std::optional<std::uint64_t> as_u64(const nlohmann::ordered_json& j) {
        if (!j.is_number_unsigned()) return std::nullopt;
        return j.get<std::uint64_t>();
    }

    void parse() {
        const io::ByteReader reader(mapping_.bytes(), path().string());
        const auto header_size = reader.read<std::uint64_t>(0, "header length");
        if (header_size > reader.size() - 8) {
            reader.fail(
                0, "header length",
                std::to_string(header_size) + " exceeds the " + std::to_string(reader.size() - 8) + " bytes after it");
        }
        if (header_size > max_header_size)
            reader.fail(0, "header length", std::to_string(header_size) + " exceeds 100 MB");
        data_offset_ = 8 + header_size;
        const auto text = reader.subspan(8, header_size, "header");
        const std::string_view header_text(reinterpret_cast<const char*>(text.data()), text.size());
        if (const std::size_t at = json_depth_exceeded_at(header_text); at != std::string_view::npos)
            reader.fail(8 + at, "header", "JSON nested deeper than " + std::to_string(max_json_depth) + " levels");
        nlohmann::ordered_json header;
        try {
            header = nlohmann::ordered_json::parse(reinterpret_cast<const char*>(text.data()),
                                                   reinterpret_cast<const char*>(text.data()) + text.size());
        } catch (const nlohmann::json::exception& e) {
            fail("header", std::string("invalid JSON: ") + e.what());
        }
        if (!header.is_object()) fail("header", "JSON is not an object");
        const std::uint64_t data_size = reader.size() - data_offset_;
        for (const auto& [name, entry] : header.items()) {
            if (name == "__metadata__") {
                if (!entry.is_object()) fail("__metadata__", "is not an object");
                for (const auto& [key, value] : entry.items()) {
                    if (value.is_string()) metadata_[key] = value.get<std::string>();
                }
                continue;
            }
            tensors_.push_back(parse_tensor(name, entry, data_size));
            index_.emplace(name, tensors_.size() - 1);
        }
        check_overlaps();
    }

    TensorInfo parse_tensor(const std::string& name, const nlohmann::ordered_json& entry,
                            std::uint64_t data_size) const {
        const std::string where = "tensor '" + name + "'";
        if (!entry.is_object()) fail(where, "entry is not an object");
        TensorInfo info;
        info.name = name;
        const auto dtype = entry.find("dtype");
        if (dtype == entry.end() || !dtype->is_string()) fail(where, "missing string field \"dtype\"");
        const auto parsed = dtype_from_name(dtype->get<std::string>());
        if (!parsed) fail(where, "unknown dtype \"" + dtype->get<std::string>() + "\"");
        info.dtype = *parsed;
        const auto shape = entry.find("shape");
        if (shape == entry.end() || !shape->is_array()) fail(where, "missing array field \"shape\"");
        std::uint64_t n_elements = 1;
        for (const auto& d : *shape) {
            const auto dim = as_u64(d);
            if (!dim) fail(where, "shape entry " + d.dump() + " is not a non-negative integer");
            if (*dim != 0 && n_elements > std::numeric_limits<std::uint64_t>::max() / dtype_size(info.dtype) / *dim) {
                fail(where, "shape " + shape->dump() + " overflows a 64-bit byte count");
            }
            n_elements *= *dim;
            info.shape.push_back(*dim);
        }
        const auto offsets = entry.find("data_offsets");
        if (offsets == entry.end() || !offsets->is_array() || offsets->size() != 2) {
            fail(where, "missing field \"data_offsets\" [begin, end]");
        }
        const auto begin = as_u64((*offsets)[0]);
        const auto end = as_u64((*offsets)[1]);
        if (!begin || !end) fail(where, "data_offsets " + offsets->dump() + " are not non-negative integers");
        if (*begin > *end) fail(where, "data_offsets " + offsets->dump() + " has begin after end");
        if (*end > data_size) {
            fail(where, "data_offsets " + offsets->dump() + " run past the end of the data section (" +
                            std::to_string(data_size) + " bytes)");
        }
        const std::uint64_t expected = n_elements * dtype_size(info.dtype);
        if (*end - *begin != expected) {
            fail(where, "data_offsets " + offsets->dump() + " hold " + std::to_string(*end - *begin) +
                            " bytes but shape " + shape->dump() + " of " + std::string(dtype_name(info.dtype)) +
                            " needs " + std::to_string(expected));
        }
        info.begin = *begin;
        info.end = *end;
        return info;
    }

    void check_overlaps() const {
        std::vector<const TensorInfo*> sorted;
        for (const auto& t : tensors_) {
            if (t.n_bytes() > 0) sorted.push_back(&t);
        }
        std::sort(sorted.begin(), sorted.end(), [](const auto* a, const auto* b) { return a->begin < b->begin; });
        for (std::size_t i = 1; i < sorted.size(); ++i) {
            if (sorted[i - 1]->end > sorted[i]->begin) {
                fail("tensor '" + sorted[i]->name + "'", "data_offsets [" + std::to_string(sorted[i]->begin) + ", " +
                                                             std::to_string(sorted[i]->end) + "] overlap tensor '" +
                                                             sorted[i - 1]->name + "'");
            }
        }
    }

    io::MappedFile mapping_;
    std::uint64_t data_offset_ = 0;
    std::vector<TensorInfo> tensors_;
    std::map<std::string, std::size_t, std::less<>> index_;
    std::map<std::string, std::string> metadata_;
};

/// A checkpoint folder: either sharded (model.safetensors.index.json whose "weight_map" maps each tensor
/// name to a shard file in the same folder) or a single model.safetensors. Each shard is mapped once.
class Checkpoint {
  public:
    /// `path` may be the folder, the index JSON, or a single .safetensors file.
    static Checkpoint open(const std::filesystem::path& path) {
        Checkpoint checkpoint;
        checkpoint.path_ = path;
        std::filesystem::path index = path;
        if (std::filesystem::is_directory(path)) {
            index = path / "model.safetensors.index.json";
            if (!std::filesystem::exists(index)) {
                const auto single = path / "model.safetensors";
                if (!std::filesystem::exists(single)) {
                    throw io_error(path.string() +
                                   ": neither model.safetensors.index.json nor model.safetensors found");
                }
                checkpoint.add_whole_file(single);
                return checkpoint;
            }
        } else if (path.extension() != ".json") {
            checkpoint.add_whole_file(path);
            return checkpoint;
        }
        checkpoint.load_index(index);
        return checkpoint;
    }

    const std::filesystem::path& path() const noexcept { return path_; }
    std::span<const File> shards() const noexcept { return shards_; }
    std::size_t size() const noexcept { return where_.size(); }
    bool has(std::string_view name) const { return where_.find(name) != where_.end(); }

    /// Tensor names in sorted order.
    std::vector<std::string> tensor_names() const {
        std::vector<std::string> names;
        for (const auto& [name, shard] : where_) names.push_back(name);
        return names;
    }

    const File& file_of(std::string_view name) const { return shards_[lookup(name)]; }
    const TensorInfo& tensor(std::string_view name) const { return file_of(name).tensor(name); }
    std::span<const std::byte> tensor_bytes(std::string_view name) const {
        const File& file = file_of(name);
        return file.tensor_bytes(file.tensor(name));
    }
    std::vector<float> tensor_to_f32(std::string_view name) const {
        const File& file = file_of(name);
        return file.tensor_to_f32(file.tensor(name));
    }

  private:
    std::size_t lookup(std::string_view name) const {
        const auto it = where_.find(name);
        if (it == where_.end()) throw format_error(path_.string() + ": tensor '" + std::string(name) + "': missing");
        return it->second;
    }

    void add_whole_file(const std::filesystem::path& file) {
        shards_.push_back(File::open(file));
        for (const auto& t : shards_.back().tensors()) where_.emplace(t.name, 0);
    }

    void load_index(const std::filesystem::path& index_path) {
        const auto mapping = io::MappedFile::open(index_path);
        const auto bytes = mapping.bytes();
        require_json_depth({reinterpret_cast<const char*>(bytes.data()), bytes.size()}, index_path.string());
        nlohmann::json index;
        try {
            index = nlohmann::json::parse(reinterpret_cast<const char*>(bytes.data()),
                                          reinterpret_cast<const char*>(bytes.data()) + bytes.size());
        } catch (const nlohmann::json::exception& e) {
            throw format_error(index_path.string() + ": invalid JSON: " + e.what());
        }
        if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
            throw format_error(index_path.string() + ": missing object \"weight_map\"");
        }
        std::map<std::string, std::size_t> shard_ids;
        for (const auto& [name, shard] : index["weight_map"].items()) {
            const std::string where = index_path.string() + ": tensor '" + name + "'";
            if (!shard.is_string()) throw format_error(where + ": shard name is not a string");
            const auto shard_name = shard.get<std::string>();
            // shards must be plain file names inside the checkpoint folder
            const std::filesystem::path shard_path(shard_name);
            if (shard_name.empty() || shard_path.has_parent_path() || shard_path.is_absolute() || shard_name == "." ||
                shard_name == "..") {
                throw format_error(where + ": shard \"" + shard_name +
                                   "\" is not a file name in the checkpoint folder");
            }
            auto [it, inserted] = shard_ids.emplace(shard_name, shards_.size());
            if (inserted) shards_.push_back(File::open(index_path.parent_path() / shard_path));
            if (shards_[it->second].find_tensor(name) == nullptr) {
                throw format_error(where + ": not found in shard " + shards_[it->second].path().string());
            }
            where_.emplace(name, it->second);
        }
    }

    Checkpoint() = default;

    std::filesystem::path path_;
    std::vector<File> shards_;
    std::map<std::string, std::size_t, std::less<>> where_;
};

/// Writes a single safetensors file (tensors in insertion order, header padded with spaces to 8 bytes).
class Writer {
  public:
    void add_tensor(std::string name, Dtype dtype, std::vector<std::uint64_t> shape, std::vector<std::byte> data) {
        if (name.empty() || name == "__metadata__")
            throw config_error("safetensors::Writer: invalid tensor name '" + name + "'");
        for (const auto& t : tensors_) {
            if (t.name == name) throw config_error("safetensors::Writer: duplicate tensor '" + name + "'");
        }
        std::uint64_t n = 1;
        for (const auto d : shape) n *= d;
        if (n * dtype_size(dtype) != data.size()) {
            throw shape_error("safetensors::Writer: tensor '" + name + "': shape needs " +
                              std::to_string(n * dtype_size(dtype)) + " bytes of " + std::string(dtype_name(dtype)) +
                              ", got " + std::to_string(data.size()));
        }
        tensors_.push_back({std::move(name), dtype, std::move(shape), std::move(data)});
    }

    /// fp32 values stored as F32, F16 or BF16 (rounded to nearest even).
    void add_tensor_f32(std::string name, std::vector<std::uint64_t> shape, std::span<const float> values,
                        Dtype dtype = Dtype::F32) {
        if (!can_convert_to_f32(dtype)) {
            throw config_error("safetensors::Writer: tensor '" + name + "': cannot store f32 as " +
                               std::string(dtype_name(dtype)));
        }
        std::vector<std::byte> data(values.size() * dtype_size(dtype));
        for (std::size_t i = 0; i < values.size(); ++i) {
            if (dtype == Dtype::F32) {
                std::memcpy(data.data() + 4 * i, &values[i], 4);
            } else {
                const std::uint16_t bits =
                    dtype == Dtype::F16 ? float_to_fp16_bits(values[i]) : float_to_bf16_bits(values[i]);
                std::memcpy(data.data() + 2 * i, &bits, 2);
            }
        }
        add_tensor(std::move(name), dtype, std::move(shape), std::move(data));
    }

    void set_metadata(std::string key, std::string value) { metadata_[std::move(key)] = std::move(value); }

    /// The JSON header text (before padding).
    std::string header() const {
        nlohmann::ordered_json json = nlohmann::ordered_json::object();
        if (!metadata_.empty()) json["__metadata__"] = metadata_;
        std::uint64_t offset = 0;
        for (const auto& t : tensors_) {
            json[t.name] = {
                {"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.data.size()}}};
            offset += t.data.size();
        }
        return json.dump();
    }

    std::vector<std::byte> to_bytes() const {
        std::vector<std::byte> out;
        emit([&](const void* data, std::size_t size) {
            const auto* p = static_cast<const std::byte*>(data);
            out.insert(out.end(), p, p + size);
        });
        return out;
    }

    void write(const std::filesystem::path& path) const {
        io::atomic_write(path, [&](auto&& sink) { emit(sink); });
    }

  private:
    struct Pending {
        std::string name;
        Dtype dtype;
        std::vector<std::uint64_t> shape;
        std::vector<std::byte> data;
    };

    template <class Sink>
    void emit(Sink&& sink) const {
        std::string text = header();
        text.append((8 - text.size() % 8) % 8, ' ');
        const auto size = static_cast<std::uint64_t>(text.size());
        sink(&size, sizeof(size));
        sink(text.data(), text.size());
        for (const auto& t : tensors_) sink(t.data.data(), t.data.size());
    }

    std::vector<Pending> tensors_;
    std::map<std::string, std::string> metadata_;
};

}  // namespace qsafe::safetensors
