/*
 * config.c - table-driven configuration; see config.h.
 *
 * DESIGN: the config keeps a list of (table, base) sections and, per key, a
 * record of where its current value came from. Values are parsed straight
 * into the owners' structs through the table's offsets; strings are
 * strdup'ed and owned here so that cb_config_free() can release them.
 * Only the main thread touches a config, before other threads start.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

#define CONFIG_MAX_SECTIONS 16
#define CONFIG_MAX_KEYS     256
#define CONFIG_FILE_MAX     (1 << 20)

typedef enum key_source {
    SRC_DEFAULT = 0,
    SRC_FILE,
    SRC_ENV,
    SRC_DAEMON_ENV,
    SRC_FLAG
} key_source_t;

static const char *const source_names[] = { "default", "file", "env", "env", "flag" };

typedef struct config_entry {
    const cb_config_key_t *key;
    void *base;
    const char *section;
    char *def_override; /* owned; replaces key->def when set */
    key_source_t source;
} config_entry_t;

struct cb_config {
    char *daemon;
    char *summary;
    char *env_daemon; /* "TRANSCODE_WORKER" */
    config_entry_t entries[CONFIG_MAX_KEYS];
    size_t nentries;
};

static void set_err(char *err, size_t errlen, const char *fmt, ...) CB_PRINTF(3, 4);

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || !errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* "http_port" -> "HTTP_PORT"; "transcode-worker" -> "TRANSCODE_WORKER" */
static void to_env_case(char *dst, size_t dstlen, const char *src)
{
    size_t i;

    for (i = 0; src[i] && i + 1 < dstlen; i++)
        dst[i] = src[i] == '-' ? '_' : (char) toupper((unsigned char) src[i]);
    dst[i] = '\0';
}

/* "http_port" -> "http-port" */
static void to_flag_case(char *dst, size_t dstlen, const char *src)
{
    size_t i;

    for (i = 0; src[i] && i + 1 < dstlen; i++)
        dst[i] = src[i] == '_' ? '-' : src[i];
    dst[i] = '\0';
}

int cb_config_new(const char *daemon, const char *summary, cb_config_t **out)
{
    cb_config_t *c = calloc(1, sizeof(*c));
    char env[64];

    if (!c)
        return -ENOMEM;
    to_env_case(env, sizeof(env), daemon);
    c->daemon = strdup(daemon);
    c->summary = strdup(summary ? summary : "");
    c->env_daemon = strdup(env);
    if (!c->daemon || !c->summary || !c->env_daemon) {
        cb_config_free(c);
        return -ENOMEM;
    }
    *out = c;
    return 0;
}

static void *field_ptr(const config_entry_t *e)
{
    return (char *) e->base + e->key->offset;
}

void cb_config_free(cb_config_t *c)
{
    size_t i;

    if (!c)
        return;
    for (i = 0; i < c->nentries; i++) {
        config_entry_t *e = &c->entries[i];
        if (e->key->type == CB_CONFIG_STRING) {
            char **p = field_ptr(e);
            free(*p);
            *p = NULL;
        }
        free(e->def_override);
    }
    free(c->daemon);
    free(c->summary);
    free(c->env_daemon);
    free(c);
}

static config_entry_t *find_entry(const cb_config_t *c, const char *name, size_t namelen)
{
    size_t i;

    for (i = 0; i < c->nentries; i++) {
        const char *k = c->entries[i].key->name;
        if (strlen(k) == namelen && memcmp(k, name, namelen) == 0)
            return (config_entry_t *) &c->entries[i];
    }
    return NULL;
}

int cb_config_add(cb_config_t *c, const char *section, const cb_config_key_t *keys, void *base)
{
    const cb_config_key_t *k;

    for (k = keys; k->name; k++) {
        if (find_entry(c, k->name, strlen(k->name)))
            return -EEXIST;
        CB_ASSERT(c->nentries < CONFIG_MAX_KEYS);
        CB_ASSERT(k->type != CB_CONFIG_ENUM || k->choices);
        c->entries[c->nentries].key = k;
        c->entries[c->nentries].base = base;
        c->entries[c->nentries].section = section;
        c->entries[c->nentries].source = SRC_DEFAULT;
        c->nentries++;
    }
    return 0;
}

