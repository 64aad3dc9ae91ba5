// SchemeSpec: the one parser and printer of scheme names (registry/scheme_spec.hpp).
#include <doctest/doctest.h>

#include <string>

#include "qsafe/registry/scheme_registry.hpp"
#include "qsafe/registry/scheme_spec.hpp"

using namespace qsafe;

TEST_CASE("SchemeSpec: every part of the grammar parses to its field") {
    const SchemeSpec plain = SchemeSpec::parse("int4-g128-asym");
    CHECK(plain.base == "int4-g128-asym");
    CHECK(plain.outliers == OutlierKind::none);
    CHECK_FALSE(plain.outlier_columns);
    CHECK_FALSE(plain.sparse_fraction);
    CHECK_FALSE(plain.protected_fraction);

    const SchemeSpec columns = SchemeSpec::parse("int4-g128-asym+ocol64");
    CHECK(columns.base == "int4-g128-asym");
    CHECK(columns.outliers == OutlierKind::columns);
    CHECK(columns.outlier_columns == std::size_t{64});
    CHECK(columns.registry_key() == "int4-g128-asym+ocol");

    const SchemeSpec default_columns = SchemeSpec::parse("int4-g128-asym+ocol");
    CHECK(default_columns.outliers == OutlierKind::columns);
    CHECK_FALSE(default_columns.outlier_columns);

    const SchemeSpec sparse = SchemeSpec::parse("int3-g128-asym+sparse1.5%");
    CHECK(sparse.outliers == OutlierKind::sparse);
    CHECK(*sparse.sparse_fraction == doctest::Approx(0.015));
    CHECK(sparse.registry_key() == "int3-g128-asym+sparse");

    const SchemeSpec stored = SchemeSpec::parse("int4-g128-asym+ocol128+protect0.25%");
    CHECK(stored.base == "int4-g128-asym");
    CHECK(stored.outlier_columns == std::size_t{128});
    CHECK(*stored.protected_fraction == doctest::Approx(0.0025));
    CHECK(stored.without_protection().to_string() == "int4-g128-asym+ocol128");

    const SchemeSpec vq = SchemeSpec::parse("vq2-d4+protect0.2%");
    CHECK(vq.base == "vq2-d4");
    CHECK(vq.outliers == OutlierKind::none);
    CHECK(vq.without_protection().to_string() == "vq2-d4");
}

TEST_CASE("SchemeSpec: to_string is canonical and parse(to_string()) gives the spec back") {
    for (const char* name : {"fp32", "int4-g128-asym", "int4-g128-asym+ocol", "int4-g128-asym+ocol0", "int4-g128-asym+ocol128",
                             "int3-g128-asym+sparse", "int3-g128-asym+sparse0.5%", "int3-g128-asym+sparse100%",
                             "vq2-d4+protect0.2%", "int4-g128-asym+ocol64+protect1%", "int2-g64-asym+protect0%"}) {
        CAPTURE(name);
        const SchemeSpec spec = SchemeSpec::parse(name);
        CHECK(spec.to_string() == name);
        CHECK(SchemeSpec::parse(spec.to_string()) == spec);
    }
    // Amounts are printed with three significant digits (names are for people; bytes hold exact counts).
    SchemeSpec spec = SchemeSpec::parse("int3-g128-asym+sparse");
    spec.sparse_fraction = 0.00500036;
    CHECK(spec.to_string() == "int3-g128-asym+sparse0.5%");
    spec.protected_fraction = 1.5e-7;
    CHECK(spec.to_string() == "int3-g128-asym+sparse0.5%+protect0.000015%");
    CHECK(format_percent(0.25) == "25%");
}

