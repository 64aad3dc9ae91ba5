#pragma once
// Options of the quantized matrix products (kernels/matmul.hpp).
namespace qsafe {

/// How activations enter the product.
///  - fp32: exact path, activations stay fp32 (relative error ~1e-6 vs dequantize() + an fp32 product).
///  - int16: activations are quantized on the fly to int16 per block of 32 (d = max|x| / 32767) and the
///    product runs on integer dot products (relative error ~2e-5); used where an integer kernel exists
///    (uniform grids whose groups hold whole 32-code blocks, on AVX2 / AVX-512BW), otherwise fp32 runs.
///  - int8: as int16 but with int8 activations, like llama.cpp's q8_0: fewer instructions per weight, but
///    a relative error of ~5e-3 on Gaussian activations (docs/benchmarks.md). Opt-in only.
///  - automatic: int16 where an integer kernel exists, fp32 otherwise.
enum class ActivationPrecision { automatic, fp32, int8, int16 };

struct MatmulOptions {
    ActivationPrecision activations = ActivationPrecision::automatic;
};

}  // namespace qsafe