int cb_config_set_default(cb_config_t *c, const char *name, const char *value)
{
    config_entry_t *e = find_entry(c, name, strlen(name));
    char *v;

    if (!e)
        return -ENOENT;
    v = strdup(value);
    if (!v)
        return -ENOMEM;
    free(e->def_override);
    e->def_override = v;
    return 0;
}

static const char *entry_default(const config_entry_t *e)
{
    return e->def_override ? e->def_override : e->key->def;
}

/* Strict signed integer: optional sign, digits, nothing else. */
static int parse_int(const char *s, int64_t *out)
{
    char *end;
    long long v;

    if (!*s || isspace((unsigned char) *s))
        return -EINVAL;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno == ERANGE)
        return -ERANGE;
    if (*end != '\0')
        return -EINVAL;
    *out = (int64_t) v;
    return 0;
}

/* Split "250ms" into number and unit; the number must be a whole integer. */
static int parse_scaled(const char *s, const char *const *units, const int64_t *mult, size_t nunits,
                        int64_t *out)
{
    char num[32];
    size_t i = 0, u;
    int64_t v;
    int rc;

    while (s[i] && (isdigit((unsigned char) s[i]) || (i == 0 && s[i] == '-')))
        i++;
    if (i == 0 || i >= sizeof(num))
        return -EINVAL;
    memcpy(num, s, i);
    num[i] = '\0';
    rc = parse_int(num, &v);
    if (rc)
        return rc;
    for (u = 0; u < nunits; u++) {
        if (strcmp(s + i, units[u]) == 0) {
            if (v != 0 && (v > INT64_MAX / mult[u] || v < INT64_MIN / mult[u]))
                return -ERANGE;
            *out = v * mult[u];
            return 0;
        }
    }
    return -EINVAL;
}

int cb_config_parse_duration_ms(const char *s, int64_t *out)
{
    static const char *const units[] = { "", "ms", "s", "m", "h" };
    static const int64_t mult[] = { 1, 1, 1000, 60000, 3600000 };

    return parse_scaled(s, units, mult, CB_ARRAY_LEN(units), out);
}

int cb_config_parse_bytes(const char *s, int64_t *out)
{
    static const char *const units[] = { "",  "b",   "k",  "kb", "KiB", "K",   "m",
                                         "M", "MiB", "MB", "g",  "G",   "GiB", "GB" };
    static const int64_t mult[] = { 1,       1,       1024,    1024,    1024,    1024,    1 << 20,
                                    1 << 20, 1 << 20, 1 << 20, 1 << 30, 1 << 30, 1 << 30, 1 << 30 };

    return parse_scaled(s, units, mult, CB_ARRAY_LEN(units), out);
}

int cb_config_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = { "1", "true", "yes", "on" };
    static const char *const no[] = { "0", "false", "no", "off", "" };
    size_t i;

    for (i = 0; i < CB_ARRAY_LEN(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
    }
    for (i = 0; i < CB_ARRAY_LEN(no); i++) {
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -EINVAL;
}

/* Index of `s` in "a|b|c", or -1. */
static int enum_index(const char *choices, const char *s)
{
    const char *p = choices;
    size_t slen = strlen(s);
    int idx = 0;

    while (*p) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t) (bar - p) : strlen(p);
        if (n == slen && memcmp(p, s, n) == 0)
            return idx;
        if (!bar)
            break;
        p = bar + 1;
        idx++;
    }
    return -1;
}

/* Copy the idx-th choice into dst. */
static void enum_name(const char *choices, int idx, char *dst, size_t dstlen)
{
    const char *p = choices;
    size_t n;

    while (idx-- > 0 && p) {
        p = strchr(p, '|');
        if (p)
            p++;
    }
    if (!p) {
        snprintf(dst, dstlen, "?");
        return;
    }
    n = strcspn(p, "|");
    snprintf(dst, dstlen, "%.*s", (int) n, p);
}

