#pragma once
// Readable doctest names for the test schemes ("int4-g128-asym-f16"), from describe_scheme().
#include <doctest/doctest.h>

#include "kernels/test_schemes.hpp"

#define QSAFE_TEST_SCHEME_NAME(T) TYPE_TO_STRING_AS(doctest::String(qsafe::describe_scheme<T>().c_str()), T)
QSAFE_TEST_SCHEME_NAME(qsafe::test::Int2G32A);
QSAFE_TEST_SCHEME_NAME(qsafe::test::Int3G128A);
QSAFE_TEST_SCHEME_NAME(qsafe::test::Int4G32S);
QSAFE_TEST_SCHEME_NAME(qsafe::test::Int4G128A);
QSAFE_TEST_SCHEME_NAME(qsafe::test::Int5G64A);
QSAFE_TEST_SCHEME_NAME(qsafe::test::Int6G32S);
QSAFE_TEST_SCHEME_NAME(qsafe::test::Int8PcS);
QSAFE_TEST_SCHEME_NAME(qsafe::test::Int8G64A);
QSAFE_TEST_SCHEME_NAME(qsafe::test::Int4PcAF32);
QSAFE_TEST_SCHEME_NAME(qsafe::test::Int2PcS);
QSAFE_TEST_SCHEME_NAME(qsafe::test::Int6G96AF32);
QSAFE_TEST_SCHEME_NAME(qsafe::test::Int4G16A);
QSAFE_TEST_SCHEME_NAME(qsafe::test::Int3G48S);
QSAFE_TEST_SCHEME_NAME(qsafe::test::Int5G80S);
QSAFE_TEST_SCHEME_NAME(qsafe::test::Nf4G64);
QSAFE_TEST_SCHEME_NAME(qsafe::test::Fp4G64F32);
QSAFE_TEST_SCHEME_NAME(qsafe::test::Nf4G16);
QSAFE_TEST_SCHEME_NAME(qsafe::test::Cb4G128);
QSAFE_TEST_SCHEME_NAME(qsafe::test::Cb4G64Pg);
QSAFE_TEST_SCHEME_NAME(qsafe::test::Cb2G32Pg);
QSAFE_TEST_SCHEME_NAME(qsafe::test::Cb3G32Pg);
QSAFE_TEST_SCHEME_NAME(qsafe::test::Cb5G64);
QSAFE_TEST_SCHEME_NAME(qsafe::test::Cb6G32Pg);
QSAFE_TEST_SCHEME_NAME(qsafe::test::Cb6Pc);
QSAFE_TEST_SCHEME_NAME(qsafe::test::Pow2G32);
QSAFE_TEST_SCHEME_NAME(qsafe::test::TernG64);
QSAFE_TEST_SCHEME_NAME(qsafe::test::Lin32Pc);
QSAFE_TEST_SCHEME_NAME(qsafe::test::Int4G128AOcol);
QSAFE_TEST_SCHEME_NAME(qsafe::test::Int3G128ASparse);
QSAFE_TEST_SCHEME_NAME(qsafe::test::Int8PcSOcol);
QSAFE_TEST_SCHEME_NAME(qsafe::test::Int2G32ASparse);
QSAFE_TEST_SCHEME_NAME(qsafe::test::Int4G16ASparse);
QSAFE_TEST_SCHEME_NAME(qsafe::test::Nf4G64Sparse);
QSAFE_TEST_SCHEME_NAME(qsafe::test::Cb4G128Ocol);
QSAFE_TEST_SCHEME_NAME(qsafe::test::Pow2G32Ocol);
