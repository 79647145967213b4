/* Unit tests for libcommon/config. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

typedef struct test_cfg {
    char *name;
    int64_t port;
    bool verbose;
    int64_t timeout_ms;
    int64_t max_bytes;
    int level;
    char *secret;
    char *input;
} test_cfg_t;

static const cb_config_key_t keys[] = {
    { .name = "name",
      .type = CB_CONFIG_STRING,
      .def = "castbus",
      .offset = offsetof(test_cfg_t, name),
      .help = "A name." },
    { .name = "http_port",
      .type = CB_CONFIG_INT,
      .def = "8080",
      .min = 1,
      .max = 65535,
      .offset = offsetof(test_cfg_t, port),
      .help = "A port." },
    { .name = "verbose",
      .type = CB_CONFIG_BOOL,
      .def = "false",
      .offset = offsetof(test_cfg_t, verbose),
      .help = "Talk more." },
    { .name = "timeout",
      .type = CB_CONFIG_DURATION,
      .def = "2s",
      .min = 1,
      .max = 60000,
      .offset = offsetof(test_cfg_t, timeout_ms),
      .help = "A timeout." },
    { .name = "max_body",
      .type = CB_CONFIG_BYTES,
      .def = "1MiB",
      .offset = offsetof(test_cfg_t, max_bytes),
      .help = "A size." },
    { .name = "log_level",
      .type = CB_CONFIG_ENUM,
      .def = "info",
      .choices = "debug|info|warn",
      .offset = offsetof(test_cfg_t, level),
      .help = "A level." },
    { .name = "api_keys",
      .type = CB_CONFIG_STRING,
      .def = "",
      .flags = CB_CONFIG_SECRET,
      .offset = offsetof(test_cfg_t, secret),
      .help = "Secret keys." },
    { .name = "input",
      .type = CB_CONFIG_STRING,
      .def = "",
      .flags = CB_CONFIG_CLI,
      .offset = offsetof(test_cfg_t, input),
      .help = "A file." },
    { .name = NULL },
};

static test_cfg_t cfg;
static cb_config_t *c;
static char err[512];

static int setup(void **state)
{
    (void) state;
    memset(&cfg, 0, sizeof(cfg));
    unsetenv("CASTBUS_HTTP_PORT");
    unsetenv("CASTBUS_UNIT_HTTP_PORT");
    unsetenv("CASTBUS_CONFIG");
    unsetenv("CASTBUS_VERBOSE");
    unsetenv("CASTBUS_INPUT");
    assert_int_equal(cb_config_new("unit", "unit test daemon", &c), 0);
    assert_int_equal(cb_config_add(c, "test", keys, &cfg), 0);
    err[0] = '\0';
    return 0;
}

static int teardown(void **state)
{
    (void) state;
    cb_config_free(c);
    return 0;
}

static int load(int argc, char **argv, cb_config_action_t *action)
{
    cb_config_action_t a;

    return cb_config_load(c, argc, argv, action ? action : &a, err, sizeof(err));
}

static void test_defaults(void **state)
{
    char *argv[] = { "x" };

    (void) state;
    assert_int_equal(load(1, argv, NULL), 0);
    assert_string_equal(cfg.name, "castbus");
    assert_int_equal(cfg.port, 8080);
    assert_false(cfg.verbose);
    assert_int_equal(cfg.timeout_ms, 2000);
    assert_int_equal(cfg.max_bytes, 1 << 20);
    assert_int_equal(cfg.level, 1);
    assert_string_equal(cb_config_source(c, "http_port"), "default");
}

static void test_env_and_daemon_env(void **state)
{
    char *argv[] = { "x" };

    (void) state;
    setenv("CASTBUS_HTTP_PORT", "9000", 1);
    assert_int_equal(load(1, argv, NULL), 0);
    assert_int_equal(cfg.port, 9000);
    setenv("CASTBUS_UNIT_HTTP_PORT", "9001", 1);
    assert_int_equal(load(1, argv, NULL), 0);
    assert_int_equal(cfg.port, 9001);
    assert_string_equal(cb_config_source(c, "http_port"), "env");
    unsetenv("CASTBUS_HTTP_PORT");
    unsetenv("CASTBUS_UNIT_HTTP_PORT");
}

static void test_flags_win(void **state)
{
    char *argv[] = {
        "x", "--http-port=9100", "--verbose", "--timeout", "500ms", "--input", "a.ts"
    };

    (void) state;
    setenv("CASTBUS_HTTP_PORT", "9000", 1);
    assert_int_equal(load(7, argv, NULL), 0);
    assert_int_equal(cfg.port, 9100);
    assert_true(cfg.verbose);
    assert_int_equal(cfg.timeout_ms, 500);
    assert_string_equal(cfg.input, "a.ts");
    assert_string_equal(cb_config_source(c, "http_port"), "flag");
    unsetenv("CASTBUS_HTTP_PORT");
}

static void test_errors_name_the_key(void **state)
{
    char *bad_flag[] = { "x", "--http-port=99999" };
    char *unknown[] = { "x", "--nope=1" };
    char *positional[] = { "x", "file.ts" };

    (void) state;
    setenv("CASTBUS_HTTP_PORT", "eighty", 1);
    assert_int_equal(load(1, bad_flag, NULL), -EINVAL);
    assert_non_null(strstr(err, "CASTBUS_HTTP_PORT"));
    assert_non_null(strstr(err, "not an integer"));
    unsetenv("CASTBUS_HTTP_PORT");

    assert_int_equal(load(2, bad_flag, NULL), -EINVAL);
    assert_non_null(strstr(err, "--http-port"));
    assert_non_null(strstr(err, "out of range 1..65535"));

    assert_int_equal(load(2, unknown, NULL), -EINVAL);
    assert_non_null(strstr(err, "--nope"));
    assert_int_equal(load(2, positional, NULL), -EINVAL);
    assert_non_null(strstr(err, "file.ts"));

    setenv("CASTBUS_VERBOSE", "perhaps", 1);
    assert_int_equal(load(1, bad_flag, NULL), -EINVAL);
    assert_non_null(strstr(err, "CASTBUS_VERBOSE"));
    unsetenv("CASTBUS_VERBOSE");
}

static void test_cli_keys_ignore_env(void **state)
{
    char *argv[] = { "x" };

    (void) state;
    setenv("CASTBUS_INPUT", "from-env", 1);
    assert_int_equal(load(1, argv, NULL), 0);
    assert_string_equal(cfg.input, "");
    unsetenv("CASTBUS_INPUT");
}

static void test_file(void **state)
{
    const char text[] = "# comment\n\n  name = \" spaced \"  \nhttp_port=7000\nlog_level = warn\n";
    const char bad[] = "name = a\nbogus = 1\n";
    const char nokv[] = "just words\n";
    char path[] = "/tmp/castbus-config-XXXXXX";
    char *argv[] = { "x", "--config", path };
    int fd;

    (void) state;
    assert_int_equal(cb_config_load_text(c, text, strlen(text), "t.conf", err, sizeof(err)), 0);
    assert_string_equal(cfg.name, " spaced ");
    assert_int_equal(cfg.port, 7000);
    assert_int_equal(cfg.level, 2);
    assert_int_equal(cb_config_load_text(c, bad, strlen(bad), "t.conf", err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "t.conf:2: unknown key 'bogus'");
    assert_int_equal(cb_config_load_text(c, nokv, strlen(nokv), "t.conf", err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "t.conf:1"));

    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (int) strlen(text));
    close(fd);
    setenv("CASTBUS_HTTP_PORT", "7001", 1); /* env wins over the file */
    assert_int_equal(load(3, argv, NULL), 0);
    assert_int_equal(cfg.port, 7001);
    assert_string_equal(cfg.name, " spaced ");
    unsetenv("CASTBUS_HTTP_PORT");
    unlink(path);
}

