/* Unit tests for libcommon/storage (filesystem backend, in a temporary directory). */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "storage.h"

static char root[64];
static cb_storage_t *s;
static cb_metrics_t *m;

static int setup(void **state)
{
    cb_storage_config_t cfg;
    char url[128], err[256];

    (void) state;
    snprintf(root, sizeof(root), "/tmp/castbus-storage-XXXXXX");
    assert_non_null(mkdtemp(root));
    snprintf(url, sizeof(url), "file://%s/media", root);
    cfg.url = url;
    cfg.fsync = true;
    assert_int_equal(cb_metrics_new(&m), 0);
    assert_int_equal(cb_storage_open(&cfg, m, &s, err, sizeof(err)), 0);
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];

    (void) state;
    cb_storage_close(s);
    cb_metrics_free(m);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static void test_put_get_stat_remove(void **state)
{
    cb_storage_stat_t st;
    cb_buf_t b;

    (void) state;
    assert_int_equal(cb_storage_put(s, "live/s1/src/00000001.ts", "abc", 3), 0);
    assert_int_equal(cb_storage_put(s, "live/s1/src/00000001.ts", "abcdef", 6), 0);
    assert_int_equal(cb_storage_stat(s, "live/s1/src/00000001.ts", &st), 0);
    assert_int_equal(st.size, 6);
    assert_true(st.mtime_ms > 0);
    cb_buf_init(&b, 1024);
    assert_int_equal(cb_storage_get(s, "live/s1/src/00000001.ts", &b), 0);
    assert_int_equal(b.len, 6);
    assert_memory_equal(b.data, "abcdef", 6);
    cb_buf_release(&b);
    cb_buf_init(&b, 4);
    assert_int_equal(cb_storage_get(s, "live/s1/src/00000001.ts", &b), -E2BIG);
    cb_buf_release(&b);
    assert_int_equal(cb_storage_remove(s, "live/s1/src/00000001.ts"), 0);
    assert_int_equal(cb_storage_stat(s, "live/s1/src/00000001.ts", &st), -ENOENT);
    assert_int_equal(cb_storage_remove(s, "live/s1/src/00000001.ts"), -ENOENT);
}

static void test_overwrite_in_place(void **state)
{
    cb_storage_stat_t st;
    cb_buf_t b;

    (void) state;
    /* creates the object and its directories, then rewrites it, shorter and longer */
    assert_int_equal(cb_storage_overwrite(s, "live/s2/src/cursor.json", "{\"a\":12345}", 11), 0);
    assert_int_equal(cb_storage_overwrite(s, "live/s2/src/cursor.json", "{\"a\":1}", 7), 0);
    assert_int_equal(cb_storage_stat(s, "live/s2/src/cursor.json", &st), 0);
    assert_int_equal(st.size, 7);
    cb_buf_init(&b, 1024);
    assert_int_equal(cb_storage_get(s, "live/s2/src/cursor.json", &b), 0);
    assert_memory_equal(b.data, "{\"a\":1}", 7);
    cb_buf_release(&b);
    assert_int_equal(cb_storage_overwrite(s, "../escape", "x", 1), -EINVAL);
}

static void test_keys_cannot_escape(void **state)
{
    (void) state;
    assert_true(cb_storage_key_valid("live/a-b_c.1/x.m4s"));
    assert_false(cb_storage_key_valid("../etc/passwd"));
    assert_false(cb_storage_key_valid("live/../../x"));
    assert_false(cb_storage_key_valid("/abs"));
    assert_false(cb_storage_key_valid("a//b"));
    assert_false(cb_storage_key_valid("a/./b"));
    assert_false(cb_storage_key_valid("a/b/"));
    assert_false(cb_storage_key_valid("a b"));
    assert_false(cb_storage_key_valid(""));
    assert_int_equal(cb_storage_put(s, "../x", "a", 1), -EINVAL);
}

typedef struct listing {
    int n;
    char keys[8][64];
} listing_t;

static int collect(void *arg, const char *key, const cb_storage_stat_t *st)
{
    listing_t *l = arg;

    (void) st;
    if (l->n < 8)
        snprintf(l->keys[l->n], sizeof(l->keys[0]), "%s", key);
    l->n++;
    return 0;
}

static void test_list_and_no_temp_files(void **state)
{
    char tmp[256];
    listing_t l = { 0 };
    FILE *f;
    int i, found_a = 0;

    (void) state;
    assert_int_equal(cb_storage_put(s, "live/a/1.m4s", "1", 1), 0);
    assert_int_equal(cb_storage_put(s, "live/a/2.m4s", "2", 1), 0);
    assert_int_equal(cb_storage_put(s, "live/b/1.m4s", "3", 1), 0);
    /* a temporary file left by a crash is never listed */
    snprintf(tmp, sizeof(tmp), "%s/media/live/a/.3.m4s.tmp-1234", root);
    f = fopen(tmp, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(cb_storage_list(s, "live/a/", collect, &l), 0);
    assert_int_equal(l.n, 2);
    for (i = 0; i < l.n; i++)
        found_a += strncmp(l.keys[i], "live/a/", 7) == 0;
    assert_int_equal(found_a, 2);
    l.n = 0;
    assert_int_equal(cb_storage_list(s, "", collect, &l), 0);
    assert_int_equal(l.n, 3);
    l.n = 0;
    assert_int_equal(cb_storage_list(s, "live/none/", collect, &l), 0);
    assert_int_equal(l.n, 0);
    assert_int_equal(cb_storage_list(s, "../", collect, &l), -EINVAL);
}

static void test_put_file_consumes_the_file(void **state)
{
    char path[256];
    cb_buf_t b;
    FILE *f;

    (void) state;
    snprintf(path, sizeof(path), "%s/work.bin", root);
    f = fopen(path, "w");
    fputs("segment", f);
    fclose(f);
    assert_int_equal(cb_storage_put_file(s, "vod/x/seg.ts", path), 0);
    assert_int_not_equal(access(path, F_OK), 0);
    cb_buf_init(&b, 64);
    assert_int_equal(cb_storage_get(s, "vod/x/seg.ts", &b), 0);
    assert_string_equal(b.data, "segment");
    /* the second one lands in a directory that exists now */
    f = fopen(path, "w");
    fputs("next", f);
    fclose(f);
    assert_int_equal(cb_storage_put_file(s, "vod/x/seg2.ts", path), 0);
    cb_buf_reset(&b);
    assert_int_equal(cb_storage_get(s, "vod/x/seg2.ts", &b), 0);
    assert_string_equal(b.data, "next");
    cb_buf_release(&b);
}

static void test_ready_check_and_bad_urls(void **state)
{
    cb_storage_config_t cfg;
    cb_storage_t *other;
    char err[256];

    (void) state;
    assert_int_equal(cb_storage_component.ready(s, err, sizeof(err)), 0);
    cfg.fsync = false;
    cfg.url = "s3://bucket/x";
    assert_int_equal(cb_storage_open(&cfg, m, &other, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "CASTBUS_STORAGE_URL"));
    cfg.url = "file://relative/path";
    assert_int_equal(cb_storage_open(&cfg, m, &other, err, sizeof(err)), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_get_stat_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overwrite_in_place, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys_cannot_escape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_and_no_temp_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_file_consumes_the_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ready_check_and_bad_urls, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