static bool has_bounds(const cb_config_key_t *k)
{
    return k->min != 0 || k->max != 0;
}

/* Parse `value` into the entry's field. `who` names the key in errors. */
static int apply_value(config_entry_t *e, const char *value, const char *who, char *err,
                       size_t errlen)
{
    const cb_config_key_t *k = e->key;
    void *p = field_ptr(e);
    int64_t v = 0;
    bool b;
    int rc = 0, idx;
    char *s;

    switch (k->type) {
    case CB_CONFIG_STRING:
        s = strdup(value);
        if (!s)
            return -ENOMEM;
        free(*(char **) p);
        *(char **) p = s;
        return 0;
    case CB_CONFIG_BOOL:
        if (cb_config_parse_bool(value, &b)) {
            set_err(err, errlen, "%s: '%s' is not a boolean (use true or false)", who, value);
            return -EINVAL;
        }
        *(bool *) p = b;
        return 0;
    case CB_CONFIG_ENUM:
        idx = enum_index(k->choices, value);
        if (idx < 0) {
            set_err(err, errlen, "%s: '%s' is not one of %s", who, value, k->choices);
            return -EINVAL;
        }
        *(int *) p = idx;
        return 0;
    case CB_CONFIG_INT:
        rc = parse_int(value, &v);
        if (rc) {
            set_err(err, errlen, "%s: '%s' is not an integer", who, value);
            return -EINVAL;
        }
        break;
    case CB_CONFIG_DURATION:
        rc = cb_config_parse_duration_ms(value, &v);
        if (rc) {
            set_err(err, errlen, "%s: '%s' is not a duration (e.g. 500ms, 2s, 5m, 1h)", who, value);
            return -EINVAL;
        }
        break;
    case CB_CONFIG_BYTES:
        rc = cb_config_parse_bytes(value, &v);
        if (rc) {
            set_err(err, errlen, "%s: '%s' is not a size (e.g. 512, 64KiB, 8MiB, 1GiB)", who,
                    value);
            return -EINVAL;
        }
        break;
    }
    if (has_bounds(k) && (v < k->min || v > k->max)) {
        set_err(err, errlen, "%s: %" PRId64 " is out of range %" PRId64 "..%" PRId64, who, v,
                k->min, k->max);
        return -EINVAL;
    }
    *(int64_t *) p = v;
    return 0;
}

static int apply_defaults(cb_config_t *c, char *err, size_t errlen)
{
    size_t i;
    int rc;

    for (i = 0; i < c->nentries; i++) {
        config_entry_t *e = &c->entries[i];
        const char *def = entry_default(e);
        char who[96];

        snprintf(who, sizeof(who), "default of '%s'", e->key->name);
        rc = apply_value(e, def ? def : "", who, err, errlen);
        /* a table whose own default does not parse is a bug, not input */
        if (rc == -EINVAL && !e->def_override)
            CB_ASSERT(!"config table default does not parse");
        if (rc)
            return rc;
        e->source = SRC_DEFAULT;
    }
    return 0;
}

