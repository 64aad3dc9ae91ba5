// The single doctest main shared by every test executable (Debian's doctest exports no *_with_main target).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
