#pragma once
#define QSAFE_VERSION_MAJOR 0
#define QSAFE_VERSION_MINOR 1
#define QSAFE_VERSION_PATCH 0

namespace qsafe {
inline constexpr const char* version_string = "0.1.0";
}
