// doctest's own main. Its crash handlers are off: under a sanitizer, a handler that
// allocates while the sanitizer reports deadlocks instead of failing the test.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#define DOCTEST_CONFIG_NO_POSIX_SIGNALS
#include <doctest/doctest.h>
