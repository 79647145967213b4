/*
 * ingest_api.h - the streams REST API of castbus-ingest (see ingest_api.c
 * for the routes). Handlers block on PostgreSQL and run on the HTTP workers.
 */
#ifndef INGEST_API_H
#define INGEST_API_H

#include "daemon.h"

#include "ingest_app.h"

/* Register the /v1/streams routes. Returns 0 or a negative errno. */
int ingest_api_routes(cb_daemon_t *d, ingest_app_t *app);

#endif /* INGEST_API_H */
