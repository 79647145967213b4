vcl 4.1;

# deploy/compose/varnish/default.vcl - the CDN edge of the compose stack: caches
# HLS/DASH from the packager origin (packager:8090). The stock varnish image has
# no varnish-modules, so this edge takes no purges (deploy/edge/varnish/castbus.vcl
# does, with xkey): objects simply expire. Manifests are kept gzipped and sent so
# to players that take them, as there.
#
# TTLs when the origin sends no Cache-Control of its own:
#   manifests (.m3u8, .mpd)          1 s, grace 2 s  (live playlists change every segment)
#   segments and init (.m4s, .mp4..) 1 day, grace 1 h (immutable once written)
#   404                              1 s             (a segment asked for before it exists)
# Everything else - the admin API, /healthz, /readyz, /metrics, anything with an
# Authorization header, anything but GET/HEAD - goes to the origin uncached.

backend packager {
    .host = "packager";
    .port = "8090";
    .connect_timeout = 2s;
    .first_byte_timeout = 15s;
    .between_bytes_timeout = 10s;
    .probe = {
        .url = "/time";
        .interval = 5s;
        .timeout = 2s;
        .window = 5;
        .threshold = 3;
    }
}

sub vcl_recv {
    set req.backend_hint = packager;
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

sub vcl_backend_response {
    if (beresp.status >= 500 && bereq.is_bgfetch) {
        # keep serving the stale copy while the origin has trouble
        return (abandon);
    }
    if (beresp.status == 200 && bereq.url ~ "\.(m3u8|mpd)(\?.*)?$" &&
        !beresp.http.Content-Encoding) {
        set beresp.do_gzip = true; # text that grows with the DVR window
    }
    if (beresp.http.Cache-Control || beresp.http.Expires) {
        # the origin decides
        return (deliver);
    }
    if (beresp.status == 404) {
        set beresp.ttl = 1s;
        set beresp.grace = 0s;
    } elsif (bereq.url ~ "\.(m3u8|mpd)(\?.*)?$") {
        set beresp.ttl = 1s;
        set beresp.grace = 2s;
    } elsif (beresp.status == 200 && bereq.url ~ "\.(m4s|mp4|m4a|m4v|cmfv|cmfa|cmft|ts|aac|vtt|webvtt)(\?.*)?$") {
        set beresp.ttl = 1d;
        set beresp.grace = 1h;
    } else {
        set beresp.ttl = 2s;
        set beresp.grace = 2s;
    }
    return (deliver);
}

sub vcl_deliver {
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
}
