#pragma once
// A file with given bytes in the temporary folder, removed when the test ends.
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <unistd.h>

namespace eval_data_test {

class TempFile {
  public:
    TempFile(std::string_view name, std::string_view bytes)
        : path_(std::filesystem::temp_directory_path() / ("qsafe_eval_data_" + std::to_string(::getpid()) + "_" + std::string(name))) {
        std::ofstream out(path_, std::ios::binary);
        out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    }
    TempFile(const TempFile&) = delete;
    TempFile& operator=(const TempFile&) = delete;
    ~TempFile() {
        std::error_code ignored;
        std::filesystem::remove(path_, ignored);
    }
    const std::filesystem::path& path() const noexcept { return path_; }
    std::string name() const { return path_.string(); }

  private:
    std::filesystem::path path_;
};

/// The message of the exception `f` throws as E, or "" if it throws nothing.
template <class E, class F>
std::string error_message(F&& f) {
    try {
        f();
    } catch (const E& e) {
        return e.what();
    }
    return {};
}

}  // namespace eval_data_test
