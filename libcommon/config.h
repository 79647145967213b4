/*
 * config.h - table-driven daemon configuration.
 *
 * Each module and daemon describes its keys in a const table (nginx
 * ngx_command_t, librdkafka CONFIGURATION.md): name, type, default, bounds,
 * help, and where the parsed value is stored in the owner's struct. From the
 * tables come the parser, `--help`, `--print-config` and docs/config.md.
 *
 * A key named "http_port" is read, later sources winning, from:
 *   1. its default;
 *   2. a config file (--config FILE or CASTBUS_CONFIG): "http_port = 8081";
 *   3. the environment: CASTBUS_HTTP_PORT;
 *   4. the daemon-specific environment: CASTBUS_INGEST_HTTP_PORT (so one
 *      shell can configure several daemons differently);
 *   5. the command line: --http-port=8081 or --http-port 8081.
 * Keys flagged CB_CONFIG_CLI are command-line only (one-shot tool modes).
 *
 * Every error names the key the way the user spelled it (env var, flag or
 * file key) and says what was wrong.
 *
 * Thread safety: configure on the main thread before starting threads; the
 * parsed structs are read-only afterwards.
 */
#ifndef CB_CONFIG_H
#define CB_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "defs.h"

typedef enum cb_config_type {
    CB_CONFIG_STRING,   /* char *, heap, owned and freed by the config */
    CB_CONFIG_INT,      /* int64_t */
    CB_CONFIG_BOOL,     /* bool: true/false, 1/0, yes/no, on/off */
    CB_CONFIG_DURATION, /* int64_t milliseconds: "250ms", "2s", "5m", "1h"; a bare number is ms */
    CB_CONFIG_BYTES,    /* int64_t bytes: "512", "64k"/"64KiB", "8M"/"8MiB", "1G"/"1GiB" */
    CB_CONFIG_ENUM,     /* int: index into `choices` ("debug|info|warn|error") */
} cb_config_type_t;

#define CB_CONFIG_SECRET   0x1u /* never printed (shown as "(set)") */
#define CB_CONFIG_REQUIRED 0x2u /* must be non-empty after loading */
#define CB_CONFIG_CLI      0x4u /* command line only, no env var, not in config files */

typedef struct cb_config_key {
    const char *name;      /* lower_snake_case */
    cb_config_type_t type; /* how the text is parsed and what `offset` points to */
    const char *def;       /* default as text; NULL means empty / 0 / false */
    int64_t min, max;      /* inclusive bounds for INT, DURATION, BYTES; both 0: none */
    const char *choices;   /* ENUM only: '|'-separated names */
    unsigned flags;        /* CB_CONFIG_* */
    size_t offset;         /* offsetof(owner_struct, field) */
    const char *help;      /* one sentence, shown by --help and in docs */
} cb_config_key_t;

/* What the command line asked for besides configuration. */
typedef enum cb_config_action {
    CB_CONFIG_ACTION_RUN = 0,
    CB_CONFIG_ACTION_HELP,     /* --help */
    CB_CONFIG_ACTION_VERSION,  /* --version */
    CB_CONFIG_ACTION_PRINT,    /* --print-config: effective values, secrets masked */
    CB_CONFIG_ACTION_MARKDOWN, /* --help-markdown: the docs/config.md section */
    CB_CONFIG_ACTION_JSON,     /* --help-json: the table as JSON, for tools */
} cb_config_action_t;

typedef struct cb_config cb_config_t;

/* daemon: "ingest", "transcode-worker"; summary: one line for --help. */
int cb_config_new(const char *daemon, const char *summary, cb_config_t **out);

/* Free the config and every string it stored into the owners' structs. */
void cb_config_free(cb_config_t *c);

/*
 * Add a table (terminated by an entry with name == NULL) whose values are
 * stored into `base`. `section` titles the keys in --help ("http", "kafka").
 * Returns -EEXIST if a key name is already taken.
 */
int cb_config_add(cb_config_t *c, const char *section, const cb_config_key_t *keys, void *base);

/* Replace the default of a key already added (e.g. a daemon's own port). */
int cb_config_set_default(cb_config_t *c, const char *name, const char *value);

/*
 * Load all sources in order (see above) and validate. On error returns
 * -EINVAL and writes a message naming the key into err. *action tells the
 * caller whether to run or to print help/version/config and exit.
 * Positional arguments are rejected.
 */
int cb_config_load(cb_config_t *c, int argc, char **argv, cb_config_action_t *action, char *err,
                   size_t errlen);

/*
 * Apply "key = value" lines from memory; `origin` names the source in
 * errors ("/etc/castbus.conf"). Exposed for tests and the fuzz harness.
 */
int cb_config_load_text(cb_config_t *c, const char *text, size_t len, const char *origin, char *err,
                        size_t errlen);

/* Set one key from text, as the command line would. */
int cb_config_set(cb_config_t *c, const char *name, const char *value, char *err, size_t errlen);

/*
 * The effective configuration as a JSON object (new reference):
 * {"http_port":{"value":"8081","source":"env"}, ...}; secrets masked,
 * command-line-only keys left out.
 */
json_t *cb_config_to_json(const cb_config_t *c);

void cb_config_print_help(const cb_config_t *c, FILE *out);
/*
 * The key table as JSON, for deployment tooling that must pass only known
 * settings: {"daemon":..,"keys":[{"name","env","flag","type","default",
 * "min","max","choices","secret","required","cli","section","help"}]}.
 */
void cb_config_print_json(const cb_config_t *c, FILE *out);
void cb_config_print_markdown(const cb_config_t *c, FILE *out);
void cb_config_print_values(const cb_config_t *c, FILE *out);

/* Where a key's value came from: "default", "file", "env" or "flag"; NULL if unknown. */
const char *cb_config_source(const cb_config_t *c, const char *name);

/* Parsers, exposed for unit tests and for modules parsing similar values. */
int cb_config_parse_duration_ms(const char *s, int64_t *out);
int cb_config_parse_bytes(const char *s, int64_t *out);
int cb_config_parse_bool(const char *s, bool *out);

#endif /* CB_CONFIG_H */
