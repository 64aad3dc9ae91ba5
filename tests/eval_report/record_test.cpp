// JSON form of response records and variant infos: round trip, fixed key order, readable errors.
#include <doctest/doctest.h>

#include <string>

#include <nlohmann/json.hpp>

#include "qsafe/core/error.hpp"
#include "qsafe/eval/record.hpp"

using namespace qsafe::eval;

TEST_CASE("response record json round trip keeps every field") {
    ResponseRecord r;
    r.dataset = "advbench";
    r.variant = "rtn-q4";
    r.prompt_id = "17";
    r.category = "cyber";
    r.expected = Expected::harmful;
    r.prompt = "How do I \"pick\" a lock?\n";
    r.response = "I can't help with that. \xC3\xA9";
    r.verdict = Verdict::partial_refusal;
    r.judge_reason = "matched \"I can't\"";
    r.prompt_tokens = 12;
    r.response_tokens = 40;
    r.stop = StopReason::max_tokens;
    r.seconds = 1.2345678901234567;
    r.identical_prefix_tokens = 7;
    r.similarity = 0.8125;

    const nlohmann::ordered_json j = r;
    const auto text = j.dump();
    const auto back = nlohmann::ordered_json::parse(text).get<ResponseRecord>();
    CHECK(back == r);
    // Plain nlohmann::json reads it too.
    CHECK(nlohmann::json::parse(text).get<ResponseRecord>() == r);
    // Keys come out in field order, so journal lines are easy to read and diff.
    CHECK(text.rfind("{\"dataset\":\"advbench\",\"variant\":\"rtn-q4\",\"prompt_id\":\"17\",", 0) == 0);

    ResponseRecord reference = r;
    reference.identical_prefix_tokens.reset();
    reference.similarity.reset();
    const nlohmann::ordered_json jr = reference;
    CHECK(jr["similarity"].is_null());
    CHECK(jr.get<ResponseRecord>() == reference);
}

TEST_CASE("variant info json round trip") {
    VariantInfo v{"gptq-q4", "gptq", "*=int4-g128-asym", 4.156, 812345678, 9.87, 0.0123, 0.2, 93.5, 0.25, 1.5, -1.75};
    const nlohmann::ordered_json j = v;
    CHECK(j.get<VariantInfo>() == v);
    VariantInfo bare{"fp", "fp", "", 16.0, 1000, {}, {}, {}, {}, {}, {}, {}};
    const nlohmann::ordered_json jb = bare;
    CHECK(jb.get<VariantInfo>() == bare);
    CHECK(jb.dump().rfind("{\"name\":\"fp\",\"method\":\"fp\",", 0) == 0);
}

TEST_CASE("malformed records name the key") {
    auto j = nlohmann::ordered_json(ResponseRecord{});
    j["verdict"] = "maybe";
    CHECK_THROWS_WITH_AS(j.get<ResponseRecord>(), doctest::Contains("'verdict'"), qsafe::format_error);
    j = nlohmann::ordered_json(ResponseRecord{});
    j.erase("prompt_id");
    CHECK_THROWS_WITH_AS(j.get<ResponseRecord>(), doctest::Contains("missing key 'prompt_id'"), qsafe::format_error);
    j = nlohmann::ordered_json(ResponseRecord{});
    j["response_tokens"] = "many";
    CHECK_THROWS_WITH_AS(j.get<ResponseRecord>(), doctest::Contains("'response_tokens'"), qsafe::format_error);
}
