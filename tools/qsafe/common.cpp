#include "qsafe/common.hpp"

#include <array>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>

#include "qsafe/calib/collect.hpp"
#include "qsafe/eval/dataset_registry.hpp"
#include "qsafe/ptq/sequential.hpp"


namespace qsafe_cli {

std::filesystem::path fetch_default_model() {
    const std::filesystem::path script = std::filesystem::path(QSAFE_SOURCE_DIR) / "scripts" / "fetch_model.sh";
    if (!std::filesystem::exists(script)) throw qsafe::io_error(script.string() + ": fetch script not found");
    const std::string command = "bash '" + script.string() + "'";
    std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(command.c_str(), "r"), pclose);
    if (!pipe) throw qsafe::io_error("cannot run " + script.string());
    std::string out;
    std::array<char, 512> buf{};
    while (std::fgets(buf.data(), static_cast<int>(buf.size()), pipe.get())) out += buf.data();
    const int status = pclose(pipe.release());
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    if (status != 0 || out.empty()) throw qsafe::io_error("fetching the default model failed (" + script.string() + ")");
    return out;
}

std::filesystem::path resolve_model_path(const std::string& model) {
    if (model != "smollm2") return model;
    const auto cached = qsafe::default_model_path();
    if (std::filesystem::exists(cached)) return cached;
    return fetch_default_model();
}

qsafe::LoadedModel load_with_rules(const ModelOptions& opt) {
    if (opt.threads > 0) qsafe::set_num_threads(opt.threads);
    qsafe::set_activation_precision(opt.activations == "int8"    ? qsafe::ActivationPrecision::int8
                                    : opt.activations == "int16" ? qsafe::ActivationPrecision::int16
                                    : opt.activations == "auto" ? qsafe::ActivationPrecision::automatic
                                                                : qsafe::ActivationPrecision::fp32);
    qsafe::LoadOptions lo;
    lo.build_linear = qsafe::rtn_builder(qsafe::SchemeRules::parse(opt.rules));
    lo.chat_template_override = opt.chat_template;
    return qsafe::load_model(resolve_model_path(opt.model), lo);
}

std::filesystem::path data_dir() {
    if (const char* d = std::getenv("QSAFE_DATA_DIR"); d && *d) return d;
    return std::filesystem::path(QSAFE_SOURCE_DIR) / ".." / "shared" / "datasets";
}

std::string read_text_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw qsafe::io_error(path.string() + ": cannot open");
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

std::filesystem::path wikitext2_path(const std::string& purpose) {
    const auto path = data_dir() / "wikitext2" / "test.txt";
    if (!std::filesystem::is_regular_file(path))
        throw qsafe::io_error(path.string() + ": WikiText-2 test text not found (needed for " + purpose +
                              "); set QSAFE_DATA_DIR to the folder holding wikitext2/test.txt");
    return path;
}

std::string read_wikitext2(const std::filesystem::path& path) {
    std::string text = read_text_file(path);
    if (!text.empty() && text.back() == '\n') text.pop_back();
    return text;
}

std::string CalibrationOptions::describe() const {
    return source + ":" + std::to_string(samples.samples) + "x" + std::to_string(samples.length) + ":seed=" +
           std::to_string(samples.seed);
}

void check_variants(const std::vector<qsafe::VariantSpec>& specs) {
    // Schemes were checked by parse_variant; files are checked here, before the reference model runs.
    for (const auto& v : specs)
        if (!v.file.empty() && !std::filesystem::is_regular_file(v.file))
            throw qsafe::config_error("variant '" + v.name + "': " + v.file.string() + ": no such file");
}

std::vector<std::string> split_commas(const std::string& list) {
    std::vector<std::string> items;
    std::stringstream in(list);
    for (std::string item; std::getline(in, item, ',');)
        if (!item.empty()) items.push_back(item);
    return items;
}

std::string format_duration(double seconds) {
    const long s = static_cast<long>(seconds + 0.5);
    char buf[32];
    if (s >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s / 60) % 60);
    else if (s >= 60) std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
    else std::snprintf(buf, sizeof buf, "%lds", s);
    return buf;
}

bool is_dataset_name(std::string_view source) {
    for (const auto& schema : qsafe::eval::dataset_schemas())
        if (schema.name == source) return true;
    return false;
}

void check_calibration_source(const CalibrationOptions& opt) {
    if (opt.source == "wikitext2") {
        wikitext2_path("--calib wikitext2");
        return;
    }
    if (is_dataset_name(opt.source)) return;
    const bool prompts = opt.source.starts_with("prompts:");
    const std::filesystem::path path = prompts ? opt.source.substr(8) : opt.source;
    if (std::filesystem::is_regular_file(path)) return;
    std::string known;
    for (const auto& schema : qsafe::eval::dataset_schemas()) known += ", " + schema.name;
    throw qsafe::config_error("--calib " + opt.source + ": " +
                              (prompts ? path.string() + ": no such file"
                                       : "no such text file, and not wikitext2, prompts:<file> or a dataset (" + known.substr(2) + ")"));
}

