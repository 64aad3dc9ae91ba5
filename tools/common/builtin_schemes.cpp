// Compiles the built-in schemes (their quantizers and kernels) once for all of qsafe's own programs and
// registers them at start-up, together with the kernels compiled per instruction-set level (isa_kernels.hpp).
// Programs link the object library qsafe_builtin_schemes built from this file, which brings the units along.
#include "isa_kernels.hpp"
#include "qsafe/registry/builtin_schemes.hpp"

namespace qsafe::detail {
// Before any layer is built: layers look up their dispatched kernel when they are constructed.
[[maybe_unused]] static const bool builtin_isa_kernels_registered = (register_builtin_isa_kernels(), true);
}  // namespace qsafe::detail