static void test_actions_and_help(void **state)
{
    char *help[] = { "x", "--help" };
    char *ver[] = { "x", "--version" };
    cb_config_action_t a;
    char *text = NULL;
    size_t len = 0;
    FILE *f;

    (void) state;
    setenv("CASTBUS_HTTP_PORT", "broken", 1); /* --help must not fail on the environment */
    assert_int_equal(load(2, help, &a), 0);
    assert_int_equal(a, CB_CONFIG_ACTION_HELP);
    unsetenv("CASTBUS_HTTP_PORT");
    assert_int_equal(load(2, ver, &a), 0);
    assert_int_equal(a, CB_CONFIG_ACTION_VERSION);

    f = open_memstream(&text, &len);
    cb_config_print_help(c, f);
    fclose(f);
    assert_non_null(strstr(text, "--http-port=INT"));
    assert_non_null(strstr(text, "env CASTBUS_HTTP_PORT, default 8080, 1..65535"));
    assert_non_null(strstr(text, "CASTBUS_UNIT_<NAME>"));
    assert_non_null(strstr(text, "(command line only)"));
    free(text);

    f = open_memstream(&text, &len);
    cb_config_print_markdown(c, f);
    fclose(f);
    assert_non_null(strstr(
        text, "| `--log-level` | `CASTBUS_LOG_LEVEL` | ENUM | `info` | debug\\|info\\|warn |"));
    free(text);
}

