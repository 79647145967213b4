/*
 * ingest_api.c - the streams REST API of castbus-ingest.
 *
 *   POST   /v1/streams                  editor  create; the key is shown once
 *   GET    /v1/streams?status=&limit=   viewer  list, newest first
 *   GET    /v1/streams/{id}             viewer  settings, live state and statistics
 *   DELETE /v1/streams/{id}             editor  end its publish, remove it
 *   POST   /v1/streams/{id}/kick        editor  end its publish (any replica)
 *   POST   /v1/streams/{id}/rotate-key  editor  new key; the current publish goes on
 *
 * Handlers block on PostgreSQL: they run on the HTTP worker threads.
 */
#include "ingest_api.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "jsonv.h"
#include "log.h"

#include "ingest_store.h"

typedef struct create_req {
    char *name;
    char *profile;
    int64_t dvr_window_s;
    bool record;
    bool signed_playback;
    int priority;
} create_req_t;

static const char *const priorities[] = { "normal", "high", NULL };

static const cb_jsonv_field_t create_fields[] = {
    { .name = "name",
      .type = CB_JSONV_STRING,
      .flags = CB_JSONV_REQUIRED,
      .offset = offsetof(create_req_t, name),
      .min = 1,
      .max = 128 },
    { .name = "profile",
      .type = CB_JSONV_STRING,
      .flags = CB_JSONV_IDENT,
      .offset = offsetof(create_req_t, profile),
      .max = 64 },
    { .name = "dvr_window_s",
      .type = CB_JSONV_INT,
      .offset = offsetof(create_req_t, dvr_window_s),
      .min = 0,
      .max = 14400,
      .def = 3600 }, /* absent: an hour; 0: live edge only */
    { .name = "record", .type = CB_JSONV_BOOL, .offset = offsetof(create_req_t, record) },
    { .name = "signed_playback",
      .type = CB_JSONV_BOOL,
      .offset = offsetof(create_req_t, signed_playback) },
    { .name = "priority",
      .type = CB_JSONV_ENUM,
      .offset = offsetof(create_req_t, priority),
      .enum_values = priorities },
    { .name = NULL },
};

/* Answer a store error: 404, 503 or 500. */
static int store_error(cb_http_req_t *req, int rc, const char *id, const char *err)
{
    if (rc == -ENOENT)
        return cb_http_reply_error(req, 404, NULL, NULL, "no stream '%s'", id ? id : "");
    if (rc == -ECONNREFUSED || rc == -ETIMEDOUT) {
        cb_http_add_header(req, "retry-after", "2");
        return cb_http_reply_error(req, 503, NULL, NULL, "database unavailable: %s", err);
    }
    cb_log_error("streams API: %s", err);
    return cb_http_reply_error(req, 500, NULL, NULL, "database error");
}

/* The {id} of the path, or NULL after answering 404. */
static const char *path_id(cb_http_req_t *req)
{
    const char *id = cb_http_req_param(req, "id");

    if (!id || !cb_jsonv_is_ident(id, 64)) {
        cb_http_reply_error(req, 404, NULL, NULL, "no stream '%s'", id ? id : "");
        return NULL;
    }
    return id;
}

static json_t *with_urls(const ingest_app_t *app, json_t *o, const char *id, const char *key)
{
    json_t *urls = ingest_app_urls(app, id, key);

    json_object_update(o, urls);
    json_decref(urls);
    return o;
}

static int h_create(cb_http_req_t *req, void *arg)
{
    ingest_app_t *app = arg;
    ingest_stream_info_t info;
    char key[INGEST_KEY_MAX], err[256];
    ingest_stream_row_t row;
    create_req_t body;
    json_t *o;
    int rc;

    if (cb_http_req_json(req, create_fields, &body)) {
        cb_jsonv_release(create_fields, &body);
        return CB_HTTP_DONE;
    }
    memset(&info, 0, sizeof(info));
    snprintf(info.name, sizeof(info.name), "%s", body.name);
    snprintf(info.profile, sizeof(info.profile), "%s",
             body.profile ? body.profile : app->cfg.default_profile);
    info.dvr_window_s = body.dvr_window_s;
    info.record = body.record;
    info.signed_playback = body.signed_playback;
    info.priority_high = body.priority == 1;
    cb_jsonv_release(create_fields, &body);
    rc = ingest_store_create(app->deps.db, &info, key, err, sizeof(err));
    if (rc)
        return store_error(req, rc, NULL, err);
    rc = ingest_store_get(app->deps.db, info.id, ingest_app_stale_ms(app), &row, err, sizeof(err));
    if (rc)
        return store_error(req, rc, info.id, err);
    o = with_urls(app, ingest_stream_row_json(&row), info.id, key);
    json_object_set_new(o, "stream_key", json_string(key));
    ingest_stream_row_release(&row);
    cb_log_info("stream '%s' (%s) created", info.id, info.name);
    snprintf(err, sizeof(err), "/v1/streams/%s", info.id);
    cb_http_add_header(req, "location", err);
    return cb_http_reply_json(req, 201, o);
}

