#pragma once
// GGUF v2/v3 reader over a read-only memory map. The whole header (metadata and tensor infos) is parsed and
// validated in File::open: every count, length and offset is checked against the file before it is used, so
// a malformed or hostile file raises qsafe::format_error naming the file and the key or tensor, never reads
// out of bounds and never allocates more than the file could describe. Tensor data stays in the mapping.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "qsafe/core/error.hpp"
#include "qsafe/formats/ggml_dequantize.hpp"
#include "qsafe/formats/ggml_types.hpp"
#include "qsafe/io/gguf_value.hpp"
#include "qsafe/io/mmap_file.hpp"

namespace qsafe::gguf {

inline constexpr std::uint32_t magic = 0x46554747;  // "GGUF" read as a little-endian uint32
inline constexpr std::uint32_t default_alignment = 32;
inline constexpr std::uint32_t max_dims = 4;
inline constexpr int max_array_depth = 8;  // nested arrays deeper than this are rejected (stack safety)

/// One tensor's header entry. dims are in ggml order: dims[0] (ne0) is the row length, the contiguous
/// dimension; a PyTorch [out, in] weight appears as dims = {in, out}. offset is relative to the data section.
struct TensorInfo {
    std::string name;
    std::vector<std::uint64_t> dims;
    GgmlType type = GgmlType::F32;
    std::uint64_t offset = 0;

    std::uint64_t n_elements() const noexcept {
        std::uint64_t n = 1;
        for (const auto d : dims) n *= d;
        return n;
    }
    std::uint64_t row_length() const noexcept { return dims.empty() ? 1 : dims[0]; }
    std::uint64_t rows() const noexcept {
        std::uint64_t n = 1;
        for (std::size_t i = 1; i < dims.size(); ++i) n *= dims[i];
        return n;
    }
    std::uint64_t n_bytes() const noexcept { return ggml_row_bytes(type, n_elements()); }
};

class File {
  public:
    /// Maps and parses the file. Throws io_error if it cannot be opened and format_error if it is malformed.
    static File open(const std::filesystem::path& path) {
        File file(io::MappedFile::open(path));
        file.parse();
        return file;
    }

    const std::filesystem::path& path() const noexcept { return mapping_.path(); }
    std::uint32_t version() const noexcept { return version_; }
    std::uint32_t alignment() const noexcept { return alignment_; }
    /// Absolute byte offset of the data section (tensor offsets are relative to it).
    std::uint64_t data_offset() const noexcept { return data_offset_; }
    std::uint64_t file_size() const noexcept { return mapping_.size(); }

    bool has(std::string_view key) const { return find(key) != nullptr; }

    const Value* find(std::string_view key) const {
        const auto it = key_index_.find(key);
        return it == key_index_.end() ? nullptr : &metadata_[it->second].value;
    }

    /// Typed metadata access. T: any integral type (range-checked from any integer type), float/double
    /// (from float32/float64), bool, std::string.
    template <class T>
    T get(std::string_view key) const {
        const Value* value = find(key);
        if (value == nullptr) throw format_error(where(key) + ": missing");
        return convert<T>(*value, key, "");
    }

    template <class T>
    std::optional<T> get_optional(std::string_view key) const {
        const Value* value = find(key);
        if (value == nullptr) return std::nullopt;
        return convert<T>(*value, key, "");
    }

    /// Array metadata; T as for get (the array's element type must convert to T).
    template <class T>
    std::vector<T> get_array(std::string_view key) const {
        const Value* value = find(key);
        if (value == nullptr) throw format_error(where(key) + ": missing");
        const Array* array = value->array();
        if (array == nullptr) {
            throw format_error(where(key) + ": has type " + std::string(value_type_name(value->type())) +
                               ", expected array of " + expected_name<T>());
        }
        std::vector<T> out;
        out.reserve(array->items.size());
        for (std::size_t i = 0; i < array->items.size(); ++i) {
            out.push_back(convert<T>(array->items[i], key, "element " + std::to_string(i) + " "));
        }
        return out;
    }

    std::span<const MetadataEntry> metadata() const noexcept { return metadata_; }
    std::span<const TensorInfo> tensors() const noexcept { return tensors_; }

    const TensorInfo* find_tensor(std::string_view name) const {
        const auto it = tensor_index_.find(name);
        return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
    }

    const TensorInfo& tensor(std::string_view name) const {
        const TensorInfo* info = find_tensor(name);
        if (info == nullptr) throw format_error(path().string() + ": tensor '" + std::string(name) + "': missing");
        return *info;
    }

    /// The tensor's bytes inside the mapping (validated at open).
    std::span<const std::byte> tensor_bytes(const TensorInfo& info) const {
        return mapping_.bytes().subspan(static_cast<std::size_t>(data_offset_ + info.offset),
                                        static_cast<std::size_t>(info.n_bytes()));
    }

