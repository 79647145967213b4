/*
 * Fuzz harness: the config file parser (cb_config_load_text) and the URL
 * parsers that read configuration values (Redis URLs, durations, sizes).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "redis.h"

typedef struct fuzz_cfg {
    char *name;
    int64_t port;
    bool flag;
    int64_t timeout_ms;
    int64_t size;
    int level;
} fuzz_cfg_t;

static const cb_config_key_t keys[] = {
    { .name = "name",
      .type = CB_CONFIG_STRING,
      .def = "x",
      .offset = offsetof(fuzz_cfg_t, name),
      .help = "." },
    { .name = "http_port",
      .type = CB_CONFIG_INT,
      .def = "1",
      .min = 1,
      .max = 65535,
      .offset = offsetof(fuzz_cfg_t, port),
      .help = "." },
    { .name = "flag",
      .type = CB_CONFIG_BOOL,
      .def = "false",
      .offset = offsetof(fuzz_cfg_t, flag),
      .help = "." },
    { .name = "timeout",
      .type = CB_CONFIG_DURATION,
      .def = "1s",
      .offset = offsetof(fuzz_cfg_t, timeout_ms),
      .help = "." },
    { .name = "size",
      .type = CB_CONFIG_BYTES,
      .def = "1k",
      .offset = offsetof(fuzz_cfg_t, size),
      .help = "." },
    { .name = "level",
      .type = CB_CONFIG_ENUM,
      .def = "a",
      .choices = "a|b|c",
      .offset = offsetof(fuzz_cfg_t, level),
      .help = "." },
    { .name = NULL },
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_cfg_t cfg;
    cb_config_t *c;
    cb_redis_url_t u;
    char err[512], *s;
    int64_t v;
    bool b;

    memset(&cfg, 0, sizeof(cfg));
    if (cb_config_new("fuzz", "fuzz", &c) == 0) {
        cb_config_add(c, "fuzz", keys, &cfg);
        cb_config_load_text(c, (const char *) data, size, "fuzz.conf", err, sizeof(err));
        cb_config_free(c);
    }
    s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    cb_redis_parse_url(s, &u);
    cb_config_parse_duration_ms(s, &v);
    cb_config_parse_bytes(s, &v);
    cb_config_parse_bool(s, &b);
    free(s);
    return 0;
}
