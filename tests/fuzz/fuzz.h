/* The core's fuzz targets (fuzz_core.c), shared by the libFuzzer driver
 * (fuzz_main.c, `factorline fuzz`) and the corpus replay (replay.c, part of
 * `factorline test`).  Each driver defines fuzz_failed(). */
#ifndef FL_FUZZ_H
#define FL_FUZZ_H
#include <stddef.h>
#include <stdint.h>

/* Runs one input: its first byte picks the target, the rest is the target's input. */
int fuzz_one(const uint8_t *data, size_t size);

/* A property that does not hold: the driver's report. */
void fuzz_failed(const char *expr, const char *file, int line);
#define FUZZ_CHECK(c) do { if (!(c)) fuzz_failed(#c, __FILE__, __LINE__); } while (0)
#endif