int cb_config_load_text(cb_config_t *c, const char *text, size_t len, const char *origin, char *err,
                        size_t errlen)
{
    size_t pos = 0;
    int lineno = 0, rc;

    if (len > CONFIG_FILE_MAX) {
        set_err(err, errlen, "%s: file larger than %d bytes", origin, CONFIG_FILE_MAX);
        return -EINVAL;
    }
    while (pos < len) {
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t ll = nl ? (size_t) (nl - line) : len - pos;
        size_t ks, ke, vs, ve;
        char key[128], who[256];
        char *value;
        config_entry_t *e;

        pos += ll + (nl ? 1 : 0);
        lineno++;
        if (memchr(line, '\0', ll)) {
            set_err(err, errlen, "%s:%d: NUL byte in line", origin, lineno);
            return -EINVAL;
        }
        for (ks = 0; ks < ll && isspace((unsigned char) line[ks]); ks++)
            ;
        if (ks == ll || line[ks] == '#')
            continue;
        for (ke = ks; ke < ll && (isalnum((unsigned char) line[ke]) || line[ke] == '_'); ke++)
            ;
        for (vs = ke; vs < ll && isspace((unsigned char) line[vs]); vs++)
            ;
        if (ke == ks || vs == ll || line[vs] != '=') {
            set_err(err, errlen, "%s:%d: expected 'key = value'", origin, lineno);
            return -EINVAL;
        }
        if (ke - ks >= sizeof(key)) {
            set_err(err, errlen, "%s:%d: key too long", origin, lineno);
            return -EINVAL;
        }
        memcpy(key, line + ks, ke - ks);
        key[ke - ks] = '\0';
        e = find_entry(c, key, ke - ks);
        if (!e || (e->key->flags & CB_CONFIG_CLI)) {
            set_err(err, errlen, "%s:%d: unknown key '%s'", origin, lineno, key);
            return -EINVAL;
        }
        for (vs++; vs < ll && isspace((unsigned char) line[vs]); vs++)
            ;
        for (ve = ll; ve > vs && isspace((unsigned char) line[ve - 1]); ve--)
            ;
        /* optional double quotes keep leading/trailing spaces */
        if (ve - vs >= 2 && line[vs] == '"' && line[ve - 1] == '"') {
            vs++;
            ve--;
        }
        value = strndup(line + vs, ve - vs);
        if (!value)
            return -ENOMEM;
        snprintf(who, sizeof(who), "%s:%d: %s", origin, lineno, key);
        rc = apply_value(e, value, who, err, errlen);
        free(value);
        if (rc)
            return rc;
        e->source = SRC_FILE;
    }
    return 0;
}

