// Wilson intervals and McNemar p-values against values computed independently of this code.
#include <doctest/doctest.h>

#include <cstddef>

#include "qsafe/eval/statistics.hpp"

using namespace qsafe::eval;

namespace {

void check_interval(Interval got, double low, double high) {
    CHECK(got.low == doctest::Approx(low).epsilon(1e-12));
    CHECK(got.high == doctest::Approx(high).epsilon(1e-12));
}

}  // namespace

TEST_CASE("wilson interval matches published and hand-computed values") {
    // Published: Newcombe (1998), Statistics in Medicine 17:857, table I, 81/263 -> 0.2553 to 0.3662; the
    // 0/10, 5/10 and 10/10 rows are the textbook [0, 0.2775], [0.2366, 0.7634], [0.7225, 1]. The full-precision
    // expected values were evaluated with the closed-form score interval in Python (math.sqrt, z = 1.959963984540054).
    check_interval(wilson_interval(0, 10), 0.0, 0.2775327998628892);
    check_interval(wilson_interval(5, 10), 0.236593090512564, 0.76340690948743606);
    check_interval(wilson_interval(10, 10), 0.72246720013711074, 1.0);
    check_interval(wilson_interval(81, 263), 0.25528851987827422, 0.36620957698280004);
    check_interval(wilson_interval(1, 1), 0.20654931437723745, 1.0);
    CHECK(wilson_interval(81, 263).low == doctest::Approx(0.2553).epsilon(2e-4));
    CHECK(wilson_interval(81, 263).high == doctest::Approx(0.3662).epsilon(2e-4));
}

TEST_CASE("wilson interval edges are exact") {
    CHECK(wilson_interval(0, 10).low == 0.0);
    CHECK(wilson_interval(10, 10).high == 1.0);
    CHECK(wilson_interval(0, 0) == Interval{0.0, 1.0});
    const auto wide = wilson_interval(1, 1000000);
    CHECK(wide.low > 0.0);
    CHECK(wide.high < 1e-5);
}

TEST_CASE("proportion rate, interval and complement") {
    const Proportion refused{81, 263};
    REQUIRE(refused.rate().has_value());
    CHECK(*refused.rate() == doctest::Approx(81.0 / 263.0));
    const auto complied = refused.complement();
    CHECK(complied == Proportion{182, 263});
    // The Wilson interval is symmetric under swapping successes and failures.
    CHECK(complied.wilson().low == doctest::Approx(1.0 - refused.wilson().high).epsilon(1e-12));
    CHECK(complied.wilson().high == doctest::Approx(1.0 - refused.wilson().low).epsilon(1e-12));
    CHECK_FALSE(Proportion{0, 0}.rate().has_value());
}

TEST_CASE("mcnemar exact and mid-p match exact rational arithmetic") {
    // Expected values: Python fractions, p = min(1, 2 * sum(comb(b + c, i) for i <= min(b, c)) / 2**(b + c)),
    // mid-p = that sum's doubled value minus comb(b + c, min(b, c)) / 2**(b + c), converted to float at the end.
    struct Case {
        std::size_t b, c;
        double exact, mid;
    };
    const Case cases[] = {
        {0, 0, 1.0, 1.0},
        {1, 0, 1.0, 0.5},
        {5, 1, 0.21875, 0.125},
        {10, 2, 0.03857421875, 0.0224609375},
        {25, 10, 0.016673847800120711, 0.011330984183587134},
        {3, 3, 1.0, 1.0},
        {0, 12, 0.00048828125, 0.000244140625},
        {400, 300, 0.00017847631448562445, 0.00015498176361506452},
        {2000, 1900, 0.11289365225934889, 0.10934818170620704},
    };
    for (const auto& c : cases) {
        CAPTURE(c.b);
        CAPTURE(c.c);
        CHECK(mcnemar_exact_p(c.b, c.c) == doctest::Approx(c.exact).epsilon(1e-10));
        CHECK(mcnemar_mid_p(c.b, c.c) == doctest::Approx(c.mid).epsilon(1e-10));
        CHECK(mcnemar_exact_p(c.b, c.c) == mcnemar_exact_p(c.c, c.b));
    }
}

TEST_CASE("mcnemar stays finite for counts whose binomial terms underflow") {
    // 2^-5000 underflows a double; the log-space sum must not.
    // Expected value from the same exact Python computation as above.
    CHECK(mcnemar_exact_p(2600, 2400) == doctest::Approx(0.004883649737517518).epsilon(1e-9));
    CHECK(mcnemar_exact_p(100000, 0) == 0.0);  // the true value is below the smallest double
    CHECK(mcnemar_exact_p(2500, 2500) == 1.0);
}
