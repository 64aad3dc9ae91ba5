#pragma once
// Builds GGUF v3 files: metadata of every value type (arrays of any type, nested arrays), tensors of any ggml
// type given as raw bytes (or as fp32 quantized on the way in), data aligned to `general.alignment` (32 by
// default). write() streams to a temporary file in the target folder and renames it over the target, so a
// crash or full disk never leaves a half-written model under the final name.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "qsafe/core/error.hpp"
#include "qsafe/formats/ggml_quantize.hpp"
#include "qsafe/formats/ggml_types.hpp"
#include "qsafe/io/atomic_write.hpp"
#include "qsafe/io/gguf_reader.hpp"
#include "qsafe/io/gguf_value.hpp"

namespace qsafe::gguf {

class Writer {
  public:
    /// Sets a metadata key, replacing an existing value in place (file order is first-set order).
    /// `general.alignment` must be a uint32 power of two (config_error otherwise).
    void set(std::string key, Value value) {
        if (key.empty()) throw config_error("gguf::Writer: empty metadata key");
        if (key == "general.alignment") {
            const auto* a = value.get_if<std::uint32_t>();
            if (a == nullptr || *a == 0 || (*a & (*a - 1)) != 0) {
                throw config_error("gguf::Writer: general.alignment must be a uint32 power of two, got " +
                                   std::string(value_type_name(value.type())) + " " + value.to_string());
            }
        }
        check_array_types(value, key);
        for (auto& entry : metadata_) {
            if (entry.key == key) {
                entry.value = std::move(value);
                return;
            }
        }
        metadata_.push_back({std::move(key), std::move(value)});
    }

    const Value* find(std::string_view key) const {
        for (const auto& entry : metadata_) {
            if (entry.key == key) return &entry.value;
        }
        return nullptr;
    }

    /// Adds a tensor whose bytes are already in `type`'s layout. dims in ggml order (dims[0] = row length).
    void add_tensor(std::string name, std::vector<std::uint64_t> dims, GgmlType type, std::vector<std::byte> data) {
        Pending pending{make_info(std::move(name), std::move(dims), type, data.size()), std::move(data), {}};
        tensors_.push_back(std::move(pending));
    }

    /// As add_tensor, without copying: `data` must stay valid until the last write()/to_bytes() call.
    void add_tensor_view(std::string name, std::vector<std::uint64_t> dims, GgmlType type,
                         std::span<const std::byte> data) {
        Pending pending{make_info(std::move(name), std::move(dims), type, data.size()), {}, data};
        tensors_.push_back(std::move(pending));
    }

    /// Adds fp32 values stored as `type` (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0), quantized row by row
    /// with ggml's reference quantizers.
    void add_tensor_f32(std::string name, std::vector<std::uint64_t> dims, std::span<const float> values,
                        GgmlType type = GgmlType::F32) {
        if (!can_quantize(type)) {
            throw config_error("gguf::Writer: tensor '" + name + "': cannot quantize to " +
                               std::string(ggml_type_name(type)));
        }
        std::uint64_t n = 1;
        for (const auto d : dims) n *= d;
        if (n != values.size()) {
            throw shape_error("gguf::Writer: tensor '" + name + "': dims hold " + std::to_string(n) + " values, got " +
                              std::to_string(values.size()));
        }
        const std::uint64_t row = dims.empty() ? 1 : dims[0];
        if (row % ggml_block_size(type) != 0) {
            throw shape_error("gguf::Writer: tensor '" + name + "': row length " + std::to_string(row) +
                              " is not a multiple of the " + std::string(ggml_type_name(type)) + " block size");
        }
        std::vector<std::byte> data(static_cast<std::size_t>(ggml_row_bytes(type, n)));
        quantize_row(type, values, data);
        add_tensor(std::move(name), std::move(dims), type, std::move(data));
    }

    std::size_t tensor_count() const noexcept { return tensors_.size(); }
    std::span<const MetadataEntry> metadata() const noexcept { return metadata_; }

    std::uint32_t alignment() const {
        const Value* value = find("general.alignment");
        return value != nullptr ? *value->get_if<std::uint32_t>() : default_alignment;
    }

    /// The complete file as bytes (tests build malformed variants from it).
    std::vector<std::byte> to_bytes() const {
        std::vector<std::byte> out;
        emit([&](const void* data, std::size_t size) {
            const auto* p = static_cast<const std::byte*>(data);
            out.insert(out.end(), p, p + size);
        });
        return out;
    }

    /// Writes the file: temp file next to `path`, flushed and closed, then renamed over `path`.
    void write(const std::filesystem::path& path) const {
        io::atomic_write(path, [&](auto&& sink) { emit(sink); });
    }

