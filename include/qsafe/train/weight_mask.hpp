#pragma once
// A sparse mask over one weight matrix: the positions a masked LoRA adapter may change (Q-resafe's
// "LoRA restricted to safety-critical weights"). With a mask M the adapted layer computes
//     y = x·(W + M ⊙ (α/r)·B·A)ᵀ
// so the update B·A reaches the masked positions only. The adapter's A and B stay dense low-rank factors
// (the optimizer state is LoRA's), but the product is never formed densely: train/trainable_llama.hpp adds
// the masked entries as a sparse correction after the base layer's own product, which costs
// (masked entries × tokens) instead of (rows × cols × tokens). Its gradient reaches B and A through the
// masked entries only: dB[i,:] += s·g_ij·A[:,j], dA[:,j] += s·g_ij·B[i,:], with g_ij = Σ_t dY[t,i]·X[t,j].
//
// Stored as CSR: row_ptr (rows + 1 entries) and the column of each masked entry, columns ascending within
// a row; entry e of row i is flat index i·cols + col[e].
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "qsafe/core/error.hpp"
#include "qsafe/io/gguf.hpp"
#include "qsafe/io/gguf_writer.hpp"

namespace qsafe::train {

struct WeightMask {
    std::size_t rows = 0, cols = 0;
    std::vector<std::uint32_t> row_ptr;  // rows + 1
    std::vector<std::uint32_t> col;

    std::size_t count() const noexcept { return col.size(); }

    /// The mask of the given row-major flat indices (any order, duplicates allowed) over a rows × cols matrix.
    /// Throws config_error naming `tensor` for an index outside it.
    static WeightMask from_indices(std::size_t rows, std::size_t cols, std::vector<std::size_t> indices, const std::string& tensor) {
        std::sort(indices.begin(), indices.end());
        indices.erase(std::unique(indices.begin(), indices.end()), indices.end());
        WeightMask m;
        m.rows = rows;
        m.cols = cols;
        m.row_ptr.assign(rows + 1, 0);
        m.col.reserve(indices.size());
        for (const std::size_t i : indices) {
            if (i >= rows * cols)
                throw config_error("weight mask of '" + tensor + "': index " + std::to_string(i) + " is outside the " + std::to_string(rows) + "x" +
                                   std::to_string(cols) + " matrix");
            m.col.push_back(static_cast<std::uint32_t>(i % cols));
            ++m.row_ptr[i / cols + 1];
        }
        for (std::size_t r = 0; r < rows; ++r) m.row_ptr[r + 1] += m.row_ptr[r];
        return m;
    }

    /// Row-major flat indices of the masked entries, ascending.
    std::vector<std::size_t> indices() const {
        std::vector<std::size_t> out;
        out.reserve(count());
        for (std::size_t r = 0; r < rows; ++r)
            for (std::uint32_t e = row_ptr[r]; e < row_ptr[r + 1]; ++e) out.push_back(r * cols + col[e]);
        return out;
    }

    /// Checks the CSR's invariants (sizes, ascending columns inside the matrix); `context` names the mask.
    void validate(const std::string& context) const {
        if (row_ptr.size() != rows + 1 || row_ptr.front() != 0 || row_ptr.back() != col.size())
            throw format_error(context + ": weight mask row pointers do not describe " + std::to_string(col.size()) + " entries over " +
                               std::to_string(rows) + " rows");
        for (std::size_t r = 0; r < rows; ++r) {
            if (row_ptr[r + 1] < row_ptr[r]) throw format_error(context + ": weight mask row pointers decrease at row " + std::to_string(r));
            for (std::uint32_t e = row_ptr[r]; e < row_ptr[r + 1]; ++e)
                if (col[e] >= cols || (e > row_ptr[r] && col[e] <= col[e - 1]))
                    throw format_error(context + ": weight mask row " + std::to_string(r) + " has column " + std::to_string(col[e]) +
                                       (col[e] >= cols ? " outside the matrix" : " out of order"));
        }
    }
};

inline constexpr const char* weight_mask_file_type = "qsafe.weight_masks";

/// Writes masks by tensor name as one GGUF file (general.type "qsafe.weight_masks"; per tensor an I32
/// "<name>.mask_row_ptr" and "<name>.mask_col", and the shape as "<name>.mask_shape" = "ROWSxCOLS"), atomically.
inline void save_weight_masks(const std::filesystem::path& path, const std::map<std::string, WeightMask>& masks) {
    gguf::Writer out;
    out.set("general.type", std::string(weight_mask_file_type));
    auto bytes = [](const std::vector<std::uint32_t>& v) {
        std::vector<std::byte> b(v.size() * sizeof(std::uint32_t));
        if (!v.empty()) std::memcpy(b.data(), v.data(), b.size());
        return b;
    };
    for (const auto& [name, m] : masks) {
        out.set(name + ".mask_shape", std::to_string(m.rows) + "x" + std::to_string(m.cols));
        out.add_tensor(name + ".mask_row_ptr", {m.row_ptr.size()}, GgmlType::I32, bytes(m.row_ptr));
        // A GGUF tensor holds at least one element: an empty mask stores one placeholder column.
        out.add_tensor(name + ".mask_col", {std::max<std::size_t>(1, m.col.size())}, GgmlType::I32, bytes(m.col.empty() ? std::vector<std::uint32_t>{0} : m.col));
    }
    out.write(path);
}

/// Reads save_weight_masks' file; format_error naming the file and tensor for anything malformed.
inline std::map<std::string, WeightMask> load_weight_masks(const std::filesystem::path& path) {
    const std::string where = path.string();
    const gguf::File file = gguf::File::open(path);
    if (file.get_optional<std::string>("general.type").value_or("") != weight_mask_file_type) throw format_error(where + ": not a qsafe weight-mask file");
    auto read = [&](const std::string& name) {
        const gguf::TensorInfo* t = file.find_tensor(name);
        if (t == nullptr || t->type != GgmlType::I32) throw format_error(where + ": tensor '" + name + "' is missing or not I32");
        const auto b = file.tensor_bytes(*t);
        std::vector<std::uint32_t> v(b.size() / sizeof(std::uint32_t));
        std::memcpy(v.data(), b.data(), v.size() * sizeof(std::uint32_t));
        return v;
    };
    std::map<std::string, WeightMask> masks;
    for (const auto& t : file.tensors()) {
        if (!t.name.ends_with(".mask_row_ptr")) continue;
        const std::string name = t.name.substr(0, t.name.size() - std::string_view(".mask_row_ptr").size());
        const std::string shape = file.get_optional<std::string>(name + ".mask_shape").value_or("");
        WeightMask m;
        const auto x = shape.find('x');
        try {
            if (x == std::string::npos) throw std::invalid_argument("no x");
            m.rows = std::stoull(shape.substr(0, x));
            m.cols = std::stoull(shape.substr(x + 1));
        } catch (const std::exception&) {
            throw format_error(where + ": '" + name + ".mask_shape' is '" + shape + "', not ROWSxCOLS");
        }
        m.row_ptr = read(name + ".mask_row_ptr");
        m.col = read(name + ".mask_col");
        if (!m.row_ptr.empty() && m.row_ptr.back() == 0) m.col.clear();  // an empty mask's placeholder
        m.validate(where + ": mask of '" + name + "'");
        masks.emplace(name, std::move(m));
    }
    if (masks.empty()) throw format_error(where + ": the file holds no masks");
    return masks;
}

}  // namespace qsafe::train
