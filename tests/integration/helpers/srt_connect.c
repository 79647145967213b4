/*
 * srt_connect - SRT caller handshakes for the integration tests, without
 * sending media: how a listener answers many connection attempts.
 *
 *   srt_connect HOST PORT STREAMID PASSPHRASE COUNT
 *
 * Makes COUNT connections one after the other (PASSPHRASE "" for none),
 * closes each one at once, and prints {"connected":N,"rejected":M,
 * "last_reject":"..."} on stdout. Exit status 0 (2 on bad usage).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <srt/srt.h>

int main(int argc, char **argv)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    const char *reason = "";
    long count, i, connected = 0, rejected = 0;

    if (argc != 6 || inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1 ||
        (count = strtol(argv[5], NULL, 10)) <= 0) {
        fprintf(stderr, "usage: srt_connect HOST PORT STREAMID PASSPHRASE COUNT\n");
        return 2;
    }
    sa.sin_port = htons((unsigned short) strtol(argv[2], NULL, 10));
    srt_startup();
    for (i = 0; i < count; i++) {
        SRTSOCKET s = srt_create_socket();
        int yes = 1, timeout_ms = 5000;

        srt_setsockflag(s, SRTO_SENDER, &yes, sizeof(yes));
        srt_setsockflag(s, SRTO_CONNTIMEO, &timeout_ms, sizeof(timeout_ms));
        srt_setsockflag(s, SRTO_STREAMID, argv[3], (int) strlen(argv[3]));
        if (argv[4][0])
            srt_setsockflag(s, SRTO_PASSPHRASE, argv[4], (int) strlen(argv[4]));
        if (srt_connect(s, (struct sockaddr *) &sa, sizeof(sa)) == SRT_ERROR) {
            rejected++;
            reason = srt_rejectreason_str(srt_getrejectreason(s));
        } else {
            connected++;
        }
        srt_close(s);
    }
    printf("{\"connected\":%ld,\"rejected\":%ld,\"last_reject\":\"%s\"}\n", connected, rejected,
           reason);
    srt_cleanup();
    return 0;
}