  private:
    struct Pending {
        TensorInfo info;
        std::vector<std::byte> owned;
        std::span<const std::byte> view;
        std::span<const std::byte> bytes() const noexcept { return owned.empty() ? view : std::span(owned); }
    };

    TensorInfo make_info(std::string name, std::vector<std::uint64_t> dims, GgmlType type, std::size_t size) const {
        const std::string what = "gguf::Writer: tensor '" + name + "'";
        if (name.empty()) throw config_error("gguf::Writer: empty tensor name");
        for (const auto& t : tensors_) {
            if (t.info.name == name) throw config_error(what + ": duplicate tensor name");
        }
        if (dims.size() > max_dims) throw shape_error(what + ": " + std::to_string(dims.size()) + " dims (at most 4)");
        TensorInfo info{std::move(name), std::move(dims), type, 0};
        if (info.row_length() % ggml_block_size(type) != 0) {
            throw shape_error(what + ": row length " + std::to_string(info.row_length()) +
                              " is not a multiple of the " + std::string(ggml_type_name(type)) + " block size");
        }
        if (info.n_bytes() != size) {
            throw shape_error(what + ": " + std::string(ggml_type_name(type)) + " data of this shape takes " +
                              std::to_string(info.n_bytes()) + " bytes, got " + std::to_string(size));
        }
        return info;
    }

    static void check_array_types(const Value& value, std::string_view key) {
        const Array* array = value.array();
        if (array == nullptr) return;
        for (const auto& item : array->items) {
            if (item.type() != array->element_type) {
                throw config_error("gguf::Writer: key '" + std::string(key) + "': array of " +
                                   std::string(value_type_name(array->element_type)) + " holds a " +
                                   std::string(value_type_name(item.type())));
            }
            check_array_types(item, key);
        }
    }

    template <class Sink>
    static void put(Sink& sink, const auto& scalar) {
        sink(&scalar, sizeof(scalar));
    }

    template <class Sink>
    static void put_string(Sink& sink, std::string_view text) {
        put(sink, static_cast<std::uint64_t>(text.size()));
        sink(text.data(), text.size());
    }

    template <class Sink>
    static void put_value(Sink& sink, const Value& value) {
        std::visit(
            [&](const auto& v) {
                using V = std::remove_cvref_t<decltype(v)>;
                if constexpr (std::same_as<V, bool>) {
                    put(sink, static_cast<std::uint8_t>(v ? 1 : 0));
                } else if constexpr (std::same_as<V, std::string>) {
                    put_string(sink, v);
                } else if constexpr (std::same_as<V, Array>) {
                    put(sink, static_cast<std::uint32_t>(v.element_type));
                    put(sink, static_cast<std::uint64_t>(v.items.size()));
                    for (const auto& item : v.items) put_value(sink, item);
                } else {
                    put(sink, v);
                }
            },
            value.storage());
    }

    template <class Sink>
    void emit(Sink&& sink) const {
        const std::uint64_t align = alignment();
        const auto padded = [&](std::uint64_t n) { return n + (align - n % align) % align; };
        put(sink, magic);
        put(sink, std::uint32_t{3});
        put(sink, static_cast<std::uint64_t>(tensors_.size()));
        put(sink, static_cast<std::uint64_t>(metadata_.size()));
        std::uint64_t written = 24;
        const auto counted = [&](const void* data, std::size_t size) {
            sink(data, size);
            written += size;
        };
        for (const auto& entry : metadata_) {
            put_string(counted, entry.key);
            put(counted, static_cast<std::uint32_t>(entry.value.type()));
            put_value(counted, entry.value);
        }
        std::uint64_t offset = 0;
        for (const auto& t : tensors_) {
            put_string(counted, t.info.name);
            put(counted, static_cast<std::uint32_t>(t.info.dims.size()));
            for (const auto d : t.info.dims) put(counted, d);
            put(counted, static_cast<std::uint32_t>(t.info.type));
            put(counted, offset);
            offset = padded(offset + t.info.n_bytes());
        }
        const std::vector<std::byte> zeros(static_cast<std::size_t>(align));
        counted(zeros.data(), static_cast<std::size_t>(padded(written) - written));
        for (const auto& t : tensors_) {
            const auto bytes = t.bytes();
            counted(bytes.data(), bytes.size());
            counted(zeros.data(), static_cast<std::size_t>(padded(bytes.size()) - bytes.size()));
        }
    }

    std::vector<MetadataEntry> metadata_;
    std::vector<Pending> tensors_;
};

}  // namespace qsafe::gguf
