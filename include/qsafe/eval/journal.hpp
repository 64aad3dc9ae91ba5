#pragma once
// The evaluation journal: an append-only JSON Lines file that makes a long safety run resumable. Line 1 is a
// header with the run configuration; every further line is one judged response, or the description of a
// model variant. Each line is written with a single write() and made durable (fsync) before append()
// returns, so killing the process loses at most the response being generated. A crash in the middle of a
// write leaves a final line without its newline; resuming cuts it away. Any other damage (an unreadable line
// before the end) is reported with the file and line number instead of being skipped, because silently
// dropping results would bias the rates computed from the journal.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "qsafe/core/error.hpp"
#include "qsafe/core/json_depth.hpp"
#include "qsafe/eval/record.hpp"

namespace qsafe::eval {

/// The settings that decide what the responses are; resuming with different ones would mix two experiments
/// in one journal. Variants may be added on resume (extending a run is fine), so they are not part of it.
struct RunConfig {
    std::string model;                  // the reference model file or name
    std::vector<std::string> datasets;  // names or paths
    std::string judge;                  // judge name and version
    nlohmann::json decoding = nlohmann::json::object();  // max_new_tokens, temperature, top_p, seed, template ...

    friend bool operator==(const RunConfig&, const RunConfig&) = default;
};

inline nlohmann::ordered_json run_config_to_json(const RunConfig& c) {
    nlohmann::ordered_json j;
    j["model"] = c.model;
    j["datasets"] = c.datasets;
    j["judge"] = c.judge;
    j["decoding"] = nlohmann::ordered_json::parse(c.decoding.dump());
    return j;
}

inline RunConfig run_config_from_json(const nlohmann::ordered_json& j) {
    constexpr const char* what = "journal header config";
    RunConfig c;
    c.model = detail::json_get<std::string>(j, "model", what);
    c.datasets = detail::json_get<std::vector<std::string>>(j, "datasets", what);
    c.judge = detail::json_get<std::string>(j, "judge", what);
    const auto& decoding = detail::json_member(j, "decoding", what);
    if (!decoding.is_object()) throw format_error(std::string(what) + ": 'decoding' must be an object");
    c.decoding = nlohmann::json::parse(decoding.dump());
    return c;
}

/// "model: journal has 'a', this run has 'b'; decoding.temperature: ..." — empty when the configs match.
inline std::string describe_config_differences(const RunConfig& journal, const RunConfig& run) {
    std::string out;
    auto note = [&](const std::string& key, const std::string& old_value, const std::string& new_value) {
        if (old_value == new_value) return;
        if (!out.empty()) out += "; ";
        out += key + ": journal has " + old_value + ", this run has " + new_value;
    };
    auto quoted = [](const nlohmann::json& v) { return v.dump(); };
    note("model", quoted(journal.model), quoted(run.model));
    note("datasets", quoted(journal.datasets), quoted(run.datasets));
    note("judge", quoted(journal.judge), quoted(run.judge));
    for (const auto& [key, value] : journal.decoding.items()) {
        const auto it = run.decoding.find(key);
        note("decoding." + key, value.dump(), it == run.decoding.end() ? "nothing" : it->dump());
    }
    for (const auto& [key, value] : run.decoding.items())
        if (!journal.decoding.contains(key)) note("decoding." + key, "nothing", value.dump());
    return out;
}

inline constexpr int journal_format_version = 1;

/// Everything a journal file holds, as read back.
struct JournalContents {
    RunConfig config;
    std::vector<ResponseRecord> records;  // in file order
    std::vector<VariantInfo> variants;    // one per name, the latest description wins, in first-seen order
    std::uint64_t complete_bytes = 0;     // length of the header and all complete lines
    std::uint64_t torn_tail_bytes = 0;    // an unfinished final line (crash during a write), not counted above
};

namespace detail {

inline std::string journal_key(std::string_view dataset, std::string_view variant, std::string_view prompt_id) {
    std::string key;
    key.reserve(dataset.size() + variant.size() + prompt_id.size() + 2);
    key.append(dataset).push_back('\x1f');  // unit separator: cannot be confused with text in names
    key.append(variant).push_back('\x1f');
    key.append(prompt_id);
    return key;
}

inline void remember_variant(std::vector<VariantInfo>& variants, VariantInfo info) {
    for (auto& v : variants)
        if (v.name == info.name) {
            v = std::move(info);
            return;
        }
    variants.push_back(std::move(info));
}

/// One line as the journal writes it: compact JSON, invalid UTF-8 from a model replaced by U+FFFD.
inline std::string journal_line(const nlohmann::ordered_json& j) {
    return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + '\n';
}

/// Parses a whole journal. Returns false in `has_header` when not even the header line is complete.
inline JournalContents parse_journal(std::string_view text, const std::string& name, bool& has_header) {
    JournalContents out;
    std::unordered_set<std::string> seen;
    has_header = false;
    std::size_t line_number = 0;
    std::size_t start = 0;
    while (start < text.size()) {
        const std::size_t end = text.find('\n', start);
        if (end == std::string_view::npos) {  // no newline: the write of this line never finished
            out.torn_tail_bytes = text.size() - start;
            break;
        }
        ++line_number;
        const std::string_view line = text.substr(start, end - start);
        const std::string where = name + ":" + std::to_string(line_number) + ": ";
        nlohmann::ordered_json j;
        try {
            require_json_depth(line, where + "corrupt journal line");
            j = nlohmann::ordered_json::parse(line);
        } catch (const nlohmann::json::exception& e) {
            throw format_error(where + "corrupt journal line (not JSON: " + e.what() +
                               "); the journal is damaged before its end, so it cannot be resumed safely");
        }
        try {
            if (line_number == 1) {
                if (!j.is_object() || !j.contains("qsafe_journal"))
                    throw format_error("the first line is not a qsafe journal header");
                const auto version = json_get<int>(j, "qsafe_journal", "journal header");
                if (version != journal_format_version)
                    throw format_error("journal format version " + std::to_string(version) +
                                       " is not supported (expected " + std::to_string(journal_format_version) + ")");
                out.config = run_config_from_json(json_member(j, "config", "journal header"));
                has_header = true;
            } else if (j.is_object() && j.contains("variant_info")) {
                remember_variant(out.variants, j["variant_info"].get<VariantInfo>());
            } else {
                auto record = j.get<ResponseRecord>();
                if (!seen.insert(journal_key(record.dataset, record.variant, record.prompt_id)).second)
                    throw format_error("duplicate result for variant '" + record.variant + "', prompt '" +
                                       record.prompt_id + "' of dataset '" + record.dataset + "'");
                out.records.push_back(std::move(record));
            }
        } catch (const error& e) {
            throw format_error(where + e.what());
        }
        out.complete_bytes = end + 1;
        start = end + 1;
    }
    return out;
}

inline std::string read_whole_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw io_error(path.string() + ": cannot open: " + std::strerror(errno));
    std::ostringstream buffer;
    buffer << in.rdbuf();
    if (in.bad()) throw io_error(path.string() + ": read failed");
    return std::move(buffer).str();
}

inline void write_all(int fd, std::string_view bytes, const std::string& name) {
    while (!bytes.empty()) {
        const ssize_t written = ::write(fd, bytes.data(), bytes.size());
        if (written < 0) {
            if (errno == EINTR) continue;
            throw io_error(name + ": write failed: " + std::strerror(errno));
        }
        bytes.remove_prefix(static_cast<std::size_t>(written));
    }
}

inline void sync_file(int fd, const std::string& name) {
    if (::fsync(fd) != 0) throw io_error(name + ": fsync failed: " + std::strerror(errno));
}

/// Makes a newly created file's directory entry durable too; best effort, some filesystems refuse.
inline void sync_parent_directory(const std::filesystem::path& path) {
    const auto parent = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
    const int fd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    [[maybe_unused]] const int ignored = ::fsync(fd);
    ::close(fd);
}

}  // namespace detail

