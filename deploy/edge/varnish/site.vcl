# deploy/edge/varnish/site.vcl - what differs per deployment; castbus.vcl
# includes it. This one is for an edge beside the castbus packager Service
# in Kubernetes or compose (host "packager", origin port 8090).

backend origin {
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

# who may purge and ban: purge-fanout's addresses (loopback and the
# private ranges a cluster network uses)
acl purgers {
    "127.0.0.1";
    "::1";
    "10.0.0.0"/8;
    "172.16.0.0"/12;
    "192.168.0.0"/16;
}