static int load_file(cb_config_t *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    cb_buf_t b;
    char chunk[4096];
    size_t n;
    int rc = 0;

    if (!f) {
        set_err(err, errlen, "config file '%s': %s", path, strerror(errno));
        return -EINVAL;
    }
    cb_buf_init(&b, CONFIG_FILE_MAX);
    while (rc == 0 && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        rc = cb_buf_append(&b, chunk, n);
    if (ferror(f) && rc == 0) {
        set_err(err, errlen, "config file '%s': read error", path);
        rc = -EINVAL;
    } else if (rc) {
        set_err(err, errlen, "config file '%s': larger than %d bytes", path, CONFIG_FILE_MAX);
        rc = -EINVAL;
    }
    fclose(f);
    if (rc == 0)
        rc = cb_config_load_text(c, b.data ? b.data : "", b.len, path, err, errlen);
    cb_buf_release(&b);
    return rc;
}

static int load_env(cb_config_t *c, char *err, size_t errlen)
{
    size_t i;
    int rc;

    for (i = 0; i < c->nentries; i++) {
        config_entry_t *e = &c->entries[i];
        char up[96], name[160];
        const char *v;

        if (e->key->flags & CB_CONFIG_CLI)
            continue;
        to_env_case(up, sizeof(up), e->key->name);
        snprintf(name, sizeof(name), "CASTBUS_%s", up);
        v = getenv(name);
        if (v) {
            rc = apply_value(e, v, name, err, errlen);
            if (rc)
                return rc;
            e->source = SRC_ENV;
        }
        snprintf(name, sizeof(name), "CASTBUS_%s_%s", c->env_daemon, up);
        v = getenv(name);
        if (v) {
            rc = apply_value(e, v, name, err, errlen);
            if (rc)
                return rc;
            e->source = SRC_DAEMON_ENV;
        }
    }
    return 0;
}

int cb_config_set(cb_config_t *c, const char *name, const char *value, char *err, size_t errlen)
{
    config_entry_t *e = find_entry(c, name, strlen(name));
    char who[160], flag[128];
    int rc;

    if (!e) {
        set_err(err, errlen, "unknown key '%s'", name);
        return -ENOENT;
    }
    to_flag_case(flag, sizeof(flag), name);
    snprintf(who, sizeof(who), "--%s", flag);
    rc = apply_value(e, value, who, err, errlen);
    if (rc == 0)
        e->source = SRC_FLAG;
    return rc;
}

/* Find the entry for "--some-flag"; NULL if none. */
static config_entry_t *find_flag(cb_config_t *c, const char *flag, size_t len)
{
    char name[128];
    size_t i;

    if (len >= sizeof(name))
        return NULL;
    for (i = 0; i < len; i++)
        name[i] = flag[i] == '-' ? '_' : flag[i];
    name[len] = '\0';
    return find_entry(c, name, len);
}

/* --help, --version and friends: sets *action (the first one wins). */
static bool action_flag(const char *flag, cb_config_action_t *action)
{
    static const struct {
        const char *flag;
        cb_config_action_t action;
    } actions[] = {
        { "help", CB_CONFIG_ACTION_HELP },          { "version", CB_CONFIG_ACTION_VERSION },
        { "print-config", CB_CONFIG_ACTION_PRINT }, { "help-markdown", CB_CONFIG_ACTION_MARKDOWN },
        { "help-json", CB_CONFIG_ACTION_JSON },
    };
    size_t k;

    for (k = 0; k < CB_ARRAY_LEN(actions); k++) {
        if (strcmp(flag, actions[k].flag) == 0) {
            if (*action == CB_CONFIG_ACTION_RUN)
                *action = actions[k].action;
            return true;
        }
    }
    return false;
}

/*
 * Scan argv: returns the action and applies flags when `apply` is set (the
 * first pass only looks for --config, --help and friends).
 */
static int scan_args(cb_config_t *c, int argc, char **argv, bool apply, const char **config_path,
                     cb_config_action_t *action, char *err, size_t errlen)
{
    int i, rc;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *eq, *value;
        size_t flen;
        config_entry_t *e;

        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            set_err(err, errlen, "unexpected argument '%s' (see --help)", a);
            return -EINVAL;
        }
        a += 2;
        if (action_flag(a, action))
            continue;
        eq = strchr(a, '=');
        flen = eq ? (size_t) (eq - a) : strlen(a);
        if (flen == 6 && strncmp(a, "config", 6) == 0) {
            value = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
            if (!value) {
                set_err(err, errlen, "--config: missing file name");
                return -EINVAL;
            }
            *config_path = value;
            continue;
        }
        e = find_flag(c, a, flen);
        if (!e) {
            set_err(err, errlen, "unknown option '--%.*s' (see --help)", (int) flen, a);
            return -EINVAL;
        }
        if (eq) {
            value = eq + 1;
        } else if (e->key->type == CB_CONFIG_BOOL &&
                   (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0)) {
            value = "true"; /* a bare boolean flag switches it on */
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            set_err(err, errlen, "--%.*s: missing value", (int) flen, a);
            return -EINVAL;
        }
        if (apply) {
            char who[160];
            snprintf(who, sizeof(who), "--%.*s", (int) flen, a);
            rc = apply_value(e, value, who, err, errlen);
            if (rc)
                return rc;
            e->source = SRC_FLAG;
        }
    }
    return 0;
}

static int check_required(cb_config_t *c, char *err, size_t errlen)
{
    size_t i;

    for (i = 0; i < c->nentries; i++) {
        config_entry_t *e = &c->entries[i];
        char up[96];
        const char *s;

        if (!(e->key->flags & CB_CONFIG_REQUIRED) || e->key->type != CB_CONFIG_STRING)
            continue;
        s = *(char **) field_ptr(e);
        if (s && *s)
            continue;
        to_env_case(up, sizeof(up), e->key->name);
        if (e->key->flags & CB_CONFIG_CLI) {
            char flag[128];
            to_flag_case(flag, sizeof(flag), e->key->name);
            set_err(err, errlen, "--%s: required but not set", flag);
        } else {
            set_err(err, errlen, "CASTBUS_%s: required but not set", up);
        }
        return -EINVAL;
    }
    return 0;
}

