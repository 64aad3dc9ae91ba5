// expect: outliers need a codebook that contains 0.0
#include "qsafe/formats/quantized_matrix.hpp"
struct NoZero {
    static constexpr const char* name = "nz";
    static constexpr std::array<float, 4> values = {-1.0f, -0.3f, 0.3f, 1.0f};
};
using S = qsafe::Scheme<qsafe::Bits<2>, qsafe::GroupSize<32>, qsafe::Symmetric, NoZero, qsafe::SparseOutliers<100>>;
unsigned f(const qsafe::QuantizedMatrix<S>& m) { return m.zero_code(0, 0); }
