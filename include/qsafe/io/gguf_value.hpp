#pragma once
// GGUF metadata values: the 13 value types of the GGUF spec and a Value that holds any of them, arrays
// (including arrays of arrays) as a typed list of Values. The variant's alternative index equals the GGUF
// type id, so reading and writing need no mapping table.
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace qsafe::gguf {

enum class ValueType : std::uint32_t {
    UINT8 = 0,
    INT8 = 1,
    UINT16 = 2,
    INT16 = 3,
    UINT32 = 4,
    INT32 = 5,
    FLOAT32 = 6,
    BOOL = 7,
    STRING = 8,
    ARRAY = 9,
    UINT64 = 10,
    INT64 = 11,
    FLOAT64 = 12,
};

inline constexpr std::uint32_t value_type_count = 13;

constexpr bool is_valid_value_type(std::uint32_t id) noexcept {
    return id < value_type_count;
}

constexpr std::string_view value_type_name(ValueType type) noexcept {
    constexpr std::string_view names[] = {"uint8", "int8",   "uint16", "int16",  "uint32", "int32",  "float32",
                                          "bool",  "string", "array",  "uint64", "int64",  "float64"};
    const auto id = static_cast<std::uint32_t>(type);
    return id < value_type_count ? names[id] : std::string_view("unknown");
}

class Value;

/// A GGUF array: every item has `element_type` (itself possibly ARRAY, with its own element type).
struct Array {
    ValueType element_type = ValueType::UINT8;
    std::vector<Value> items;
};
// Defined after Value (it compares Values); declared here so that Value's operator== finds it (clang requires it).
inline bool operator==(const Array& a, const Array& b);

namespace detail {
// Alternative order == GGUF type id.
using ValueStorage = std::variant<std::uint8_t, std::int8_t, std::uint16_t, std::int16_t, std::uint32_t, std::int32_t,
                                  float, bool, std::string, Array, std::uint64_t, std::int64_t, double>;

// The fixed-width integer type a GGUF value of another integer type (long long, char, ...) is stored as.
template <std::size_t Size, bool Signed>
using fixed_int_t = std::conditional_t<
    Size == 1, std::conditional_t<Signed, std::int8_t, std::uint8_t>,
    std::conditional_t<Size == 2, std::conditional_t<Signed, std::int16_t, std::uint16_t>,
                       std::conditional_t<Size == 4, std::conditional_t<Signed, std::int32_t, std::uint32_t>,
                                          std::conditional_t<Signed, std::int64_t, std::uint64_t>>>>;

template <class T, class Variant>
struct is_alternative;
template <class T, class... Ts>
struct is_alternative<T, std::variant<Ts...>> : std::bool_constant<(std::is_same_v<T, Ts> || ...)> {};
}  // namespace detail

/// Types a Value can be built from directly (each maps to exactly one GGUF type).
template <class T>
concept ValueAlternative = detail::is_alternative<std::remove_cvref_t<T>, detail::ValueStorage>::value;

class Value {
  public:
    Value() = default;  // uint8 0
    template <ValueAlternative T>
    Value(T&& value) : storage_(std::forward<T>(value)) {}  // NOLINT: implicit by design (w.set("k", 3u))
    template <std::integral T>
        requires(!ValueAlternative<T> && !std::same_as<T, bool>)
    Value(T value) : storage_(static_cast<detail::fixed_int_t<sizeof(T), std::is_signed_v<T>>>(value)) {}
    Value(const char* text) : storage_(std::string(text)) {}
    Value(std::string_view text) : storage_(std::string(text)) {}

    /// Array of `element_type`; throws std::invalid_argument if an item has another type.
    static Value array(ValueType element_type, std::vector<Value> items) {
        for (const auto& item : items) {
            if (item.type() != element_type) {
                throw std::invalid_argument("gguf array of " + std::string(value_type_name(element_type)) +
                                            " given an item of type " + std::string(value_type_name(item.type())));
            }
        }
        return Value(Array{element_type, std::move(items)});
    }

    /// Array from a list of plain values, e.g. array_of(std::vector<std::string>{...}).
    template <class T>
    requires ValueAlternative<T> || std::same_as<T, const char*>
    static Value array_of(const std::vector<T>& values) {
        Array array;
        array.element_type = values.empty() ? type_of<T>() : Value(values.front()).type();
        array.items.reserve(values.size());
        for (const auto& v : values) array.items.emplace_back(v);
        return Value(std::move(array));
    }

    ValueType type() const noexcept { return static_cast<ValueType>(storage_.index()); }

    template <class T>
    const T* get_if() const noexcept {
        return std::get_if<T>(&storage_);
    }
    const Array* array() const noexcept { return std::get_if<Array>(&storage_); }
    const detail::ValueStorage& storage() const noexcept { return storage_; }

    bool is_integer() const noexcept {
        const auto t = type();
        return t != ValueType::FLOAT32 && t != ValueType::FLOAT64 && t != ValueType::BOOL && t != ValueType::STRING &&
               t != ValueType::ARRAY;
    }
    bool is_float() const noexcept { return type() == ValueType::FLOAT32 || type() == ValueType::FLOAT64; }

    /// An integer value widened to int64/uint64 (only the one that holds it exactly), nullopt if not an integer.
    std::optional<std::int64_t> as_int64() const noexcept {
        return std::visit(
            [](const auto& v) -> std::optional<std::int64_t> {
                using V = std::remove_cvref_t<decltype(v)>;
                if constexpr (std::integral<V> && !std::same_as<V, bool>) {
                    if (std::in_range<std::int64_t>(v)) return static_cast<std::int64_t>(v);
                }
                return std::nullopt;
            },
            storage_);
    }

    /// Converts an integer value to T if it fits; nullopt for non-integers or out-of-range values.
    template <std::integral T>
    std::optional<T> to_integer() const noexcept {
        return std::visit(
            [](const auto& v) -> std::optional<T> {
                using V = std::remove_cvref_t<decltype(v)>;
                if constexpr (std::integral<V> && !std::same_as<V, bool>) {
                    if (std::in_range<T>(v)) return static_cast<T>(v);
                }
                return std::nullopt;
            },
            storage_);
    }

    /// Short human-readable rendering; long strings and arrays are elided after `max_items`.
    std::string to_string(std::size_t max_items = 8) const {
        return std::visit(
            [&](const auto& v) -> std::string {
                using V = std::remove_cvref_t<decltype(v)>;
                if constexpr (std::same_as<V, bool>) {
                    return v ? "true" : "false";
                } else if constexpr (std::same_as<V, std::string>) {
                    const std::size_t limit = 16 * max_items;
                    return "\"" + (v.size() > limit ? v.substr(0, limit) + "..." : v) + "\"";
                } else if constexpr (std::same_as<V, Array>) {
                    std::string out = "[";
                    for (std::size_t i = 0; i < v.items.size() && i < max_items; ++i) {
                        out += (i ? ", " : "") + v.items[i].to_string(max_items);
                    }
                    if (v.items.size() > max_items) out += ", ... (" + std::to_string(v.items.size()) + " items)";
                    return out + "]";
                } else {
                    return std::to_string(v);
                }
            },
            storage_);
    }

    /// GGUF type of a C++ alternative type (e.g. type_of<std::int32_t>() == INT32).
    template <class T>
    static constexpr ValueType type_of() noexcept {
        if constexpr (std::same_as<T, const char*>) {
            return ValueType::STRING;
        } else {
            return static_cast<ValueType>(
                index_of<T>(std::make_index_sequence<std::variant_size_v<detail::ValueStorage>>{}));
        }
    }

    friend bool operator==(const Value& a, const Value& b) { return a.storage_ == b.storage_; }

  private:
    template <class T, std::size_t... I>
    static constexpr std::size_t index_of(std::index_sequence<I...>) noexcept {
        std::size_t index = 0;
        // The fold stops at the first match; its value is not needed (void: clang's -Wunused-value).
        (void)((std::is_same_v<T, std::variant_alternative_t<I, detail::ValueStorage>> ? (index = I, true) : false) || ...);
        return index;
    }

    detail::ValueStorage storage_;
};

inline bool operator==(const Array& a, const Array& b) {
    return a.element_type == b.element_type && a.items == b.items;
}

/// One metadata key/value pair, in file order.
struct MetadataEntry {
    std::string key;
    Value value;
};

}  // namespace qsafe::gguf
