/* Replays the committed fuzz corpus (tests/fuzz/corpus, or the directories given)
 * through the core's fuzz targets, one CUnit assertion per input: it passes when
 * every property of its target holds and neither sanitizer reports.  The inputs
 * are the seeds and whatever `factorline fuzz` found worth keeping, crashes
 * included once fixed. */
#include <CUnit/Basic.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz.h"

static const char *failure;
static char **dirs;
static int ndirs;

void fuzz_failed(const char *expr, const char *file, int line)
{
    static char buf[512];
    if (failure == NULL) {
        snprintf(buf, sizeof(buf), "%s:%d: %s", file, line, expr);
        failure = buf;
    }
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static void test_corpus(void)
{
    size_t files = 0;
    for (int d = 0; d < ndirs; d++) {
        struct dirent **ents;
        int n = scandir(dirs[d], &ents, NULL, by_name);
        CU_ASSERT_FATAL(n >= 0);
        for (int i = 0; i < n; i++) {
            char path[4096];
            if (ents[i]->d_name[0] == '.') {
                free(ents[i]);
                continue;
            }
            snprintf(path, sizeof(path), "%s/%s", dirs[d], ents[i]->d_name);
            free(ents[i]);
            FILE *f = fopen(path, "rb");
            CU_ASSERT_PTR_NOT_NULL(f);
            if (f == NULL)
                continue;
            size_t cap = 1 << 16, len = 0, got;
            unsigned char *buf = malloc(cap);
            while ((got = fread(buf + len, 1, cap - len, f)) > 0)
                if ((len += got) == cap)
                    buf = realloc(buf, cap *= 2);
            fclose(f);
            failure = NULL;
            fuzz_one(buf, len);
            free(buf);
            CU_assertImplementation(failure == NULL, __LINE__,
                                    failure ? failure : "", path, "", CU_FALSE);
            if (failure != NULL)
                fprintf(stderr, "%s: %s\n", path, failure);
            files++;
        }
        free(ents);
    }
    CU_ASSERT(files > 0);
}

int main(int argc, char **argv)
{
    static char *fallback[] = { "tests/fuzz/corpus" };
    dirs = argc > 1 ? argv + 1 : fallback;
    ndirs = argc > 1 ? argc - 1 : 1;
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    CU_pSuite s = CU_add_suite("fuzz corpus", NULL, NULL);
    CU_add_test(s, "every input keeps its target's properties", test_corpus);
    CU_basic_set_mode(CU_BRM_NORMAL);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}