    /// Whole tensor dequantized to fp32, in storage order: element (i0, i1, ...) at i0 + dims[0] * (i1 + ...),
    /// i.e. rows() rows of row_length() values. Throws config_error if the type has no dequantizer.
    std::vector<float> tensor_to_f32(const TensorInfo& info) const {
        if (!can_dequantize(info.type)) {
            throw config_error(path().string() + ": tensor '" + info.name + "': cannot dequantize type " +
                               std::string(ggml_type_name(info.type)));
        }
        std::vector<float> out(static_cast<std::size_t>(info.n_elements()));
        dequantize_row(info.type, tensor_bytes(info), out);
        return out;
    }

  private:
    explicit File(io::MappedFile mapping) : mapping_(std::move(mapping)) {}

    std::string where(std::string_view key) const { return path().string() + ": key '" + std::string(key) + "'"; }

    template <class T>
    static std::string expected_name() {
        if constexpr (std::same_as<T, bool>)
            return "bool";
        else if constexpr (std::integral<T>)
            return "an integer";
        else if constexpr (std::floating_point<T>)
            return "a float";
        else
            return "string";
    }

    template <class T>
    T convert(const Value& value, std::string_view key, const std::string& element) const {
        const auto mismatch = [&]() -> format_error {
            return format_error(where(key) + ": " + element + "has type " + std::string(value_type_name(value.type())) +
                                ", expected " + expected_name<T>());
        };
        if constexpr (std::same_as<T, bool>) {
            if (const bool* b = value.get_if<bool>()) return *b;
            throw mismatch();
        } else if constexpr (std::integral<T>) {
            if (!value.is_integer()) throw mismatch();
            if (const auto v = value.to_integer<T>()) return *v;
            throw format_error(where(key) + ": " + element + "value " + value.to_string() + " does not fit the " +
                               std::to_string(sizeof(T) * 8) + "-bit " + (std::is_signed_v<T> ? "signed" : "unsigned") +
                               " type requested");
        } else if constexpr (std::floating_point<T>) {
            if (const float* f = value.get_if<float>()) return static_cast<T>(*f);
            if (const double* d = value.get_if<double>()) return static_cast<T>(*d);
            throw mismatch();
        } else {
            static_assert(std::same_as<T, std::string>, "gguf::File::get supports integral, float, bool, std::string");
            if (const std::string* s = value.get_if<std::string>()) return *s;
            throw mismatch();
        }
    }

    // ---- parsing ----

    std::string read_string(io::ByteCursor& cursor, std::string_view what) const {
        const auto length = cursor.read<std::uint64_t>(what);
        if (length > cursor.remaining()) {
            cursor.reader().fail(cursor.offset() - 8, what,
                                 "string length " + std::to_string(length) + " exceeds the " +
                                     std::to_string(cursor.remaining()) + " bytes left in the file");
        }
        const auto bytes = cursor.take(length, what);
        return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    }

    // Smallest encoding of one value of a type: bounds array counts before anything is allocated.
    static std::uint64_t min_encoded_size(ValueType type) noexcept {
        switch (type) {
            case ValueType::UINT8:
            case ValueType::INT8:
            case ValueType::BOOL: return 1;
            case ValueType::UINT16:
            case ValueType::INT16: return 2;
            case ValueType::UINT32:
            case ValueType::INT32:
            case ValueType::FLOAT32: return 4;
            case ValueType::STRING: return 8;
            case ValueType::ARRAY: return 12;
            default: return 8;
        }
    }

    ValueType read_value_type(io::ByteCursor& cursor, const std::string& what) const {
        const auto id = cursor.read<std::uint32_t>(what);
        if (!is_valid_value_type(id))
            cursor.reader().fail(cursor.offset() - 4, what, "unknown value type " + std::to_string(id));
        return static_cast<ValueType>(id);
    }

    template <class T>
    static Value read_scalar(io::ByteCursor& cursor, const std::string& what) {
        return Value(cursor.read<T>(what));
    }

