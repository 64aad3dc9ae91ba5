#pragma once
// Options of the quantized matrix products (kernels/matmul.hpp).
namespace qsafe {

/// How activations enter the product.
///  - fp32: exact path, activations stay fp32 (relative error ~1e-6 vs dequantize() + an fp32 product).
///  - int8: activations are quantized on the fly to int8 per block of 32 (like llama.cpp's q8_0) and the
///    product runs on integer dot products; used where an integer kernel exists (uniform grids whose groups
///    hold whole 32-code blocks, on AVX2 / AVX-512BW), otherwise the fp32 path runs.
///  - automatic: int8 where an integer kernel exists, fp32 otherwise.
enum class ActivationPrecision { automatic, fp32, int8 };

struct MatmulOptions {
    ActivationPrecision activations = ActivationPrecision::automatic;
};

}  // namespace qsafe
