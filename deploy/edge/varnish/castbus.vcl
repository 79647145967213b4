vcl 4.1;

# deploy/edge/varnish/castbus.vcl - a castbus CDN edge: caches HLS/DASH from
# the packager origin and takes the purges purge-fanout sends it.
#
# Needs Varnish 7.1+ and varnish-modules (xkey). Deployment specifics live in
# site.vcl beside it (found through vcl_path): `backend origin` and
# `acl purgers` (who may purge). This file stays the same everywhere.
#
# Purges (only from `purgers`; anyone else gets 403):
#   PURGE <url>                          the object at that URL, every variant
#   PURGE <any url> + xkey-purge: k1 k2  every object tagged with one of the
#                                        keys (the origin's xkey header)
#   BAN / + X-Ban-Url: <regex>           every object whose URL matches (a
#                                        prefix is "^" + the escaped prefix)
#   BAN / + X-Ban-All: 1                 everything
# With X-Purge-Soft: 1, URL and key purges only mark objects stale: they are
# revalidated, and still served (grace) while the origin is down. Bans are
# always hard. Every purge answers 200 with the count in X-Purged (URL and
# key purges) and `purged`/`banned` in the body.
#
# Objects are cached by URL alone (one origin per edge; Host is ignored).
#
# TTLs: what the origin says (Cache-Control); without it manifests 1 s,
# segments 1 day, 404 1 s. Grace (stale served while the origin is down or
# refetching): manifests 2 s, segments 1 h. Manifests are kept gzipped and
# sent so to clients that send Accept-Encoding: gzip.

import purge;
import std;
import xkey;

include "site.vcl";

sub vcl_recv {
    set req.backend_hint = origin;
    if (req.method == "PURGE" || req.method == "BAN") {
        if (client.ip !~ purgers) {
            return (synth(403, "purge not allowed from " + client.ip));
        }
        if (req.method == "BAN") {
            if (req.http.X-Ban-All == "1") {
                ban("obj.status != 0");
                return (synth(200, "banned"));
            }
            if (!req.http.X-Ban-Url) {
                return (synth(400, "X-Ban-Url or X-Ban-All: 1 is required"));
            }
            ban("obj.http.x-url ~ " + req.http.X-Ban-Url);
            return (synth(200, "banned"));
        }
        if (req.http.xkey-purge) {
            if (req.http.X-Purge-Soft == "1") {
                set req.http.X-Purged = xkey.softpurge(req.http.xkey-purge);
            } else {
                set req.http.X-Purged = xkey.purge(req.http.xkey-purge);
            }
            return (synth(200, "purged"));
        }
        return (hash);
    }
    if (req.method != "GET" && req.method != "HEAD") {
        return (pass);
    }
    if (req.url ~ "^/(v1/|healthz|readyz|metrics)") {
        return (pass);
    }
    if (req.http.Authorization) {
        return (pass);
    }
    # media is the same for every viewer: cookies must not split the cache
    unset req.http.Cookie;
    return (hash);
}

# One origin behind every edge: objects are cached by URL alone, so the
# Host a viewer (or a purge) used does not split or miss them.
sub vcl_hash {
    hash_data(req.url);
    return (lookup);
}

sub castbus_purge_url {
    if (req.http.X-Purge-Soft == "1") {
        set req.http.X-Purged = purge.soft(0s);
    } else {
        set req.http.X-Purged = purge.hard();
    }
    return (synth(200, "purged"));
}

sub vcl_hit {
    if (req.method == "PURGE") {
        call castbus_purge_url;
    }
}

sub vcl_miss {
    if (req.method == "PURGE") {
        call castbus_purge_url;
    }
}

sub vcl_backend_response {
    # what bans match on (lurker-friendly: objects only)
    set beresp.http.x-url = bereq.url;
    if (beresp.status >= 500 && bereq.is_bgfetch) {
        # keep serving the stale copy while the origin has trouble
        return (abandon);
    }
    if (bereq.url ~ "\.(m3u8|mpd)(\?.*)?$") {
        set beresp.grace = 2s;
        if (beresp.status == 200 && !beresp.http.Content-Encoding) {
            # text that grows with the DVR window: stored gzipped, sent so
            # to players that take it (gunzipped for the others)
            set beresp.do_gzip = true;
        }
    } elsif (bereq.url ~ "\.(m4s|mp4|m4a|m4v|cmfv|cmfa|cmft|ts|aac|vtt|webvtt)(\?.*)?$") {
        set beresp.grace = 1h;
    }
    if (beresp.http.Cache-Control || beresp.http.Expires) {
        # the origin decides how long
        return (deliver);
    }
    if (beresp.status == 404) {
        set beresp.ttl = 1s;
        set beresp.grace = 0s;
    } elsif (bereq.url ~ "\.(m3u8|mpd)(\?.*)?$") {
        set beresp.ttl = 1s;
    } elsif (beresp.status == 200 && bereq.url ~ "\.(m4s|mp4|m4a|m4v|cmfv|cmfa|cmft|ts|aac|vtt|webvtt)(\?.*)?$") {
        set beresp.ttl = 1d;
    } else {
        set beresp.ttl = 2s;
        set beresp.grace = 2s;
    }
    return (deliver);
}

sub vcl_deliver {
    unset resp.http.x-url;
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
}

sub vcl_synth {
    if (req.http.X-Purged) {
        set resp.http.X-Purged = req.http.X-Purged;
    }
}
