/* libFuzzer's entry point for the core's targets: `factorline fuzz` builds this
 * with clang -fsanitize=fuzzer,address,undefined.  A failed property aborts, so
 * libFuzzer saves the input that broke it. */
#include <stdio.h>
#include <stdlib.h>
#include "fuzz.h"

void fuzz_failed(const char *expr, const char *file, int line)
{
    fprintf(stderr, "%s:%d: property failed: %s\n", file, line, expr);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_one(data, size);
}