int cb_config_load(cb_config_t *c, int argc, char **argv, cb_config_action_t *action, char *err,
                   size_t errlen)
{
    const char *path = NULL;
    int rc;

    *action = CB_CONFIG_ACTION_RUN;
    rc = scan_args(c, argc, argv, false, &path, action, err, errlen);
    if (rc)
        return rc;
    rc = apply_defaults(c, err, errlen);
    if (rc)
        return rc;
    if (*action == CB_CONFIG_ACTION_HELP || *action == CB_CONFIG_ACTION_VERSION ||
        *action == CB_CONFIG_ACTION_MARKDOWN || *action == CB_CONFIG_ACTION_JSON)
        return 0; /* describe the defaults, do not fail on the environment */
    if (!path)
        path = getenv("CASTBUS_CONFIG");
    if (path && *path) {
        rc = load_file(c, path, err, errlen);
        if (rc)
            return rc;
    }
    rc = load_env(c, err, errlen);
    if (rc)
        return rc;
    rc = scan_args(c, argc, argv, true, &path, action, err, errlen);
    if (rc)
        return rc;
    if (*action == CB_CONFIG_ACTION_PRINT)
        return 0;
    return check_required(c, err, errlen);
}

/* "INT", "DURATION" ... as shown in --help. */
static const char *type_label(const cb_config_key_t *k)
{
    switch (k->type) {
    case CB_CONFIG_STRING:
        return "STR";
    case CB_CONFIG_INT:
        return "INT";
    case CB_CONFIG_BOOL:
        return "BOOL";
    case CB_CONFIG_DURATION:
        return "DURATION";
    case CB_CONFIG_BYTES:
        return "SIZE";
    case CB_CONFIG_ENUM:
        return "ENUM";
    }
    return "?";
}

/* Value of an entry rendered as text. */
static void format_value(const config_entry_t *e, char *dst, size_t dstlen, bool mask)
{
    const cb_config_key_t *k = e->key;
    const void *p = (const char *) e->base + k->offset;
    const char *s;

    switch (k->type) {
    case CB_CONFIG_STRING:
        s = *(char *const *) p;
        if (mask && (k->flags & CB_CONFIG_SECRET))
            snprintf(dst, dstlen, "%s", s && *s ? "(set)" : "");
        else
            snprintf(dst, dstlen, "%s", s ? s : "");
        break;
    case CB_CONFIG_BOOL:
        snprintf(dst, dstlen, "%s", *(const bool *) p ? "true" : "false");
        break;
    case CB_CONFIG_ENUM:
        enum_name(k->choices, *(const int *) p, dst, dstlen);
        break;
    case CB_CONFIG_INT:
    case CB_CONFIG_BYTES:
        snprintf(dst, dstlen, "%" PRId64, *(const int64_t *) p);
        break;
    case CB_CONFIG_DURATION:
        snprintf(dst, dstlen, "%" PRId64 "ms", *(const int64_t *) p);
        break;
    }
}

/* A duration or size in the largest unit that divides it: 3600000 -> "1h", 1048576 -> "1MiB". */
static void humanize(int64_t v, cb_config_type_t type, char *dst, size_t dstlen)
{
    static const char *const dur_units[] = { "h", "m", "s" };
    static const int64_t dur_mult[] = { 3600000, 60000, 1000 };
    static const char *const size_units[] = { "GiB", "MiB", "KiB" };
    static const int64_t size_mult[] = { 1 << 30, 1 << 20, 1 << 10 };
    const char *const *units = type == CB_CONFIG_DURATION ? dur_units : size_units;
    const int64_t *mult = type == CB_CONFIG_DURATION ? dur_mult : size_mult;
    size_t i;

    for (i = 0; v != 0 && i < 3; i++) {
        if (v % mult[i] == 0) {
            snprintf(dst, dstlen, "%" PRId64 "%s", v / mult[i], units[i]);
            return;
        }
    }
    snprintf(dst, dstlen, "%" PRId64 "%s", v, type == CB_CONFIG_DURATION ? "ms" : "");
}

