// A consumer of the installed / fetched qsafe: compose a scheme, quantize, multiply, register it by name.
#include <qsafe/qsafe.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

using Int4G32 = qsafe::Scheme<qsafe::Bits<4>, qsafe::GroupSize<32>, qsafe::Asymmetric>;

int main() {
    qsafe::RowMatrixF w(96, 160);
    for (Eigen::Index i = 0; i < w.size(); ++i) w.data()[i] = std::sin(0.37f * static_cast<float>(i));
    const auto q = qsafe::quantize_rtn<Int4G32>(w);
    std::vector<float> x(160, 0.5f), y(96);
    qsafe::gemv(q, x, y);
    const qsafe::RowMatrixF dq = q.dequantize();
    double max_err = 0;
    for (Eigen::Index r = 0; r < 96; ++r) {
        const double ref = (dq.row(r) * 0.5f).sum();
        max_err = std::max(max_err, std::abs(ref - y[static_cast<std::size_t>(r)]));
    }
    // The fp32 reference layer (Eigen or OpenBLAS, whichever the target links) agrees with the same product.
    const qsafe::DenseLinear dense(w);
    qsafe::RowMatrixF xs = qsafe::RowMatrixF::Constant(3, 160, 0.25f), ys(3, 96);
    dense.gemm(xs, ys);
    const double dense_err = (ys - xs * w.transpose()).cwiseAbs().maxCoeff();
    qsafe::register_scheme<Int4G32>("my-int4-g32");
    const auto layer = qsafe::quantize_by_name("my-int4-g32", w);
    std::printf("qsafe %s consumer: %s at %.3f bits/weight, max |y - y_ref| = %.2e, fp32 (%s) %.2e\n",
                qsafe::version_string, layer->scheme_name().c_str(), layer->bits_per_weight(), max_err,
                qsafe::fp32_blas::backend_name(), dense_err);
    return max_err < 1e-2 && dense_err < 1e-4 ? 0 : 1;
}
