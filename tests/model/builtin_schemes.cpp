// The one translation unit of this test program that instantiates (and so registers) the built-in schemes.
#include "qsafe/registry/builtin_schemes.hpp"