static void describe_range(const cb_config_key_t *k, char *dst, size_t dstlen)
{
    char lo[32], hi[32];

    dst[0] = '\0';
    if (k->type == CB_CONFIG_ENUM) {
        snprintf(dst, dstlen, "%s", k->choices);
    } else if (has_bounds(k) && (k->type == CB_CONFIG_DURATION || k->type == CB_CONFIG_BYTES)) {
        humanize(k->min, k->type, lo, sizeof(lo));
        humanize(k->max, k->type, hi, sizeof(hi));
        snprintf(dst, dstlen, "%s..%s", lo, hi);
    } else if (has_bounds(k)) {
        snprintf(dst, dstlen, "%" PRId64 "..%" PRId64, k->min, k->max);
    }
}

void cb_config_print_help(const cb_config_t *c, FILE *out)
{
    const char *section = NULL;
    size_t i;

    fprintf(out, "Usage: castbus-%s [OPTIONS]\n\n%s\n\n", c->daemon, c->summary);
    fprintf(out,
            "Every option except those marked (command line only) can also be set in\n"
            "the environment as CASTBUS_<NAME> or CASTBUS_%s_<NAME> (which wins),\n"
            "or as 'name = value' in a file given by --config FILE or CASTBUS_CONFIG.\n"
            "Command-line options win over both.\n",
            c->env_daemon);
    for (i = 0; i < c->nentries; i++) {
        const config_entry_t *e = &c->entries[i];
        const cb_config_key_t *k = e->key;
        const char *def = entry_default(e);
        char flag[128], up[96], range[160], head[200];

        if (!section || strcmp(section, e->section) != 0) {
            section = e->section;
            fprintf(out, "\n%s:\n", section);
        }
        to_flag_case(flag, sizeof(flag), k->name);
        to_env_case(up, sizeof(up), k->name);
        snprintf(head, sizeof(head), "--%s=%s", flag, type_label(k));
        fprintf(out, "  %-34s %s\n", head, k->help);
        describe_range(k, range, sizeof(range));
        fprintf(out, "  %-34s ", "");
        if (k->flags & CB_CONFIG_CLI)
            fprintf(out, "(command line only)");
        else
            fprintf(out, "env CASTBUS_%s", up);
        if (def && *def && !(k->flags & CB_CONFIG_SECRET))
            fprintf(out, ", default %s", def);
        if (range[0])
            fprintf(out, ", %s", range);
        if (k->flags & CB_CONFIG_REQUIRED)
            fprintf(out, ", required");
        if (k->flags & CB_CONFIG_SECRET)
            fprintf(out, ", secret");
        fputc('\n', out);
    }
    fprintf(out,
            "\ngeneral:\n"
            "  %-34s Read options from FILE ('name = value' lines).\n"
            "  %-34s Print the effective configuration (secrets masked) and exit.\n"
            "  %-34s Print this help and exit.\n"
            "  %-34s Print the version and exit.\n",
            "--config=FILE", "--print-config", "--help", "--version");
}

/* Markdown-safe cell: '|' would break the table. */
static void md_cell(FILE *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '|')
            fputs("\\|", out);
        else
            fputc(*s, out);
    }
}