static int h_list(cb_http_req_t *req, void *arg)
{
    ingest_app_t *app = arg;
    char status[16], err[256];
    const char *filter = NULL;
    int64_t limit = 100;
    json_t *arr;
    size_t i;
    int rc;

    rc = cb_http_req_query(req, "status", status, sizeof(status));
    if (rc >= 0) {
        if (strcmp(status, "live") != 0 && strcmp(status, "idle") != 0)
            return cb_http_reply_error(req, 400, "invalid_field", "status",
                                       "status must be live or idle");
        filter = status;
    } else if (rc != -ENOENT) {
        return cb_http_reply_error(req, 400, "invalid_field", "status", "malformed status");
    }
    if (cb_http_req_query_int(req, "limit", 1, 1000, &limit) == -EINVAL)
        return CB_HTTP_DONE;
    rc = ingest_store_list(app->deps.db, filter, limit, ingest_app_stale_ms(app), &arr, err,
                           sizeof(err));
    if (rc)
        return store_error(req, rc, NULL, err);
    for (i = 0; i < json_array_size(arr); i++) {
        json_t *o = json_array_get(arr, i);
        with_urls(app, o, json_string_value(json_object_get(o, "id")), NULL);
    }
    return cb_http_reply_json(
        req, 200,
        json_pack("{s:o, s:I}", "streams", arr, "count", (json_int_t) json_array_size(arr)));
}

static int h_get(cb_http_req_t *req, void *arg)
{
    ingest_app_t *app = arg;
    const char *id = path_id(req);
    ingest_stream_row_t row;
    json_t *o, *here;
    char err[256];
    int rc;

    if (!id)
        return CB_HTTP_DONE;
    rc = ingest_store_get(app->deps.db, id, ingest_app_stale_ms(app), &row, err, sizeof(err));
    if (rc)
        return store_error(req, rc, id, err);
    o = with_urls(app, ingest_stream_row_json(&row), id, NULL);
    ingest_stream_row_release(&row);
    /* live here: the freshest statistics are in memory */
    here = ingest_hub_status(app->hub, id);
    if (here) {
        json_object_set_new(o, "status", json_string("live"));
        json_object_set_new(o, "instance", json_string(app->instance));
        json_object_set_new(here, "pending_segments",
                            json_integer((json_int_t) ingest_writer_pending(app->writer, id)));
        json_object_set_new(o, "live", here);
    }
    return cb_http_reply_json(req, 200, o);
}

static int h_delete(cb_http_req_t *req, void *arg)
{
    ingest_app_t *app = arg;
    const char *id = path_id(req);
    char err[256];
    int rc;

    if (!id)
        return CB_HTTP_DONE;
    rc = ingest_store_delete(app->deps.db, id, err, sizeof(err));
    if (rc)
        return store_error(req, rc, id, err);
    ingest_app_kick(app, id, "the stream was deleted");
    cb_log_info("stream '%s' deleted", id);
    return cb_http_reply(req, 204, "application/json", NULL, 0);
}

static int h_kick(cb_http_req_t *req, void *arg)
{
    ingest_app_t *app = arg;
    const char *id = path_id(req);
    ingest_stream_row_t row;
    char err[256];
    bool live_here;
    int rc;

    if (!id)
        return CB_HTTP_DONE;
    rc = ingest_store_get(app->deps.db, id, ingest_app_stale_ms(app), &row, err, sizeof(err));
    if (rc)
        return store_error(req, rc, id, err);
    live_here = ingest_app_kick(app, id, "kicked by an operator") == 1;
    if (!live_here && !row.live) {
        ingest_stream_row_release(&row);
        return cb_http_reply_error(req, 409, "not_live", NULL, "stream '%s' is not live", id);
    }
    ingest_stream_row_release(&row);
    cb_log_info("stream '%s' kicked%s", id, live_here ? "" : " (passed to its replica)");
    return cb_http_reply_json(
        req, 202, json_pack("{s:s, s:s}", "id", id, "kicked", live_here ? "here" : "forwarded"));
}

static int h_rotate(cb_http_req_t *req, void *arg)
{
    ingest_app_t *app = arg;
    const char *id = path_id(req);
    char key[INGEST_KEY_MAX], err[256];
    json_t *o;
    int rc;

    if (!id)
        return CB_HTTP_DONE;
    rc = ingest_store_rotate_key(app->deps.db, id, key, err, sizeof(err));
    if (rc)
        return store_error(req, rc, id, err);
    o = with_urls(app, json_pack("{s:s, s:s}", "id", id, "stream_key", key), id, key);
    cb_log_info("stream '%s': key rotated", id);
    return cb_http_reply_json(req, 200, o);
}

int ingest_api_routes(cb_daemon_t *d, ingest_app_t *app)
{
    const cb_http_route_t routes[] = {
        { "POST", "/v1/streams", CB_ROLE_EDITOR, CB_HTTP_BLOCKING, h_create, app },
        { "GET", "/v1/streams", CB_ROLE_VIEWER, CB_HTTP_BLOCKING, h_list, app },
        { "GET", "/v1/streams/{id}", CB_ROLE_VIEWER, CB_HTTP_BLOCKING, h_get, app },
        { "DELETE", "/v1/streams/{id}", CB_ROLE_EDITOR, CB_HTTP_BLOCKING, h_delete, app },
        { "POST", "/v1/streams/{id}/kick", CB_ROLE_EDITOR, CB_HTTP_BLOCKING, h_kick, app },
        { "POST", "/v1/streams/{id}/rotate-key", CB_ROLE_EDITOR, CB_HTTP_BLOCKING, h_rotate, app },
    };

    return cb_daemon_add_routes(d, routes, CB_ARRAY_LEN(routes));
}
