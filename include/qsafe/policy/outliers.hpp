#pragma once
// Outlier policy: which weights bypass the low-bit grid and are kept in fp16.
//  - NoOutliers.
//  - OutlierColumns<K>: K whole input columns (QUIK / LLM.int8 style), chosen by calibration activation
//    norm when given, else by weight column norm; stored densely as rows x K fp16 plus the column indices.
//  - SparseOutliers<PartsPerMillion>: individual weights (SpQR style), chosen by |w| or by a caller-supplied
//    score (e.g. a safety-criticality score), stored in CSR with 16-bit column indices and fp16 values.
// The amounts are defaults: QuantizeOptions and scheme names (`+ocol64`, `+sparse1%`) may override them at
// run time without changing the storage type.
#include <concepts>
#include <cstddef>

namespace qsafe {

enum class OutlierKind { none, columns, sparse };

struct NoOutliers {
    static constexpr OutlierKind kind = OutlierKind::none;
};

template <std::size_t K>
struct OutlierColumns {
    static constexpr OutlierKind kind = OutlierKind::columns;
    static constexpr std::size_t default_columns = K;
};

template <std::size_t PartsPerMillion>
struct SparseOutliers {
    static constexpr OutlierKind kind = OutlierKind::sparse;
    static constexpr double default_fraction = static_cast<double>(PartsPerMillion) * 1e-6;
};

template <class T>
concept OutlierPolicy = requires {
    { T::kind } -> std::convertible_to<OutlierKind>;
} && (T::kind == OutlierKind::none ||
      (T::kind == OutlierKind::columns && requires { { T::default_columns } -> std::convertible_to<std::size_t>; }) ||
      (T::kind == OutlierKind::sparse && requires { { T::default_fraction } -> std::convertible_to<double>; }));

}  // namespace qsafe
