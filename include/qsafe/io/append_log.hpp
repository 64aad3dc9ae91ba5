#pragma once
// Files that grow one line per finished unit of work (answer journals, the sensitivity cache): a process
// killed during a write leaves the last line without its newline. Before such a file is appended to again,
// that unfinished line is cut away — otherwise the next line would be glued to it and both lost, or the
// reader would refuse the file. The unit of work it held is simply done again.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>

#include "qsafe/core/error.hpp"

namespace qsafe::io {

/// Cuts the file back to its last newline; returns the bytes cut (0 when the file is missing or complete).
inline std::uint64_t cut_unfinished_last_line(const std::filesystem::path& path) {
    if (!std::filesystem::exists(path)) return 0;
    std::ifstream in(path, std::ios::binary);
    if (!in) throw io_error(path.string() + ": cannot open");
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::size_t newline = text.rfind('\n');
    const std::size_t keep = newline == std::string::npos ? 0 : newline + 1;
    if (keep == text.size()) return 0;
    std::error_code ec;
    std::filesystem::resize_file(path, keep, ec);
    if (ec) throw io_error(path.string() + ": cannot cut the unfinished last line: " + ec.message());
    return text.size() - keep;
}

}  // namespace qsafe::io
