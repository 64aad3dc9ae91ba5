#pragma once
// Input statistics of the linear layers, gathered by running the full-precision model over calibration
// samples. Layers that read the same activations share one entry (an "input site"): q/k/v read the
// attention norm's output, gate/up the MLP norm's output. Per site, over all calibration tokens x:
//   hessian  = sum x x^T      (GPTQ's H up to the factor 2/n, AWQ's output-error metric)
//   sum_abs  = sum |x_j|      (AWQ's activation scale: mean |x_j|)
//   sum_sq   = sum x_j^2      (llama.cpp's imatrix importance: mean x_j^2)
//   max_abs  = max |x_j|      (QUIK / LLM.int8 outlier channels)
// Statistics are saved as a GGUF file of F32 tensors so they can be inspected with any GGUF tool.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "qsafe/core/simd_headers.hpp"  // first: before Eigen / xsimd (see there)
#include <Eigen/Core>

#include "qsafe/core/error.hpp"
#include "qsafe/core/fp32_blas.hpp"
#include "qsafe/core/matrix_view.hpp"
#include "qsafe/core/parallel.hpp"
#include "qsafe/io/gguf.hpp"

namespace qsafe {

using MatrixXfCol = Eigen::MatrixXf;

struct LinearInputStats {
    std::size_t cols = 0;
    std::uint64_t tokens = 0;
    MatrixXfCol hessian;   // cols x cols, symmetric (both triangles filled after finalize())
    VectorF sum_abs, sum_sq, max_abs;

    explicit LinearInputStats(std::size_t n = 0) { reset(n); }
    void reset(std::size_t n) {
        cols = n;
        tokens = 0;
        hessian = MatrixXfCol::Zero(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(n));
        sum_abs = VectorF::Zero(static_cast<Eigen::Index>(n));
        sum_sq = VectorF::Zero(static_cast<Eigen::Index>(n));
        max_abs = VectorF::Zero(static_cast<Eigen::Index>(n));
    }

    /// Adds a (tokens x cols) block of inputs.
    void add(ConstMatrixView x) {
        if (x.cols != cols) throw shape_error("calibration: input has " + std::to_string(x.cols) + " features, site has " + std::to_string(cols));
        // Lower triangle only (mirrored once in finalize()).
        fp32_blas::gram_lower_add(x, hessian.data(), cols);
        // Per-column sums and maximum in one pass over the inputs, columns split over threads.
        constexpr std::size_t column_block = 64;
        parallel_for((cols + column_block - 1) / column_block, [&](std::size_t b) {
            const std::size_t c0 = b * column_block, c1 = std::min(cols, c0 + column_block);
            float* abs_sum = sum_abs.data() + c0;
            float* sq_sum = sum_sq.data() + c0;
            float* max = max_abs.data() + c0;
            for (std::size_t t = 0; t < x.rows; ++t) {
                const float* row = x.data + t * x.stride + c0;
                for (std::size_t j = 0; j < c1 - c0; ++j) {
                    const float a = std::fabs(row[j]);
                    abs_sum[j] += a;
                    sq_sum[j] += a * a;
                    max[j] = std::max(max[j], a);
                }
            }
        });
        tokens += x.rows;
    }
    void finalize() {
        for (Eigen::Index c = 1; c < hessian.cols(); ++c)
            hessian.col(c).head(c) = hessian.row(c).head(c).transpose();
    }

