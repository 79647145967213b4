/*
 * purge_plan.h - what one purge job asks of one edge, as HTTP requests in
 * the dialect of that edge's cache software.
 *
 * Varnish (deploy/edge/varnish/castbus.vcl):
 *   urls      PURGE <path> per URL (Host from an absolute URL)
 *   prefixes  BAN / with X-Ban-Url: ^(?:<escaped prefix>|...)
 *   tags      PURGE / with xkey-purge: <tag> <tag> ...
 *   all       BAN / with X-Ban-All: 1
 * Soft purges add X-Purge-Soft: 1 (URLs and tags; bans are always hard).
 *
 * Traffic Server (deploy/edge/trafficserver/castbus_edge.lua):
 *   urls      hard: PURGE <path> per URL; soft: as prefixes, anchored at the end
 *   prefixes  BAN / with X-Ban-Regex: ^[a-z]+://[^/]+(?:<escaped prefix>|...)
 *   tags      as prefixes: a castbus surrogate key is the path it names
 *             ("live/x/720p" -> /live/x/720p/, "live/x/manifests" -> /live/x/[^/]*$)
 *   all       BAN / with X-Ban-Regex: ^[a-z]+://
 * with X-Ban-Type: STALE (soft: revalidate) or MISS (hard: refetch); each BAN
 * becomes a regex_revalidate rule on the edge.
 *
 * nginx (deploy/edge/nginx/castbus_edge.lua) speaks the Traffic Server
 * dialect: its PURGE deletes the URL's cache files, a BAN moves what matches
 * to a new cache key (STALE: the old copy still served while the origin is
 * down). Its regexes see scheme://host/path too.
 *
 * A PURGE answered 404 means "not in that cache": done (purge_send.c).
 *
 * Long lists are split so that no header exceeds PF_PLAN_HEADER_MAX.
 *
 * Pure functions: no I/O, any thread.
 */
#ifndef PF_PLAN_H
#define PF_PLAN_H

#include <stdbool.h>
#include <stddef.h>

#include "cb_proto.h"

#define PF_PLAN_HEADER_MAX 4000 /* Varnish's default http_req_hdr_len is 8 KB */
#define PF_PLAN_URL_MAX    2048
#define PF_PLAN_TAG_MAX    256

typedef enum pf_edge_kind {
    PF_EDGE_VARNISH = 0,
    PF_EDGE_TRAFFICSERVER = 1,
    PF_EDGE_NGINX = 2,
} pf_edge_kind_t;

#define PF_EDGE_KINDS 3

/* "varnish", "trafficserver", "nginx"; NULL-terminated, in pf_edge_kind_t order (and proto's enum). */
extern const char *const pf_edge_kind_names[];

/* The position of s in a NULL-terminated list of names, -1 if absent (or s is NULL). */
int pf_name_index(const char *const *names, const char *s);

typedef struct pf_http {
    const char *method; /* static: "PURGE", "BAN" */
    char *target;       /* request path, "/live/x/master.m3u8" */
    char *headers[3];   /* "Name: value" lines, NULL after the last */
} pf_http_t;

typedef struct pf_plan {
    pf_http_t *reqs;
    size_t n;
} pf_plan_t;

/*
 * Check one selector value as a purge may carry it; on error write why
 * into err and return -EINVAL. A URL is a path ("/vod/a/master.m3u8") or
 * an absolute http(s) URL; a tag has no blanks, commas or controls.
 */
int pf_plan_check_url(const char *url, char *err, size_t errlen);
int pf_plan_check_tag(const char *tag, char *err, size_t errlen);

/*
 * Check a whole request: exactly one selector, every value valid. On error
 * *field names the offending member ("urls[3]", "all") and err says why.
 */
int pf_plan_check(const cb_proto_purge_request_t *m, char *field, size_t fieldlen, char *err,
                  size_t errlen);

/* Build the requests for a checked job on an edge of `kind`. 0 or -ENOMEM. */
int pf_plan_build(pf_edge_kind_t kind, const cb_proto_purge_request_t *m, pf_plan_t *out);

void pf_plan_release(pf_plan_t *p);

#endif /* PF_PLAN_H */
