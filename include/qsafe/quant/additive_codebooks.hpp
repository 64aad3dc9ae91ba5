#pragma once
// Additive codebooks (AQLM-style): a point is approximated by the sum of one codeword from each of M
// codebooks. Fitting: residual k-means to start (book m is fitted to what books 0..m-1 left), then rounds
// of (code update with the books fixed, book update by weighted least squares with the codes fixed).
// Code update: beam search over the first book (the best `beam` entries for the point alone, each
// completed greedily with the other books), then coordinate-descent sweeps that re-choose one book's code
// with the others fixed. Neither step can increase the weighted error of a point, except the final
// rounding of the books to fp16, which is done before the last encoding.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <vector>

#include "qsafe/core/simd_headers.hpp"  // first: before Eigen / xsimd (see there)
#include <Eigen/Cholesky>
#include <Eigen/Core>

#include "qsafe/core/aligned_buffer.hpp"
#include "qsafe/core/parallel.hpp"
#include "qsafe/quant/kmeans_vector.hpp"

namespace qsafe {

struct AdditiveSearchOptions {
    std::size_t beam = 4;  // candidates of the first book (1 = greedy)
    int sweeps = 2;        // coordinate-descent passes after the beam
};

/// M codebooks of `entries` codewords each, entry-major (books x entries x dim).
struct AdditiveCodebooks {
    std::size_t dim = 0;
    std::size_t books = 0;
    std::size_t entries = 256;
    std::vector<float> values;
    const float* codeword(std::size_t m, std::size_t c) const noexcept { return values.data() + (m * entries + c) * dim; }
    std::vector<float> book(std::size_t m) const {
        return {values.begin() + static_cast<std::ptrdiff_t>(m * entries * dim),
                values.begin() + static_cast<std::ptrdiff_t>((m + 1) * entries * dim)};
    }
};

/// Chooses codes (n x books, point-major) for every point; returns the total weighted error.
inline double encode_additive(const WeightedVectors& pts, const AdditiveCodebooks& cb, const AdditiveSearchOptions& opt,
                              std::vector<std::uint8_t>& codes) {
    const std::size_t n = pts.size(), d = pts.dim, nb = cb.books;
    std::vector<SearchCodebook> search;
    for (std::size_t m = 0; m < nb; ++m) search.emplace_back(cb.book(m), d);
    codes.assign(n * nb, 0);
    std::vector<float> err(n);
    parallel_for_ranges(n, 512, [&](std::size_t begin, std::size_t end) {
        aligned_vector<float> dist(cb.entries);
        std::vector<float> target(d), residual(d);
        std::vector<std::size_t> order(cb.entries), candidate(nb), best(nb);
        // Error of a complete code set.
        auto error_of = [&](const float* v, const float* w, const std::vector<std::size_t>& code) {
            std::fill(residual.begin(), residual.end(), 0.0f);
            for (std::size_t t = 0; t < d; ++t) residual[t] = v[t];
            for (std::size_t m = 0; m < nb; ++m)
                for (std::size_t t = 0; t < d; ++t) residual[t] -= cb.codeword(m, code[m])[t];
            double s = 0.0;
            for (std::size_t t = 0; t < d; ++t) s += static_cast<double>(w[t]) * residual[t] * residual[t];
            return s;
        };
        for (std::size_t p = begin; p < end; ++p) {
            const float* v = pts.point(p);
            const float* w = pts.weight(p);
            // Beam over the first book, each candidate completed greedily on the residual.
            search[0].distances(v, w, dist.data());
            const std::size_t beam = std::clamp<std::size_t>(opt.beam, 1, cb.entries);
            std::iota(order.begin(), order.end(), std::size_t{0});
            std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(beam), order.end(),
                              [&](std::size_t a, std::size_t b) { return dist[a] < dist[b] || (dist[a] == dist[b] && a < b); });
            double best_error = -1.0;
            for (std::size_t i = 0; i < beam; ++i) {
                candidate[0] = order[i];
                for (std::size_t t = 0; t < d; ++t) target[t] = v[t] - cb.codeword(0, candidate[0])[t];
                for (std::size_t m = 1; m < nb; ++m) {
                    candidate[m] = search[m].nearest(target.data(), w).first;
                    for (std::size_t t = 0; t < d; ++t) target[t] -= cb.codeword(m, candidate[m])[t];
                }
                const double e = error_of(v, w, candidate);
                if (best_error < 0.0 || e < best_error) {
                    best_error = e;
                    best = candidate;
                }
            }
            // Coordinate descent: one book at a time with the others fixed.
            for (int s = 0; s < opt.sweeps && nb > 1; ++s)
                for (std::size_t m = 0; m < nb; ++m) {
                    for (std::size_t t = 0; t < d; ++t) {
                        float others = 0.0f;
                        for (std::size_t o = 0; o < nb; ++o)
                            if (o != m) others += cb.codeword(o, best[o])[t];
                        target[t] = v[t] - others;
                    }
                    best[m] = search[m].nearest(target.data(), w).first;
                }
            for (std::size_t m = 0; m < nb; ++m) codes[p * nb + m] = static_cast<std::uint8_t>(best[m]);
            err[p] = static_cast<float>(error_of(v, w, best));
        }
    });
    double total = 0.0;
    for (float e : err) total += e;
    return total;
}

