/*
 * storage.c - storage front end: key checks, backend choice, metrics; see
 * storage.h. Backends live in storage_<name>.c.
 */
#include "storage.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

const cb_config_key_t cb_storage_config_keys[] = {
    { .name = "storage_url",
      .type = CB_CONFIG_STRING,
      .def = "file:///var/lib/castbus",
      .flags = CB_CONFIG_REQUIRED,
      .offset = offsetof(cb_storage_config_t, url),
      .help = "Where media and manifests are stored: file:///path (shared by the daemons)." },
    { .name = "storage_fsync",
      .type = CB_CONFIG_BOOL,
      .def = "true",
      .offset = offsetof(cb_storage_config_t, fsync),
      .help = "Flush each object to disk before it becomes visible (off: faster, but a "
              "machine crash can lose the last seconds)." },
    { .name = NULL },
};

static const cb_storage_ops_t *const backends[] = { &cb_storage_fs_ops };

struct cb_storage {
    const cb_storage_ops_t *ops;
    void *state;
    cb_metric_t *m_ops, *m_bytes;
};

bool cb_storage_key_valid(const char *key)
{
    size_t i, seg = 0;

    if (!key || !key[0] || strlen(key) > CB_STORAGE_KEY_MAX || key[0] == '/')
        return false;
    for (i = 0;; i++) {
        char c = key[i];
        if (c == '/' || c == '\0') {
            size_t len = i - seg;
            if (len == 0 || (len == 1 && key[seg] == '.') ||
                (len == 2 && key[seg] == '.' && key[seg + 1] == '.'))
                return false;
            if (c == '\0')
                return true;
            seg = i + 1;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
}

/* A prefix is "" or a valid key followed by an optional '/'. */
static bool prefix_valid(const char *prefix)
{
    char tmp[CB_STORAGE_KEY_MAX + 2];
    size_t n = strlen(prefix);

    if (n == 0)
        return true;
    if (n > CB_STORAGE_KEY_MAX)
        return false;
    memcpy(tmp, prefix, n + 1);
    if (tmp[n - 1] == '/')
        tmp[n - 1] = '\0';
    return cb_storage_key_valid(tmp);
}

int cb_storage_open(const cb_storage_config_t *cfg, cb_metrics_t *metrics, cb_storage_t **out,
                    char *err, size_t errlen)
{
    const char *url = cfg->url, *colon = strstr(url, "://"), *location = url;
    const cb_storage_ops_t *ops = NULL;
    cb_storage_t *s;
    size_t i;
    int rc;

    if (colon) {
        for (i = 0; i < CB_ARRAY_LEN(backends); i++) {
            size_t n = strlen(backends[i]->scheme);
            if ((size_t) (colon - url) == n && strncmp(url, backends[i]->scheme, n) == 0)
                ops = backends[i];
        }
        if (!ops) {
            snprintf(err, errlen, "CASTBUS_STORAGE_URL: unknown scheme in '%s' (supported: file)",
                     url);
            return -EINVAL;
        }
        location = colon + 3;
    } else {
        ops = &cb_storage_fs_ops; /* a plain path */
    }
    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->ops = ops;
    rc = ops->open(location, cfg->fsync, &s->state, err, errlen);
    if (rc) {
        free(s);
        return rc;
    }
    s->m_ops = cb_metrics_counter(metrics, "castbus_storage_operations_total",
                                  "Storage operations, by operation and result.",
                                  (const char *[]){ "op", "result", NULL });
    s->m_bytes = cb_metrics_counter(metrics, "castbus_storage_bytes_total",
                                    "Bytes written to and read from storage, by direction.",
                                    (const char *[]){ "direction", NULL });
    *out = s;
    return 0;
}

void cb_storage_close(cb_storage_t *s)
{
    if (!s)
        return;
    s->ops->close(s->state);
    free(s);
}

static int count(cb_storage_t *s, const char *op, int rc)
{
    cb_metric_add(s->m_ops,
                  (const char *[]){ op, rc == 0         ? "ok"
                                        : rc == -ENOENT ? "not_found"
                                                        : "error" },
                  1);
    return rc;
}

/* put and overwrite: the key check, the byte count, the log line and the outcome. */
static int write_op(cb_storage_t *s, const char *op,
                    int (*fn)(void *state, const char *key, const void *data, size_t len),
                    const char *key, const void *data, size_t len)
{
    int rc;

    if (!cb_storage_key_valid(key))
        return -EINVAL;
    rc = fn(s->state, key, data, len);
    if (rc == 0)
        cb_metric_add(s->m_bytes, (const char *[]){ "write" }, (double) len);
    else
        cb_log_error("storage: %s '%s' failed: %s", op, key, strerror(-rc));
    return count(s, op, rc);
}

int cb_storage_put(cb_storage_t *s, const char *key, const void *data, size_t len)
{
    return write_op(s, "put", s->ops->put, key, data, len);
}

int cb_storage_overwrite(cb_storage_t *s, const char *key, const void *data, size_t len)
{
    if (!s->ops->overwrite)
        return cb_storage_put(s, key, data, len);
    return write_op(s, "overwrite", s->ops->overwrite, key, data, len);
}

int cb_storage_put_file(cb_storage_t *s, const char *key, const char *path)
{
    int rc;

    if (!cb_storage_key_valid(key))
        return -EINVAL;
    rc = s->ops->put_file(s->state, key, path);
    if (rc)
        cb_log_error("storage: put '%s' from '%s' failed: %s", key, path, strerror(-rc));
    return count(s, "put_file", rc);
}

int cb_storage_get(cb_storage_t *s, const char *key, cb_buf_t *out)
{
    size_t before = out->len;
    int rc;

    if (!cb_storage_key_valid(key))
        return -EINVAL;
    rc = s->ops->get(s->state, key, out);
    if (rc == 0)
        cb_metric_add(s->m_bytes, (const char *[]){ "read" }, (double) (out->len - before));
    return count(s, "get", rc);
}

int cb_storage_stat(cb_storage_t *s, const char *key, cb_storage_stat_t *st)
{
    if (!cb_storage_key_valid(key))
        return -EINVAL;
    return count(s, "stat", s->ops->stat(s->state, key, st));
}

int cb_storage_remove(cb_storage_t *s, const char *key)
{
    if (!cb_storage_key_valid(key))
        return -EINVAL;
    return count(s, "remove", s->ops->remove(s->state, key));
}

int cb_storage_list(cb_storage_t *s, const char *prefix, cb_storage_list_fn fn, void *arg)
{
    if (!prefix_valid(prefix))
        return -EINVAL;
    return count(s, "list", s->ops->list(s->state, prefix, fn, arg));
}

int cb_storage_local_path(cb_storage_t *s, const char *key, char *out, size_t outlen)
{
    if (!cb_storage_key_valid(key))
        return -EINVAL;
    if (!s->ops->local_path)
        return -ENOTSUP;
    return s->ops->local_path(s->state, key, out, outlen);
}

static int storage_ready(void *obj, char *err, size_t errlen)
{
    cb_storage_t *s = obj;

    return s->ops->check(s->state, err, errlen);
}

static void storage_free_obj(void *obj)
{
    cb_storage_close(obj);
}

const cb_component_ops_t cb_storage_component = {
    .name = "storage",
    .ready = storage_ready,
    .drain = NULL,
    .free = storage_free_obj,
};