static void test_secrets_masked(void **state)
{
    char *argv[] = { "x", "--api-keys=admin:hunter2" };
    char *text = NULL;
    size_t len = 0;
    FILE *f;

    (void) state;
    assert_int_equal(load(2, argv, NULL), 0);
    f = open_memstream(&text, &len);
    cb_config_print_values(c, f);
    fclose(f);
    assert_null(strstr(text, "hunter2"));
    assert_non_null(strstr(text, "api_keys = \"(set)\""));
    free(text);
}

static void test_parsers(void **state)
{
    int64_t v;
    bool b;

    (void) state;
    assert_int_equal(cb_config_parse_duration_ms("1h", &v), 0);
    assert_int_equal(v, 3600000);
    assert_int_equal(cb_config_parse_duration_ms("250", &v), 0);
    assert_int_equal(v, 250);
    assert_int_not_equal(cb_config_parse_duration_ms("1.5s", &v), 0);
    assert_int_not_equal(cb_config_parse_duration_ms("s", &v), 0);
    assert_int_not_equal(cb_config_parse_duration_ms("99999999999999999999h", &v), 0);
    assert_int_equal(cb_config_parse_bytes("64KiB", &v), 0);
    assert_int_equal(v, 65536);
    assert_int_equal(cb_config_parse_bytes("2G", &v), 0);
    assert_int_equal(v, 2LL << 30);
    assert_int_not_equal(cb_config_parse_bytes("12 MB", &v), 0);
    assert_int_equal(cb_config_parse_bool("ON", &b), 0);
    assert_true(b);
    assert_int_not_equal(cb_config_parse_bool("2", &b), 0);
}

static void test_set_default_and_duplicates(void **state)
{
    char *argv[] = { "x" };

    (void) state;
    assert_int_equal(cb_config_set_default(c, "http_port", "8081"), 0);
    assert_int_equal(load(1, argv, NULL), 0);
    assert_int_equal(cfg.port, 8081);
    assert_int_equal(cb_config_add(c, "again", keys, &cfg), -EEXIST);
    assert_int_equal(cb_config_set_default(c, "nope", "1"), -ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env_and_daemon_env, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flags_win, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors_name_the_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli_keys_ignore_env, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_actions_and_help, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secrets_masked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parsers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_default_and_duplicates, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
