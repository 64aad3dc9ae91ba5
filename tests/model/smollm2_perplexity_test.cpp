// WikiText-2 perplexity of the fp32 SmolLM2 decoder against llama.cpp's (tests/fixtures/smollm2/perplexity.json):
// identical tokenization of the whole text, and the first windows' mean NLL within 1 % in perplexity.
// The full 64-window comparison is run by hand (`qsafe perplexity --chunks 64`, docs/architecture.md); CI
// scores the first windows only.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/skip.hpp"
#include "qsafe/model/model_loader.hpp"
#include "qsafe/model/perplexity.hpp"

using namespace qsafe;

namespace {
std::filesystem::path data_dir() {
    if (const char* d = std::getenv("QSAFE_DATA_DIR"); d && *d) return d;
    return std::filesystem::path(QSAFE_SOURCE_DIR) / ".." / "shared" / "datasets";
}
#if defined(__SANITIZE_ADDRESS__)
constexpr std::size_t windows_to_score = 1;  // the sanitizer build is ~10x slower
#else
constexpr std::size_t windows_to_score = 3;
#endif
}  // namespace

TEST_CASE("SmolLM2 WikiText-2: tokenization and perplexity windows match llama.cpp") {
    const auto model_path = default_model_path();
    const auto text_path = data_dir() / "wikitext2" / "test.txt";
    if (!std::filesystem::exists(model_path) || !std::filesystem::exists(text_path)) {
        test_fixtures::skip_test("model or WikiText-2 not found (" + model_path.string() + ", " + text_path.string() +
                                 "; scripts/fetch_model.sh fetches the model, QSAFE_DATA_DIR names the datasets)");
        return;
    }
    std::ifstream fx_in(std::filesystem::path(QSAFE_FIXTURE_DIR) / "smollm2" / "perplexity.json");
    REQUIRE(fx_in.good());
    const auto fx = nlohmann::json::parse(fx_in);
    std::ifstream in(text_path, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();

    std::string content = text.str();
    if (!content.empty() && content.back() == '\n') content.pop_back();  // as llama.cpp reads -f files
    LoadedModel m = load_model(model_path);
    const auto tokens = m.tokenizer.encode(content, {.add_bos = std::nullopt, .parse_special = false});
    CHECK(tokens.size() == fx["tokenization"]["n_tokens"].get<std::size_t>());
    const auto first = fx["tokenization"]["first_ids"].get<std::vector<std::int32_t>>();
    REQUIRE(tokens.size() >= first.size());
    CHECK(std::equal(first.begin(), first.end(), tokens.begin()));

    WindowOptions opt;
    opt.n_ctx = fx["n_ctx"].get<std::size_t>();
    opt.max_windows = windows_to_score;
    const PerplexityResult r = perplexity(m.model, tokens, opt);
    REQUIRE(r.windows == windows_to_score);
    CHECK(r.scored_tokens == windows_to_score * (opt.n_ctx - 1 - opt.n_ctx / 2));
    const auto ref_nll = fx["per_chunk_mean_nll"].get<std::vector<double>>();
    double ref_mean = 0.0;
    for (std::size_t w = 0; w < windows_to_score; ++w) ref_mean += ref_nll[w] / static_cast<double>(windows_to_score);
    const double ratio = std::exp(r.mean_nll - ref_mean);
    MESSAGE("first " << windows_to_score << " windows: qsafe ppl " << r.ppl << ", llama.cpp ppl " << std::exp(ref_mean)
                     << ", ratio " << ratio);
    CHECK(std::abs(ratio - 1.0) < 0.01);
}
