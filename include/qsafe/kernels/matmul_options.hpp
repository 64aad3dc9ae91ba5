#pragma once
// Options of the quantized matrix products (kernels/matmul.hpp).
#include <cstddef>

namespace qsafe {

/// How activations enter the product.
///  - fp32: exact path, activations stay fp32 (relative error ~1e-6 vs dequantize() + an fp32 product).
///  - int16: activations are quantized on the fly to int16 per block of 32 (d = max|x| / 32767) and the
///    product runs on integer dot products (relative error ~2e-5); used where an integer kernel exists
///    (uniform grids whose groups hold whole 32-code blocks, on AVX2 / AVX-512BW), otherwise fp32 runs.
///  - int8: as int16 but with int8 activations, like llama.cpp's q8_0: fewer instructions per weight, but
///    a relative error of ~5e-3 on Gaussian activations (docs/benchmarks.md). Opt-in only.
///  - automatic: int16 where an integer kernel exists, fp32 otherwise; for large batches, fp32 on
///    dequantized tiles (below), which is both exact and faster there.
enum class ActivationPrecision { automatic, fp32, int8, int16 };

/// Batches of at least this many vectors with fp32 or automatic activations run on dequantized row tiles
/// (kernels/dequantized_tile_kernel.hpp) on x86: rows are decoded once per call instead of once per
/// 1-4 vectors. Below it decoding is cheap next to the products and the chunk kernels are faster
/// (docs/benchmarks.md has the crossover).
inline constexpr std::size_t default_dequantized_tiles_min_batch = 16;

struct MatmulOptions {
    ActivationPrecision activations = ActivationPrecision::automatic;
    /// See default_dequantized_tiles_min_batch; 1 makes every product use dequantized tiles (where the x86
    /// kernels exist), a huge value none.
    std::size_t dequantized_tiles_min_batch = default_dequantized_tiles_min_batch;
};

}  // namespace qsafe