/// Reads a journal without opening it for writing (for reports). A torn final line is left out and counted
/// in torn_tail_bytes; any unreadable line before it is a format_error naming the file and line.
inline JournalContents read_journal(const std::filesystem::path& path) {
    bool has_header = false;
    auto contents = detail::parse_journal(detail::read_whole_file(path), path.string(), has_header);
    if (!has_header) throw format_error(path.string() + ": not a qsafe journal (no complete header line)");
    return contents;
}

enum class JournalMode {
    start_new,  // refuse to touch a journal that already holds results
    resume,     // continue an existing journal (or start one if there is none)
};

class Journal {
public:
    /// Opens `path` for appending. start_new fails if the file already holds anything; resume keeps the
    /// complete lines, cuts away a torn final line and refuses a journal written with another RunConfig.
    static Journal open(const std::filesystem::path& path, const RunConfig& config, JournalMode mode) {
        Journal journal;
        journal.path_ = path;
        journal.config_ = config;
        const std::string name = path.string();
        // Open (creating if needed) and lock before reading: two runs appending to one journal would
        // interleave their lines. Opening for append changes nothing in an existing file.
        journal.fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (journal.fd_ < 0) throw io_error(name + ": cannot open for writing: " + std::strerror(errno));
        if (::flock(journal.fd_, LOCK_EX | LOCK_NB) != 0)
            throw io_error(name + ": the journal is in use by another run (" + std::strerror(errno) + ")");
        struct stat status {};
        if (::fstat(journal.fd_, &status) != 0) throw io_error(name + ": cannot inspect: " + std::strerror(errno));
        const auto size = static_cast<std::uint64_t>(status.st_size);

        JournalContents contents;
        bool has_header = false;
        if (size > 0) {
            if (mode == JournalMode::start_new)
                throw config_error(name + " already holds results (" + std::to_string(size) +
                                   " bytes): pass --resume to continue it, or delete it to start over");
            contents = detail::parse_journal(detail::read_whole_file(path), name, has_header);
            if (has_header) {
                const auto differences = describe_config_differences(contents.config, config);
                if (!differences.empty())
                    throw config_error(name + " was written with different settings (" + differences +
                                       "); resume with the original settings or start a new journal");
            }
        }

        if (!has_header) {
            // Nothing usable yet (new file, empty file, or only a torn header): start from an empty file.
            if (::ftruncate(journal.fd_, 0) != 0) throw io_error(name + ": cannot truncate: " + std::strerror(errno));
            nlohmann::ordered_json header;
            header["qsafe_journal"] = journal_format_version;
            header["config"] = run_config_to_json(config);
            const auto line = detail::journal_line(header);
            detail::write_all(journal.fd_, line, name);
            detail::sync_file(journal.fd_, name);
            detail::sync_parent_directory(path);
            journal.size_ = line.size();
            journal.discarded_tail_bytes_ = size;
            return journal;
        }
        if (contents.torn_tail_bytes > 0) {
            if (::ftruncate(journal.fd_, static_cast<off_t>(contents.complete_bytes)) != 0)
                throw io_error(name + ": cannot cut the unfinished last line: " + std::strerror(errno));
            detail::sync_file(journal.fd_, name);
        }
        journal.size_ = contents.complete_bytes;
        journal.discarded_tail_bytes_ = contents.torn_tail_bytes;
        journal.records_ = std::move(contents.records);
        journal.variants_ = std::move(contents.variants);
        for (const auto& r : journal.records_)
            journal.finished_.insert(detail::journal_key(r.dataset, r.variant, r.prompt_id));
        return journal;
    }