TEST_CASE("SchemeSpec: malformed names fail with the name and what is wrong") {
    CHECK_THROWS_WITH_AS(SchemeSpec::parse("int4-g128-asym+ocolX"),
                         "scheme name 'int4-g128-asym+ocolX': bad column count 'X' after '+ocol'", config_error);
    CHECK_THROWS_WITH_AS(SchemeSpec::parse("int4-g128-asym+ocol-3"),
                         "scheme name 'int4-g128-asym+ocol-3': bad column count '-3' after '+ocol'", config_error);
    CHECK_THROWS_WITH_AS(SchemeSpec::parse("int4-g128-asym+sparse2"),
                         "scheme name 'int4-g128-asym+sparse2': the sparse amount is a percentage, e.g. +sparse0.5%", config_error);
    CHECK_THROWS_AS(SchemeSpec::parse("int4-g128-asym+sparse-1%"), config_error);
    CHECK_THROWS_AS(SchemeSpec::parse("int4-g128-asym+sparse101%"), config_error);
    CHECK_THROWS_AS(SchemeSpec::parse("int4-g128-asym+sparsenan%"), config_error);
    CHECK_THROWS_WITH_AS(SchemeSpec::parse("vq2-d4+protect"), "scheme name 'vq2-d4+protect': '+protect' takes a percentage, e.g. +protect0.2%",
                         config_error);
    CHECK_THROWS_WITH_AS(SchemeSpec::parse("+ocol8"), "scheme name '+ocol8': no base scheme before the first '+'", config_error);
    CHECK_THROWS_WITH_AS(SchemeSpec::parse(""), "scheme name '': no base scheme before the first '+'", config_error);
    CHECK_THROWS_WITH_AS(SchemeSpec::parse("int4-g128-asym+fast"),
                         "scheme name 'int4-g128-asym+fast': unknown suffix '+fast' (known: +ocol<count>, +sparse<percent>%, "
                         "+protect<percent>%)",
                         config_error);
    // One outlier policy per scheme: a second suffix is not part of the grammar.
    CHECK_THROWS_AS(SchemeSpec::parse("int4-g128-asym+ocol8+sparse1%"), config_error);
    // "+protect" comes last.
    CHECK_THROWS_AS(SchemeSpec::parse("int4-g128-asym+protect1%+ocol8"), config_error);
}

TEST_CASE("scheme registry: names follow the SchemeSpec grammar, defaults are filled in, +protect is not quantizable") {
    SchemeRegistry registry;
    SchemeEntry ok;
    ok.name = "mine-g32";
    CHECK_NOTHROW(registry.add(ok));
    SchemeEntry plus = ok;
    plus.name = "mine+g32";
    CHECK_THROWS_AS(registry.add(plus), config_error);
    SchemeEntry outlier_without_suffix = ok;
    outlier_without_suffix.name = "mine-g64";
    outlier_without_suffix.outliers = OutlierKind::sparse;
    CHECK_THROWS_WITH_AS(registry.add(outlier_without_suffix),
                         "scheme registry: 'mine-g64' must be a base name without '+', followed by '+ocol' or '+sparse' to match its "
                         "outlier policy",
                         config_error);
    SchemeEntry sparse = outlier_without_suffix;
    sparse.name = "mine-g64+sparse";
    sparse.default_outlier_fraction = 0.01;
    CHECK_NOTHROW(registry.add(sparse));

    const ResolvedScheme r = resolve_scheme("mine-g64+sparse", registry);
    CHECK(r.full_name == "mine-g64+sparse1%");
    CHECK(r.spec.sparse_fraction == 0.01);
    CHECK(r.outlier_fraction == 0.01);
    CHECK(resolve_scheme("mine-g32", registry).full_name == "mine-g32");
    CHECK_THROWS_WITH_AS(resolve_scheme("mine-g32+ocol8", registry),
                         doctest::Contains("no outlier variant 'mine-g32+ocol' is registered"), config_error);
    CHECK_THROWS_WITH_AS(resolve_scheme("mine-g32+protect1%", registry),
                         doctest::Contains("'+protect' names a stored layer with protected weights, not a scheme to quantize with"),
                         config_error);
    CHECK_THROWS_WITH_AS(resolve_scheme("mine-g32+ocolX", registry), doctest::Contains("known schemes: mine-g32, mine-g64+sparse"),
                         config_error);
}