    Value read_value(io::ByteCursor& cursor, ValueType type, const std::string& what, int depth) const {
        switch (type) {
            case ValueType::UINT8: return read_scalar<std::uint8_t>(cursor, what);
            case ValueType::INT8: return read_scalar<std::int8_t>(cursor, what);
            case ValueType::UINT16: return read_scalar<std::uint16_t>(cursor, what);
            case ValueType::INT16: return read_scalar<std::int16_t>(cursor, what);
            case ValueType::UINT32: return read_scalar<std::uint32_t>(cursor, what);
            case ValueType::INT32: return read_scalar<std::int32_t>(cursor, what);
            case ValueType::FLOAT32: return read_scalar<float>(cursor, what);
            case ValueType::UINT64: return read_scalar<std::uint64_t>(cursor, what);
            case ValueType::INT64: return read_scalar<std::int64_t>(cursor, what);
            case ValueType::FLOAT64: return read_scalar<double>(cursor, what);
            case ValueType::BOOL: {
                const auto byte = cursor.read<std::uint8_t>(what);  // never memcpy into a bool: 2..255 would be UB
                if (byte > 1)
                    cursor.reader().fail(cursor.offset() - 1, what,
                                         "bool value " + std::to_string(byte) + " is not 0 or 1");
                return Value(byte == 1);
            }
            case ValueType::STRING: return Value(read_string(cursor, what));
            case ValueType::ARRAY: {
                if (depth >= max_array_depth) {
                    cursor.fail(what, "arrays nested deeper than " + std::to_string(max_array_depth) + " levels");
                }
                Array array;
                array.element_type = read_value_type(cursor, what + " element type");
                const auto count = cursor.read<std::uint64_t>(what + " length");
                if (count > cursor.remaining() / min_encoded_size(array.element_type)) {
                    cursor.reader().fail(cursor.offset() - 8, what,
                                         "array of " + std::to_string(count) + " " +
                                             std::string(value_type_name(array.element_type)) + " cannot fit in the " +
                                             std::to_string(cursor.remaining()) + " bytes left in the file");
                }
                array.items.reserve(static_cast<std::size_t>(count));
                const bool nested = array.element_type == ValueType::ARRAY;
                for (std::uint64_t i = 0; i < count; ++i) {
                    // name the element only for nested arrays: token lists have ~10^5 string items
                    array.items.push_back(read_value(cursor, array.element_type,
                                                     nested ? what + "[" + std::to_string(i) + "]" : what, depth + 1));
                }
                return Value(std::move(array));
            }
        }
        cursor.fail(what, "unknown value type");  // unreachable: the type was validated
    }

    void parse() {
        const io::ByteReader reader(mapping_.bytes(), path().string());
        io::ByteCursor cursor(reader);
        const auto file_magic = cursor.read<std::uint32_t>("magic");
        if (file_magic != magic) {
            std::string shown;
            for (const auto b : reader.subspan(0, 4, "magic")) {
                const auto c = static_cast<char>(b);
                shown += (c >= 32 && c < 127) ? std::string(1, c) : "\\x" + std::to_string(static_cast<int>(b));
            }
            reader.fail(0, "magic", "not a GGUF file (expected \"GGUF\", found \"" + shown + "\")");
        }
        version_ = cursor.read<std::uint32_t>("version");
        if (version_ != 2 && version_ != 3) {
            const bool big_endian = (version_ & 0xFFFFu) == 0 && version_ != 0;
            reader.fail(4, "version",
                        big_endian ? "big-endian GGUF files are not supported"
                                   : "unsupported GGUF version " + std::to_string(version_) + " (supported: 2 and 3)");
        }
        const auto n_tensors = cursor.read<std::uint64_t>("tensor count");
        const auto n_kv = cursor.read<std::uint64_t>("metadata count");
        // each tensor info takes >= 24 bytes and each key/value >= 13: reject counts the file cannot hold
        if (n_tensors > cursor.remaining() / 24)
            reader.fail(8, "tensor count", std::to_string(n_tensors) + " tensors cannot fit in the file");
        if (n_kv > cursor.remaining() / 13)
            reader.fail(16, "metadata count", std::to_string(n_kv) + " key/value pairs cannot fit in the file");

        metadata_.reserve(static_cast<std::size_t>(n_kv));
        for (std::uint64_t i = 0; i < n_kv; ++i) {
            const std::uint64_t entry_offset = cursor.offset();
            std::string key = read_string(cursor, "key of metadata entry #" + std::to_string(i));
            const std::string what = "key '" + key + "'";
            if (key_index_.contains(key)) reader.fail(entry_offset, what, "duplicate key");
            const ValueType type = read_value_type(cursor, what + " value type");
            Value value = read_value(cursor, type, what, 0);
            key_index_.emplace(key, metadata_.size());
            metadata_.push_back({std::move(key), std::move(value)});
        }

        std::vector<std::uint64_t> info_offsets;
        tensors_.reserve(static_cast<std::size_t>(n_tensors));
        for (std::uint64_t i = 0; i < n_tensors; ++i) {
            info_offsets.push_back(cursor.offset());
            tensors_.push_back(read_tensor_info(cursor, i));
            if (!tensor_index_.emplace(tensors_.back().name, tensors_.size() - 1).second) {
                reader.fail(info_offsets.back(), "tensor '" + tensors_.back().name + "'", "duplicate tensor name");
            }
        }

        alignment_ = default_alignment;
        if (const Value* value = find("general.alignment")) {
            const auto* a = value->get_if<std::uint32_t>();
            if (a == nullptr || *a == 0 || (*a & (*a - 1)) != 0) {
                throw format_error(where("general.alignment") + ": must be a uint32 power of two, got " +
                                   std::string(value_type_name(value->type())) + " " + value->to_string());
            }
            alignment_ = *a;
        }
        const std::uint64_t header_end = cursor.offset();
        data_offset_ = header_end + (alignment_ - header_end % alignment_) % alignment_;
        const std::uint64_t data_size = data_offset_ <= reader.size() ? reader.size() - data_offset_ : 0;
        validate_tensor_placement(reader, info_offsets, data_size);
    }