/// Weighted least squares for the codewords with the codes fixed, one coordinate at a time:
/// minimise sum_p w_pt (v_pt - sum_m C_m[code_pm][t])^2 over the books x entries unknowns. A small ridge
/// towards the current values keeps unused entries where they are and removes the shift between books
/// (adding u to one book and subtracting it from another changes nothing).
inline void refit_additive_codebooks(const WeightedVectors& pts, const std::vector<std::uint8_t>& codes, AdditiveCodebooks& cb) {
    const std::size_t n = pts.size(), d = pts.dim, nb = cb.books, k = cb.entries, u = nb * k;
    for (std::size_t t = 0; t < d; ++t) {
        Eigen::MatrixXd h = Eigen::MatrixXd::Zero(static_cast<Eigen::Index>(u), static_cast<Eigen::Index>(u));
        Eigen::VectorXd g = Eigen::VectorXd::Zero(static_cast<Eigen::Index>(u));
        for (std::size_t p = 0; p < n; ++p) {
            const double w = pts.weight(p)[t];
            if (!(w > 0.0)) continue;
            for (std::size_t m = 0; m < nb; ++m) {
                const auto i = static_cast<Eigen::Index>(m * k + codes[p * nb + m]);
                g[i] += w * pts.point(p)[t];
                for (std::size_t o = 0; o < nb; ++o) h(i, static_cast<Eigen::Index>(o * k + codes[p * nb + o])) += w;
            }
        }
        const double ridge = 1e-6 * std::max(h.diagonal().mean(), 1e-30);
        for (std::size_t i = 0; i < u; ++i) {
            const auto ii = static_cast<Eigen::Index>(i);
            h(ii, ii) += ridge;
            g[ii] += ridge * cb.values[i * d + t];
        }
        const Eigen::VectorXd solution = h.ldlt().solve(g);
        for (std::size_t i = 0; i < u; ++i)
            if (std::isfinite(solution[static_cast<Eigen::Index>(i)]))
                cb.values[i * d + t] = static_cast<float>(solution[static_cast<Eigen::Index>(i)]);
    }
}

struct AdditiveFitOptions {
    std::size_t books = 2;
    std::size_t entries = 256;
    int kmeans_iterations = 25;  // of the residual initialisation
    int rounds = 3;              // alternating code / codebook updates
    AdditiveSearchOptions search;
    std::uint64_t seed = 0x5eedULL;
};

/// Fits `books` additive codebooks to the points (books = 1 is plain k-means).
inline AdditiveCodebooks fit_additive_codebooks(const WeightedVectors& pts, const AdditiveFitOptions& opt) {
    const std::size_t d = pts.dim;
    AdditiveCodebooks cb{d, opt.books, opt.entries, std::vector<float>(opt.books * opt.entries * d, 0.0f)};
    // Residual initialisation: book m is k-means on what the previous books left.
    WeightedVectors residual = pts;
    for (std::size_t m = 0; m < opt.books; ++m) {
        const std::vector<float> book =
            kmeans_vectors(residual, KMeansVectorOptions{opt.entries, opt.kmeans_iterations, opt.seed + 0x9e3779b97f4a7c15ULL * m});
        std::copy(book.begin(), book.end(), cb.values.begin() + static_cast<std::ptrdiff_t>(m * opt.entries * d));
        if (m + 1 == opt.books) break;
        std::vector<std::uint8_t> codes;
        assign_nearest(residual, SearchCodebook(book, d), codes);
        for (std::size_t p = 0; p < residual.size(); ++p)
            for (std::size_t t = 0; t < d; ++t) residual.values[p * d + t] -= book[codes[p] * d + t];
    }
    if (opt.books < 2) return cb;
    std::vector<std::uint8_t> codes;
    for (int round = 0; round < opt.rounds; ++round) {
        encode_additive(pts, cb, opt.search, codes);
        refit_additive_codebooks(pts, codes, cb);
    }
    return cb;
}

}  // namespace qsafe
