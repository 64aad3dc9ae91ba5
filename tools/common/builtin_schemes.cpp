// Compiles the built-in schemes (their quantizers and kernels) once for all of qsafe's own programs and
// registers them at start-up. Programs link the object library qsafe_builtin_schemes built from this file.
#include "qsafe/registry/builtin_schemes.hpp"