    TensorInfo read_tensor_info(io::ByteCursor& cursor, std::uint64_t index) const {
        TensorInfo info;
        info.name = read_string(cursor, "name of tensor #" + std::to_string(index));
        const std::string what = "tensor '" + info.name + "'";
        const auto n_dims = cursor.read<std::uint32_t>(what + " dimension count");
        if (n_dims > max_dims) {
            cursor.reader().fail(cursor.offset() - 4, what, std::to_string(n_dims) + " dimensions (at most 4)");
        }
        std::uint64_t n_elements = 1;
        for (std::uint32_t d = 0; d < n_dims; ++d) {
            const auto dim = cursor.read<std::uint64_t>(what + " dimension " + std::to_string(d));
            // ggml counts elements in int64: the product must stay below 2^63
            constexpr auto limit = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
            if (dim > limit || (dim != 0 && n_elements > limit / dim)) {
                cursor.reader().fail(cursor.offset() - 8, what, "dimensions overflow a 64-bit element count");
            }
            n_elements *= dim;
            info.dims.push_back(dim);
        }
        const auto type_id = cursor.read<std::uint32_t>(what + " type");
        const auto traits = ggml_type_traits(type_id);
        if (!traits) cursor.reader().fail(cursor.offset() - 4, what, "unknown ggml type id " + std::to_string(type_id));
        info.type = traits->type;
        if (info.row_length() % traits->block_size != 0) {
            cursor.reader().fail(cursor.offset() - 4, what,
                                 "row length " + std::to_string(info.row_length()) + " is not a multiple of the " +
                                     std::string(traits->name) + " block size " + std::to_string(traits->block_size));
        }
        if (n_elements / traits->block_size > std::numeric_limits<std::uint64_t>::max() / traits->bytes_per_block) {
            cursor.reader().fail(cursor.offset() - 4, what, "byte size overflows 64 bits");
        }
        info.offset = cursor.read<std::uint64_t>(what + " data offset");
        return info;
    }

    void validate_tensor_placement(const io::ByteReader& reader, const std::vector<std::uint64_t>& info_offsets,
                                   std::uint64_t data_size) const {
        std::vector<std::size_t> order;
        for (std::size_t i = 0; i < tensors_.size(); ++i) {
            const TensorInfo& t = tensors_[i];
            const std::string what = "tensor '" + t.name + "'";
            if (t.offset % alignment_ != 0) {
                reader.fail(info_offsets[i], what,
                            "data offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
                                std::to_string(alignment_));
            }
            if (t.offset > data_size || t.n_bytes() > data_size - t.offset) {
                reader.fail(info_offsets[i], what,
                            "data [" + std::to_string(t.offset) + ", +" + std::to_string(t.n_bytes()) +
                                ") runs past the end of the data section (" + std::to_string(data_size) +
                                " bytes from file offset " + std::to_string(data_offset_) + ")");
            }
            if (t.n_bytes() > 0) order.push_back(i);
        }
        std::sort(order.begin(), order.end(),
                  [&](std::size_t a, std::size_t b) { return tensors_[a].offset < tensors_[b].offset; });
        for (std::size_t k = 1; k < order.size(); ++k) {
            const TensorInfo& prev = tensors_[order[k - 1]];
            const TensorInfo& cur = tensors_[order[k]];
            if (prev.offset + prev.n_bytes() > cur.offset) {
                reader.fail(info_offsets[order[k]], "tensor '" + cur.name + "'",
                            "data at offset " + std::to_string(cur.offset) + " overlaps tensor '" + prev.name + "' [" +
                                std::to_string(prev.offset) + ", " + std::to_string(prev.offset + prev.n_bytes()) +
                                ")");
            }
        }
    }

    io::MappedFile mapping_;
    std::uint32_t version_ = 0;
    std::uint32_t alignment_ = default_alignment;
    std::uint64_t data_offset_ = 0;
    std::vector<MetadataEntry> metadata_;
    std::vector<TensorInfo> tensors_;
    std::map<std::string, std::size_t, std::less<>> key_index_;
    std::map<std::string, std::size_t, std::less<>> tensor_index_;
};

}  // namespace qsafe::gguf
