// Wilson intervals, McNemar p-values (two- and one-sided) and Holm's adjustment against values computed
// independently of this code.
#include <doctest/doctest.h>

#include <cstddef>
#include <vector>

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

TEST_CASE("one-sided mcnemar matches exact rational arithmetic") {
    // Expected values: Python fractions, p = sum(comb(n, i) for i in range(worse, n + 1)) / 2**n with
    // n = worse + better, converted to float at the end (scipy.stats.binomtest(worse, n, 0.5,
    // alternative='greater') computes the same sum). 11/1024 is the textbook sign test of 9 or more heads in 10.
    struct Case {
        std::size_t worse, better;
        double p;
    };
    const Case cases[] = {
        {0, 0, 1.0},
        {0, 5, 1.0},
        {1, 0, 0.5},
        {1, 1, 0.75},
        {9, 1, 11.0 / 1024.0},
        {5, 1, 0.109375},
        {10, 2, 0.019287109375},
        {2, 10, 0.996826171875},
        {3, 3, 0.65625},
        {6, 4, 0.376953125},
        {12, 0, 0.000244140625},
        {25, 10, 0.008336923900060356},
        {10, 25, 0.9970059397164732},
        {400, 300, 8.923815724281222e-05},
        {2600, 2400, 0.002441824868758759},
    };
    for (const auto& c : cases) {
        CAPTURE(c.worse);
        CAPTURE(c.better);
        CHECK(mcnemar_one_sided_p(c.worse, c.better) == doctest::Approx(c.p).epsilon(1e-10));
    }
    // Half the two-sided p when the variant is the worse side (the two tails are equal at p = 1/2).
    CHECK(mcnemar_one_sided_p(25, 10) == doctest::Approx(mcnemar_exact_p(25, 10) / 2.0).epsilon(1e-12));
    CHECK(mcnemar_one_sided_p(100000, 0) == 0.0);
}

TEST_CASE("holm adjustment matches the published example and keeps the input order") {
    // Holm–Bonferroni's textbook example (α = 0.05): p = 0.01, 0.04, 0.03, 0.005 rejects the first and the
    // last only; R's p.adjust(c(0.01, 0.04, 0.03, 0.005), "holm") gives 0.03 0.06 0.06 0.02.
    const std::vector<double> p = {0.01, 0.04, 0.03, 0.005};
    const auto adjusted = holm_adjusted(p);
    REQUIRE(adjusted.size() == 4);
    CHECK(adjusted[0] == doctest::Approx(0.03).epsilon(1e-15));
    CHECK(adjusted[1] == doctest::Approx(0.06).epsilon(1e-15));
    CHECK(adjusted[2] == doctest::Approx(0.06).epsilon(1e-15));
    CHECK(adjusted[3] == doctest::Approx(0.02).epsilon(1e-15));
    // Monotone in the sorted order (the 0.04 would be 0.04 alone, but may not undercut the 0.06 before it),
    // capped at 1, and the identity for one test.
    CHECK(holm_adjusted(std::vector<double>{0.5, 0.6})[0] == 1.0);
    CHECK(holm_adjusted(std::vector<double>{0.5, 0.6})[1] == 1.0);
    CHECK(holm_adjusted(std::vector<double>{0.02})[0] == 0.02);
    CHECK(holm_adjusted(std::vector<double>{}).empty());
    // Ties: each gets the step of its own rank, then the running maximum makes them equal.
    const auto tied = holm_adjusted(std::vector<double>{0.01, 0.01, 0.2});
    CHECK(tied[0] == doctest::Approx(0.03));
    CHECK(tied[1] == doctest::Approx(0.03));
    CHECK(tied[2] == doctest::Approx(0.2));
}