    VectorF mean_abs() const { return tokens ? VectorF(sum_abs / static_cast<float>(tokens)) : sum_abs; }
    VectorF mean_sq() const { return tokens ? VectorF(sum_sq / static_cast<float>(tokens)) : sum_sq; }
};

/// Which input site a linear tensor reads ("blk.3.attn_k.weight" -> "blk.3.attn_in").
inline std::string input_site(const std::string& tensor) {
    const auto dot = tensor.rfind(".weight");
    const std::string base = dot == std::string::npos ? tensor : tensor.substr(0, dot);
    const auto last = base.rfind('.');
    const std::string prefix = last == std::string::npos ? "" : base.substr(0, last + 1);
    const std::string leaf = last == std::string::npos ? base : base.substr(last + 1);
    if (leaf == "attn_q" || leaf == "attn_k" || leaf == "attn_v") return prefix + "attn_in";
    if (leaf == "ffn_gate" || leaf == "ffn_up") return prefix + "ffn_in";
    return base;
}

struct CalibrationStats {
    std::map<std::string, LinearInputStats> sites;
    // What the statistics were computed from, recorded in quantized files (e.g. "wikitext2:128x512:seed=1").
    std::string description;

    const LinearInputStats* for_tensor(const std::string& tensor) const {
        const auto it = sites.find(input_site(tensor));
        return it == sites.end() ? nullptr : &it->second;
    }
    const LinearInputStats& require(const std::string& tensor) const {
        const auto* s = for_tensor(tensor);
        if (!s || s->tokens == 0)
            throw config_error("calibration statistics have no inputs for tensor '" + tensor + "' (site '" + input_site(tensor) + "')");
        return *s;
    }

    void save(const std::filesystem::path& path) const {
        gguf::Writer w;
        w.set("general.type", std::string("qsafe.calibration"));
        w.set("qsafe.calibration.description", description);
        for (const auto& [site, s] : sites) {
            w.set("qsafe.calibration." + site + ".tokens", static_cast<std::uint64_t>(s.tokens));
            const std::uint64_t n = s.cols;
            w.add_tensor_f32(site + ".hessian", {n, n}, std::span<const float>(s.hessian.data(), n * n));
            w.add_tensor_f32(site + ".sum_abs", {n}, std::span<const float>(s.sum_abs.data(), n));
            w.add_tensor_f32(site + ".sum_sq", {n}, std::span<const float>(s.sum_sq.data(), n));
            w.add_tensor_f32(site + ".max_abs", {n}, std::span<const float>(s.max_abs.data(), n));
        }
        w.write(path);
    }

    static CalibrationStats load(const std::filesystem::path& path) {
        const auto f = gguf::File::open(path);
        if (f.get_optional<std::string>("general.type").value_or("") != "qsafe.calibration")
            throw format_error(path.string() + ": not a qsafe calibration file (general.type is not 'qsafe.calibration')");
        CalibrationStats out;
        out.description = f.get_optional<std::string>("qsafe.calibration.description").value_or("");
        for (const auto& t : f.tensors()) {
            const std::string& name = t.name;
            if (!name.ends_with(".hessian")) continue;
            const std::string site = name.substr(0, name.size() - 8);
            const std::size_t n = t.row_length();
            if (t.dims.size() != 2 || t.rows() != n)
                throw format_error(path.string() + ": tensor '" + name + "' is not square");
            LinearInputStats s(n);
            s.tokens = f.get<std::uint64_t>("qsafe.calibration." + site + ".tokens");
            auto copy = [&](const std::string& tensor, float* dst, std::size_t count) {
                const auto& info = f.tensor(tensor);
                if (info.n_elements() != count)
                    throw format_error(path.string() + ": tensor '" + tensor + "' has " + std::to_string(info.n_elements()) +
                                       " elements, expected " + std::to_string(count));
                const auto v = f.tensor_to_f32(info);
                std::copy(v.begin(), v.end(), dst);
            };
            copy(name, s.hessian.data(), n * n);
            copy(site + ".sum_abs", s.sum_abs.data(), n);
            copy(site + ".sum_sq", s.sum_sq.data(), n);
            copy(site + ".max_abs", s.max_abs.data(), n);
            out.sites.emplace(site, std::move(s));
        }
        if (out.sites.empty()) throw format_error(path.string() + ": calibration file holds no statistics");
        return out;
    }
};

}  // namespace qsafe
