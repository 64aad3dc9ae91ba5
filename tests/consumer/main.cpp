// A consumer of the installed / fetched qsafe: quantize a matrix by scheme name and multiply.
#include <qsafe/qsafe.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

int main() {
    qsafe::RowMatrixF w(96, 160);
    for (Eigen::Index i = 0; i < w.size(); ++i) w.data()[i] = std::sin(0.37f * static_cast<float>(i));
    const auto layer = qsafe::quantize_by_name("int4-g32-asym", w);
    std::vector<float> x(160, 0.5f), y(96);
    layer->gemv(x, y);
    const qsafe::RowMatrixF dq = layer->dequantize();
    double max_err = 0;
    for (Eigen::Index r = 0; r < 96; ++r) {
        const double ref = (dq.row(r) * 0.5f).sum();
        max_err = std::max(max_err, std::abs(ref - y[static_cast<std::size_t>(r)]));
    }
    std::printf("qsafe consumer: %zu schemes registered, %s at %.3f bits/weight, max |y - y_ref| = %.2e\n",
                qsafe::list_schemes().size(), layer->scheme_name().c_str(), layer->bits_per_weight(), max_err);
    return max_err < 1e-2 ? 0 : 1;
}
