#pragma once
// qsafe umbrella header: the public modules. It registers the built-in schemes (instantiating all their
// kernels), so large programs include it from one translation unit and the finer headers elsewhere.
#include "qsafe/version.hpp"

#include "qsafe/core/error.hpp"
#include "qsafe/core/half.hpp"
#include "qsafe/core/matrix_view.hpp"
#include "qsafe/core/parallel.hpp"

#include "qsafe/policy/scheme.hpp"

#include "qsafe/formats/matrix_serialization.hpp"
#include "qsafe/formats/quantized_matrix.hpp"

#include "qsafe/quant/error_metrics.hpp"
#include "qsafe/quant/rtn.hpp"

#include "qsafe/kernels/matmul.hpp"

#include "qsafe/registry/builtin_schemes.hpp"
#include "qsafe/registry/quantized_linear.hpp"
#include "qsafe/registry/scheme_registry.hpp"