std::vector<std::vector<std::int32_t>> calibration_samples(const qsafe::LoadedModel& fp, const CalibrationOptions& opt) {
    check_calibration_source(opt);
    std::vector<std::vector<std::int32_t>> samples;
    if (opt.source.starts_with("prompts:")) {
        const std::string path = opt.source.substr(8);
        std::istringstream lines(read_text_file(path));
        std::vector<std::string> prompts;
        for (std::string line; std::getline(lines, line);)
            if (!line.empty()) prompts.push_back(line);
        samples = qsafe::prompt_samples(fp.tokenizer, fp.chat_template, prompts, opt.samples);
    } else if (is_dataset_name(opt.source)) {
        // The prompts of an evaluation dataset (harmful or benign), each formatted as a user turn.
        qsafe::eval::DataOptions d;
        d.source_dir = QSAFE_SOURCE_DIR;
        std::vector<std::string> prompts;
        for (const auto& row : qsafe::eval::load_named_dataset(opt.source, d)) prompts.emplace_back(row.prompt);
        samples = qsafe::prompt_samples(fp.tokenizer, fp.chat_template, prompts, opt.samples);
    } else {
        const std::filesystem::path path = opt.source == "wikitext2" ? wikitext2_path("--calib wikitext2") : std::filesystem::path(opt.source);
        std::string text = read_text_file(path);
        const auto tokens = fp.tokenizer.encode(text, {.add_bos = false, .parse_special = false});
        try {
            samples = qsafe::text_samples(tokens, opt.samples);
        } catch (const qsafe::config_error& e) {
            throw qsafe::config_error(path.string() + ": " + e.what() + " (--calib-len shortens the windows)");
        }
    }
    return samples;
}

SequentialCalibration sequential_calibration(const qsafe::LoadedModel& fp, const CalibrationOptions& opt) {
    if (!opt.load_stats.empty() || !opt.save_stats.empty())
        throw qsafe::config_error("--sequential collects each variant's statistics while quantizing it: "
                                  "--load-stats and --save-stats cannot be used with it");
    return {calibration_samples(fp, opt), opt.describe() + ":sequential"};
}

qsafe::CalibrationStats calibrate(qsafe::LoadedModel& fp, const CalibrationOptions& opt) {
    if (!opt.load_stats.empty()) {
        auto stats = qsafe::CalibrationStats::load(opt.load_stats);
        std::fprintf(stderr, "[calibration statistics from %s: %s]\n", opt.load_stats.c_str(), stats.description.c_str());
        return stats;
    }
    const auto samples = calibration_samples(fp, opt);
    std::size_t total_tokens = 0;
    for (const auto& s : samples) total_tokens += s.size();
    const auto start = std::chrono::steady_clock::now();
    qsafe::CollectOptions co;
    co.progress = [&](std::size_t done, std::size_t total) {
        const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::fprintf(stderr, "\r[calibration %zu/%zu sequences, %s, ETA %s]   ", done, total, format_duration(el).c_str(),
                     format_duration(el / static_cast<double>(done) * static_cast<double>(total - done)).c_str());
    };
    auto stats = qsafe::collect_calibration_stats(fp.model, samples, co);
    stats.description = opt.describe();
    const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::fprintf(stderr, "\n[calibration: %zu sequences, %zu tokens in %.1fs]\n", samples.size(), total_tokens, el);
    if (!opt.save_stats.empty()) stats.save(opt.save_stats);
    return stats;
}

qsafe::LoadedModel load_variant(const std::filesystem::path& model_path, const qsafe::VariantSpec& v,
                                const qsafe::CalibrationStats* stats, const std::string& chat_template,
                                const qsafe::GptqOptions& gptq, const SequentialCalibration* sequential,
                                const qsafe::ProtectedWeights* protect) {
    qsafe::LoadOptions lo;
    lo.chat_template_override = chat_template;
    if (!v.file.empty()) {
        lo.ggml_block_layers = qsafe::GgmlBlockLayers::all;  // a file is evaluated as stored
        return qsafe::load_model(v.file, lo);
    }
    auto m = qsafe::load_model(model_path, lo);
    if (v.is_reference()) return m;
    qsafe::PtqOptions po;
    po.rules = qsafe::SchemeRules::parse(v.rules);
    po.method = v.method;
    po.gptq = gptq;
    po.protected_weights = protect;
    const auto start = std::chrono::steady_clock::now();
    if (sequential && qsafe::ptq_method_needs_calibration(v.method)) {
        qsafe::SequentialOptions so;
        so.progress = [&](std::size_t done, std::size_t total, double el) {
            std::fprintf(stderr, "\r[%s: sequential calibration, block %zu/%zu, %s, ETA %s]        ", v.name.c_str(), done, total,
                         format_duration(el).c_str(), format_duration(el / static_cast<double>(done) * static_cast<double>(total - done)).c_str());
        };
        qsafe::quantize_model_sequential(m.model, sequential->samples, po, so);
        const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::fprintf(stderr, "\n[%s: calibrated and quantized sequentially on %zu sequences in %.1fs, %.3f bits per weight]\n",
                     v.name.c_str(), sequential->samples.size(), el, m.model.weights().linear_bits_per_weight());
        return m;
    }
    po.progress = [&](const std::string& tensor, const std::string& scheme, std::size_t done, std::size_t total, double) {
        const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::fprintf(stderr, "\r[%s: %zu/%zu %s %s, %s, ETA %s]        ", v.name.c_str(), done, total, tensor.c_str(), scheme.c_str(),
                     format_duration(el).c_str(), format_duration(el / static_cast<double>(done) * static_cast<double>(total - done)).c_str());
    };
    qsafe::CalibrationStats copy;
    qsafe::CalibrationStats* use = nullptr;
    if (stats) {
        copy = *stats;  // AWQ rescales the statistics it is given
        use = &copy;
    }
    qsafe::quantize_model(m.model.mutable_weights(), use, po);
    const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::fprintf(stderr, "\n[%s: quantized in %.1fs, %.3f bits per weight]\n", v.name.c_str(), el,
                 m.model.weights().linear_bits_per_weight());
    return m;
}

}  // namespace qsafe_cli
