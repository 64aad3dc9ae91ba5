#pragma once
// Exception hierarchy. Every error thrown at an API or I/O boundary derives from qsafe::error and its
// message names what is wrong and where (file, tensor, key, row or byte offset), so a command-line tool can
// print it verbatim and exit non-zero. Kernels never throw: inputs are validated before they run.
#include <stdexcept>
#include <string>

namespace qsafe {

struct error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// A file's contents break its format (bad magic, offsets past the end, unknown type, ...).
struct format_error : error {
    using error::error;
};

/// The operating system refused an operation (open, map, read, write, rename).
struct io_error : error {
    using error::error;
};

/// Matrix or vector dimensions that do not fit together.
struct shape_error : error {
    using error::error;
};

/// A bad name, rule, option or argument given by the user (unknown scheme, malformed rule string, ...).
struct config_error : error {
    using error::error;
};

/// Non-finite or otherwise unusable numbers (NaN/Inf weights, a singular Hessian, ...).
struct numeric_error : error {
    using error::error;
};

}  // namespace qsafe
