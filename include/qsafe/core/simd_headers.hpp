#pragma once
// Included by every qsafe header before Eigen or xsimd: the compiler's x86 intrinsic headers, read once here
// under a narrow diagnostic exception.
//
// Why: GCC 12's AVX-512 headers build "undefined" vectors as `__m512 __Y = __Y;` (_mm512_undefined_ps and
// friends) and only silence -Winit-self around it. Once AVX-512 is enabled (-march=native on an AVX-512 CPU),
// every inlined use — Eigen's AVX-512 packet transposes, xsimd, qsafe's kernels — then reports
// -Wuninitialized / -Wmaybe-uninitialized *inside the compiler's own header* at -O2 and above, which fails
// any build with -Werror (GCC bug 105593; GCC 13 fixed the headers). GCC judges a diagnostic by the pragma
// state at the diagnostic's location, and those locations are lines of the intrinsic headers: reading the
// headers here, between push and pop, silences exactly those two warnings in exactly those files. The same
// warnings stay errors in qsafe's code and in the user's.
//
// A program that includes <immintrin.h> (directly, or through Eigen or xsimd) before any qsafe header gets
// the compiler's headers without the exception: include qsafe first, or build with GCC >= 13.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13 && (defined(__x86_64__) || defined(__i386__))
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "qsafe/core/simd_headers.hpp"  // first: before Eigen / xsimd (see there)
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif
