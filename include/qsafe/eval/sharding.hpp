#pragma once
// Splitting one evaluation over N processes (`qsafe eval --shard I/N`, a Slurm array, `mpirun`), and
// merging what they wrote into the journal and report one process would have written.
//
// The work of a run is the reference's answers plus, for every other variant, every dataset, every chunk of
// `max_batch` rows. The chunk is the unit because the batched decoder answers a chunk's rows together: a
// shard that answered part of a chunk would decode those rows in other company than an unsharded run and
// could round differently. Chunks are listed variant by variant, dataset by dataset, and each shard takes a
// contiguous stretch holding about 1/N of the rows: balanced, and each shard loads (and quantizes) only the
// few variants its stretch touches.
//
// The reference's answers are split the same way, but every shard needs all of them (to score each answer's
// agreement with the reference, and for the safety KL): a shard first answers its own reference chunks,
// then every reference chunk still missing from all journals — one whose shard is slow, has died or has
// not started (a Slurm array may run its tasks one after another) — each under that chunk's lock in the
// output folder, so a chunk is answered once (or, after a kill mid-chunk, again with the same bytes) and no
// shard waits for one that never comes. Calibration statistics are made once, under a lock, and shared.
// Each shard writes its own journal and, when it has finished, a marker; `merge_shards` checks that every
// shard finished and that every row of every dataset was answered, and returns what one unsharded journal
// would hold, from which the report is computed as for an unsharded run — byte-identical, since the
// metrics depend only on the records, not on their order.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "qsafe/core/error.hpp"
#include "qsafe/eval/journal.hpp"
#include "qsafe/eval/record.hpp"
#include "qsafe/io/atomic_write.hpp"

namespace qsafe::eval {

/// "I/N": this process is shard I of N (0-based).
struct ShardSpec {
    std::size_t index = 0, count = 1;

    static ShardSpec parse(std::string_view text) {
        const auto fail = [&]() -> ShardSpec {
            throw config_error("--shard '" + std::string(text) + "': expected I/N with 0 <= I < N, e.g. 0/4");
        };
        const auto slash = text.find('/');
        if (slash == std::string_view::npos) return fail();
        ShardSpec s;
        const auto number = [](std::string_view t, std::size_t& out) {
            const auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), out);
            return !t.empty() && ec == std::errc{} && ptr == t.data() + t.size();
        };
        if (!number(text.substr(0, slash), s.index) || !number(text.substr(slash + 1), s.count) || s.count == 0 ||
            s.count > 100000 || s.index >= s.count)
            return fail();
        return s;
    }
    bool sharded() const { return count > 1; }
    std::string to_string() const { return std::to_string(index) + "/" + std::to_string(count); }
    /// "shard-2-of-4": names this shard's files in the output folder.
    std::string file_stem() const { return "shard-" + std::to_string(index) + "-of-" + std::to_string(count); }
};

/// The files of a sharded run in its output folder.
struct ShardFiles {
    std::filesystem::path folder;

    std::filesystem::path journal(const ShardSpec& s) const { return folder / ("journal-" + s.file_stem() + ".jsonl"); }
    std::filesystem::path done_marker(const ShardSpec& s) const { return folder / (s.file_stem() + ".done.json"); }
    /// Held while a shard answers the reference's chunk of `dataset` (index) from `first_row` on.
    std::filesystem::path reference_chunk_lock(std::size_t dataset, std::size_t first_row) const {
        std::filesystem::create_directories(folder / "locks");
        return folder / "locks" / ("reference-" + std::to_string(dataset) + "-" + std::to_string(first_row) + ".lock");
    }
    std::filesystem::path calibration_lock() const { return folder / "calibration.lock"; }
    std::filesystem::path merged_journal() const { return folder / "journal.jsonl"; }
};

/// One unit of work: `rows` rows of dataset `dataset` from `first_row` on, for variant `variant` (indices
/// into the run's lists of variants other than the reference, and of datasets).
struct WorkChunk {
    std::size_t variant = 0, dataset = 0, first_row = 0, rows = 0;
    friend bool operator==(const WorkChunk&, const WorkChunk&) = default;
};

/// Every chunk of the run in order: variant by variant, dataset by dataset, `batch` rows at a time (the
/// evaluator's chunks).
inline std::vector<WorkChunk> work_chunks(std::size_t variants, const std::vector<std::size_t>& dataset_rows, std::size_t batch) {
    batch = std::max<std::size_t>(batch, 1);
    std::vector<WorkChunk> out;
    for (std::size_t v = 0; v < variants; ++v)
        for (std::size_t d = 0; d < dataset_rows.size(); ++d)
            for (std::size_t first = 0; first < dataset_rows[d]; first += batch)
                out.push_back({v, d, first, std::min(batch, dataset_rows[d] - first)});
    return out;
}

/// The shard of each chunk: the one whose 1/N of all rows the chunk's first row falls in. Contiguous and
/// balanced to within a chunk; the same for every process given the same run.
inline std::vector<std::size_t> assign_shards(const std::vector<WorkChunk>& chunks, std::size_t shard_count) {
    std::uint64_t total = 0;
    for (const auto& c : chunks) total += c.rows;
    std::vector<std::size_t> owner;
    owner.reserve(chunks.size());
    std::uint64_t before = 0;
    for (const auto& c : chunks) {
        // before < total <= 2^40 rows in any real run, and shard_count <= 10^5: no overflow.
        owner.push_back(static_cast<std::size_t>(before * shard_count / std::max<std::uint64_t>(total, 1)));
        before += c.rows;
    }
    return owner;
}

/// Holds an exclusive lock on a file in the output folder for as long as it lives (flock: released by the
/// kernel when the process dies, so a killed shard never leaves the others waiting forever).
class FolderLock {
  public:
    /// Blocks until the lock is free; `on_wait` runs once first if another process holds it.
    template <class OnWait>
    FolderLock(const std::filesystem::path& path, OnWait&& on_wait) : path_(path) {
        fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd_ < 0) throw io_error(path.string() + ": cannot open the lock file: " + std::strerror(errno));
        if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) return;
        if (errno != EWOULDBLOCK) fail("cannot lock");
        on_wait();
        while (::flock(fd_, LOCK_EX) != 0)
            if (errno != EINTR) fail("cannot lock");
    }
    explicit FolderLock(const std::filesystem::path& path) : FolderLock(path, [] {}) {}
    FolderLock(const FolderLock&) = delete;
    FolderLock& operator=(const FolderLock&) = delete;
    ~FolderLock() {
        if (fd_ >= 0) ::close(fd_);  // closing releases the lock
    }

  private:
    [[noreturn]] void fail(const char* what) {
        const int e = errno;
        ::close(fd_);
        fd_ = -1;
        throw io_error(path_.string() + ": " + what + ": " + std::strerror(e));
    }
    std::filesystem::path path_;
    int fd_ = -1;
};

/// What a shard writes when it has answered every chunk it owns: enough for the merge to check the run.
struct ShardDone {
    ShardSpec shard;
    std::string reference;              // the reference variant's name
    std::vector<std::string> variants;  // the run's variants in report order, the reference first
    std::size_t records = 0;            // answers in this shard's journal

    void write(const ShardFiles& files) const {
        nlohmann::ordered_json j;
        j["shard"] = shard.index;
        j["shards"] = shard.count;
        j["reference"] = reference;
        j["variants"] = variants;
        j["records"] = records;
        io::atomic_write_text(files.done_marker(shard), j.dump(2) + "\n");
    }
    static std::optional<ShardDone> read(const ShardFiles& files, const ShardSpec& s) {
        const auto path = files.done_marker(s);
        if (!std::filesystem::exists(path)) return std::nullopt;
        const std::string where = path.string();
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(detail::read_whole_file(path));
        } catch (const nlohmann::json::exception& e) {
            throw format_error(where + ": not a shard marker (" + e.what() + ")");
        }
        ShardDone d;
        d.shard.index = detail::json_get<std::size_t>(j, "shard", where.c_str());
        d.shard.count = detail::json_get<std::size_t>(j, "shards", where.c_str());
        d.reference = detail::json_get<std::string>(j, "reference", where.c_str());
        d.variants = detail::json_get<std::vector<std::string>>(j, "variants", where.c_str());
        d.records = detail::json_get<std::size_t>(j, "records", where.c_str());
        if (d.shard.index != s.index || d.shard.count != s.count)
            throw format_error(where + ": says it is shard " + d.shard.to_string() + ", not " + s.to_string());
        return d;
    }
};

/// The number of shards whose markers or journals are in `folder` (all must agree), or nothing.
inline std::optional<std::size_t> find_shard_count(const std::filesystem::path& folder) {
    std::set<std::size_t> counts;
    if (!std::filesystem::is_directory(folder)) throw io_error(folder.string() + ": no such folder");
    for (const auto& entry : std::filesystem::directory_iterator(folder)) {
        const std::string name = entry.path().filename().string();
        const auto of = name.find("-of-");
        if (!name.starts_with("journal-shard-") || of == std::string::npos || !name.ends_with(".jsonl")) continue;
        const std::string count = name.substr(of + 4, name.size() - of - 4 - 6);
        std::size_t n = 0;
        const auto [ptr, ec] = std::from_chars(count.data(), count.data() + count.size(), n);
        if (ec == std::errc{} && ptr == count.data() + count.size() && n > 0) counts.insert(n);
    }
    if (counts.size() > 1)
        throw config_error(folder.string() + ": holds journals of runs split into different numbers of shards (" +
                           std::to_string(*counts.begin()) + " and " + std::to_string(*counts.rbegin()) + "); use one folder per run");
    if (counts.empty()) return std::nullopt;
    return *counts.begin();
}

/// The merged run: every record and variant description, and the report order of the variants.
struct MergedRun {
    RunConfig config;
    std::vector<ResponseRecord> records;
    std::vector<VariantInfo> variants;
    std::vector<std::string> variant_order;
    std::string reference;
    std::size_t shards = 0;
};

/// Whether every shard of the run in `folder` has finished (all markers present).
inline bool all_shards_done(const std::filesystem::path& folder) {
    const auto count = find_shard_count(folder);
    if (!count) return false;
    const ShardFiles files{folder};
    for (std::size_t i = 0; i < *count; ++i)
        if (!std::filesystem::exists(files.done_marker({i, *count}))) return false;
    return true;
}

/// Reads the reference journal and every shard's journal of the run in `folder`, checks that the run is
/// complete and consistent, and returns what one unsharded journal would hold. Throws config_error naming
/// the shard that has not finished, format_error for a journal that disagrees with the others.
inline MergedRun merge_shards(const std::filesystem::path& folder) {
    const ShardFiles files{folder};
    const auto count = find_shard_count(folder);
    if (!count) throw config_error(folder.string() + ": no shard journals (journal-shard-I-of-N.jsonl) to merge");
    MergedRun out;
    out.shards = *count;
    std::vector<ShardDone> done;
    for (std::size_t i = 0; i < *count; ++i) {
        const ShardSpec s{i, *count};
        auto d = ShardDone::read(files, s);
        if (!d)
            throw config_error(folder.string() + ": shard " + s.to_string() + " has not finished (no " +
                               files.done_marker(s).filename().string() + "); run it again with --shard " + s.to_string() + " --resume");
        if (!done.empty() && (d->variants != done.front().variants || d->reference != done.front().reference))
            throw format_error(files.done_marker(s).string() + ": lists other variants than shard 0; the shards belong to different runs");
        done.push_back(std::move(*d));
    }
    out.variant_order = done.front().variants;
    out.reference = done.front().reference;

    std::map<std::string, std::size_t> index_of;  // record key -> position in out.records
    std::map<std::string, VariantInfo> infos;
    for (std::size_t i = 0; i < *count; ++i) {
        const ShardSpec s{i, *count};
        const auto path = files.journal(s);
        if (!std::filesystem::exists(path)) throw config_error(path.string() + ": missing, though shard " + s.to_string() + " says it finished");
        JournalContents shard = read_journal(path);
        if (i == 0) out.config = shard.config;
        if (shard.config != out.config)
            throw format_error(path.string() + ": was written with other settings than shard 0's journal (" +
                               describe_config_differences(out.config, shard.config) + ")");
        if (shard.records.size() != done[i].records)
            throw format_error(path.string() + ": holds " + std::to_string(shard.records.size()) + " answers, but its marker says " +
                               std::to_string(done[i].records));
        for (auto& r : shard.records) {
            auto key = detail::journal_key(r.dataset, r.variant, r.prompt_id);
            if (const auto it = index_of.find(key); it != index_of.end()) {
                // A reference chunk answered again after a kill mid-chunk: the same batch gives the same
                // answer. Anything else means two runs' journals were mixed.
                ResponseRecord earlier = out.records[it->second];
                earlier.seconds = r.seconds;
                if (earlier == r) continue;
                throw format_error(path.string() + ": a different answer for variant '" + r.variant + "', prompt '" + r.prompt_id +
                                   "' of dataset '" + r.dataset + "' than another shard's");
            }
            index_of.emplace(std::move(key), out.records.size());
            out.records.push_back(std::move(r));
        }
        for (auto& v : shard.variants) infos[v.name] = std::move(v);
    }

    // Every row of every dataset answered by every variant: the journal header says how many rows each has.
    std::map<std::pair<std::string, std::string>, std::size_t> answered;
    for (const auto& r : out.records) ++answered[{r.variant, r.dataset}];
    for (const auto& entry : out.config.datasets) {
        const auto colon = entry.rfind(':');
        const std::string name = entry.substr(0, colon);
        const std::size_t rows = colon == std::string::npos ? 0 : std::stoull(entry.substr(colon + 1));
        for (const auto& variant : out.variant_order) {
            const std::size_t have = answered[{variant, name}];
            if (have != rows)
                throw format_error(folder.string() + ": variant '" + variant + "' has " + std::to_string(have) + " of the " +
                                   std::to_string(rows) + " answers of dataset '" + name + "' across the shards");
        }
    }
    for (const auto& variant : out.variant_order) {
        const auto it = infos.find(variant);
        if (it == infos.end()) throw format_error(folder.string() + ": no shard described variant '" + variant + "' (bits per weight, ...)");
        out.variants.push_back(it->second);
    }
    return out;
}

/// Writes the merged run as one journal (as an unsharded run writes it: the header, then each variant's
/// answers followed by its description), atomically: `qsafe eval --resume` can then extend the run.
inline void write_merged_journal(const MergedRun& run, const std::filesystem::path& path) {
    std::string text;
    nlohmann::ordered_json header;
    header["qsafe_journal"] = journal_format_version;
    header["config"] = run_config_to_json(run.config);
    text += detail::journal_line(header);
    for (const auto& v : run.variants) {
        for (const auto& r : run.records)
            if (r.variant == v.name) text += detail::journal_line(nlohmann::ordered_json(r));
        nlohmann::ordered_json j;
        j["variant_info"] = v;
        text += detail::journal_line(j);
    }
    io::atomic_write_text(path, text);
}

}  // namespace qsafe::eval