void cb_config_print_markdown(const cb_config_t *c, FILE *out)
{
    size_t i;

    fprintf(out, "## castbus-%s\n\n%s\n\n", c->daemon, c->summary);
    fprintf(out, "| Option | Environment | Type | Default | Range | Description |\n");
    fprintf(out, "|---|---|---|---|---|---|\n");
    for (i = 0; i < c->nentries; i++) {
        const config_entry_t *e = &c->entries[i];
        const cb_config_key_t *k = e->key;
        const char *def = entry_default(e);
        char flag[128], up[96], range[160];

        to_flag_case(flag, sizeof(flag), k->name);
        to_env_case(up, sizeof(up), k->name);
        describe_range(k, range, sizeof(range));
        fprintf(out, "| `--%s` | ", flag);
        if (k->flags & CB_CONFIG_CLI)
            fprintf(out, "(command line only)");
        else
            fprintf(out, "`CASTBUS_%s`", up);
        fprintf(out, " | %s | ", type_label(k));
        if (def && *def && !(k->flags & CB_CONFIG_SECRET)) {
            fputc('`', out);
            md_cell(out, def);
            fputc('`', out);
        }
        fputs(" | ", out);
        md_cell(out, range);
        fputs(" | ", out);
        md_cell(out, k->help);
        if (k->flags & CB_CONFIG_REQUIRED)
            fputs(" Required.", out);
        if (k->flags & CB_CONFIG_SECRET)
            fputs(" Secret.", out);
        fputs(" |\n", out);
    }
    fputc('\n', out);
}

void cb_config_print_json(const cb_config_t *c, FILE *out)
{
    json_t *keys = json_array(), *root;
    size_t i;

    for (i = 0; keys && i < c->nentries; i++) {
        const config_entry_t *e = &c->entries[i];
        const cb_config_key_t *k = e->key;
        const char *def = entry_default(e);
        char flag[128], up[96], env[128];
        json_t *o;

        to_flag_case(flag, sizeof(flag), k->name);
        to_env_case(up, sizeof(up), k->name);
        snprintf(env, sizeof(env), "CASTBUS_%s", up);
        o = json_pack("{s:s, s:s, s:s, s:s, s:b, s:b, s:b, s:s, s:s}", "name", k->name, "flag",
                      flag, "type", type_label(k), "default",
                      (k->flags & CB_CONFIG_SECRET) ? "" : (def ? def : ""), "secret",
                      (k->flags & CB_CONFIG_SECRET) != 0, "required",
                      (k->flags & CB_CONFIG_REQUIRED) != 0, "cli", (k->flags & CB_CONFIG_CLI) != 0,
                      "section", e->section, "help", k->help);
        if (!o)
            continue;
        json_object_set_new(o, "env", (k->flags & CB_CONFIG_CLI) ? json_null() : json_string(env));
        if (has_bounds(k)) {
            json_object_set_new(o, "min", json_integer(k->min));
            json_object_set_new(o, "max", json_integer(k->max));
        }
        if (k->type == CB_CONFIG_ENUM)
            json_object_set_new(o, "choices", json_string(k->choices));
        json_array_append_new(keys, o);
    }
    root = json_pack("{s:s, s:s, s:o}", "daemon", c->daemon, "env_prefix", c->env_daemon, "keys",
                     keys);
    if (root)
        json_dumpf(root, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', out);
    json_decref(root);
}

void cb_config_print_values(const cb_config_t *c, FILE *out)
{
    size_t i;

    for (i = 0; i < c->nentries; i++) {
        const config_entry_t *e = &c->entries[i];
        char v[1024];

        if (e->key->flags & CB_CONFIG_CLI)
            continue;
        format_value(e, v, sizeof(v), true);
        fprintf(out, "%s = \"%s\"  # %s\n", e->key->name, v, source_names[e->source]);
    }
}

json_t *cb_config_to_json(const cb_config_t *c)
{
    json_t *o = json_object();
    size_t i;

    for (i = 0; o && i < c->nentries; i++) {
        const config_entry_t *e = &c->entries[i];
        char v[1024];

        if (e->key->flags & CB_CONFIG_CLI)
            continue;
        format_value(e, v, sizeof(v), true);
        json_object_set_new(o, e->key->name,
                            json_pack("{s:s, s:s}", "value", v, "source", source_names[e->source]));
    }
    return o;
}

const char *cb_config_source(const cb_config_t *c, const char *name)
{
    const config_entry_t *e = find_entry(c, name, strlen(name));

    return e ? source_names[e->source] : NULL;
}
