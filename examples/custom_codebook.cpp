// A user-defined 3-bit codebook in the user's own namespace, used with qsafe's quantizer, kernels and
// registry without editing any qsafe header: the Codebook concept is the whole contract.
#include <array>
#include <cstdio>
#include <random>

#include <qsafe/qsafe.hpp>

namespace my_lab {
/// Eight levels denser near zero, normalised to [-1, 1]; 0.0 included so outliers stay exact.
struct DenseCenter3 {
    static constexpr const char* name = "dc";
    static constexpr std::array<float, 8> values = {-1.0f, -0.55f, -0.25f, 0.0f, 0.12f, 0.3f, 0.6f, 1.0f};
};
using Dc3G64 = qsafe::Scheme<qsafe::Bits<3>, qsafe::GroupSize<64>, qsafe::Symmetric, DenseCenter3>;
}  // namespace my_lab

int main() {
    qsafe::register_scheme<my_lab::Dc3G64>("dc3-g64");  // now usable by name, like a built-in scheme
    qsafe::register_scheme<qsafe::Scheme<qsafe::Bits<3>, qsafe::GroupSize<64>>>("int3-g64-asym");  // to compare with
    qsafe::RowMatrixF w(256, 512);
    std::mt19937 rng(1);
    std::normal_distribution<float> gauss;
    for (Eigen::Index i = 0; i < w.size(); ++i) w.data()[i] = gauss(rng);
    for (const char* scheme : {"dc3-g64", "int3-g64-asym"}) {
        const auto layer = qsafe::quantize_by_name(scheme, w);
        std::vector<float> x(512, 1.0f), y(256);
        layer->gemv(x, y);  // qsafe's kernels on the user's codebook
        std::printf("%-14s %.3f bits/weight, SQNR %.2f dB, y[0] = %.4f\n", scheme, layer->bits_per_weight(),
                    qsafe::error_metrics(w, layer->dequantize()).sqnr_db, y[0]);
    }
}