    Journal(Journal&& other) noexcept { *this = std::move(other); }
    Journal& operator=(Journal&& other) noexcept {
        if (this != &other) {
            close();
            path_ = std::move(other.path_);
            config_ = std::move(other.config_);
            records_ = std::move(other.records_);
            variants_ = std::move(other.variants_);
            finished_ = std::move(other.finished_);
            size_ = other.size_;
            discarded_tail_bytes_ = other.discarded_tail_bytes_;
            fd_ = std::exchange(other.fd_, -1);
        }
        return *this;
    }
    Journal(const Journal&) = delete;
    Journal& operator=(const Journal&) = delete;
    ~Journal() { close(); }

    /// Whether the journal already holds a judged response for this prompt and variant.
    bool finished(std::string_view variant, std::string_view prompt_id, std::string_view dataset = {}) const {
        return finished_.contains(detail::journal_key(dataset, variant, prompt_id));
    }

    /// Appends one judged response and makes it durable. A second result for the same (dataset, variant,
    /// prompt) is refused: it would count the prompt twice.
    void append(const ResponseRecord& record) {
        auto key = detail::journal_key(record.dataset, record.variant, record.prompt_id);
        if (finished_.contains(key))
            throw config_error(path_.string() + ": already holds a result for variant '" + record.variant +
                               "', prompt '" + record.prompt_id + "' of dataset '" + record.dataset + "'");
        const auto line = detail::journal_line(nlohmann::ordered_json(record));
        write_line(line);
        // Keep what the file holds (invalid UTF-8 replaced), so a resumed run sees the same records.
        records_.push_back(nlohmann::ordered_json::parse(line).get<ResponseRecord>());
        finished_.insert(std::move(key));
    }

    /// Records how a variant was made (bits per weight, size, perplexity, ...); a later call for the same
    /// name replaces the earlier description.
    void append(const VariantInfo& info) {
        nlohmann::ordered_json j;
        j["variant_info"] = info;
        const auto line = detail::journal_line(j);
        write_line(line);
        detail::remember_variant(variants_, nlohmann::ordered_json::parse(line)["variant_info"].get<VariantInfo>());
    }

    const std::vector<ResponseRecord>& records() const { return records_; }
    const std::vector<VariantInfo>& variants() const { return variants_; }
    const RunConfig& config() const { return config_; }
    const std::filesystem::path& path() const { return path_; }
    /// Bytes of an unfinished line (or unusable partial header) cut away when the journal was opened.
    std::uint64_t discarded_tail_bytes() const { return discarded_tail_bytes_; }

private:
    Journal() = default;

    void write_line(const std::string& line) {
        const std::string name = path_.string();
        if (fd_ < 0) throw io_error(name + ": journal is not open");
        try {
            detail::write_all(fd_, line, name);
            detail::sync_file(fd_, name);
        } catch (const io_error&) {
            // Take back a half-written line so later appends do not land behind garbage.
            [[maybe_unused]] const int ignored = ::ftruncate(fd_, static_cast<off_t>(size_));
            throw;
        }
        size_ += line.size();
    }

    void close() noexcept {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }

    std::filesystem::path path_;
    RunConfig config_;
    std::vector<ResponseRecord> records_;
    std::vector<VariantInfo> variants_;
    std::unordered_set<std::string> finished_;
    std::uint64_t size_ = 0;
    std::uint64_t discarded_tail_bytes_ = 0;
    int fd_ = -1;
};

}  // namespace qsafe::eval
