/*
 * Fuzz harness: a purge request as it arrives on cdn.purges, checked and
 * turned into edge requests. Whatever passes the check must give requests
 * that cannot smuggle anything into an HTTP request (no CR, LF or NUL in a
 * target or header) and whose headers stay within what Varnish accepts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cb_proto.h"
#include "defs.h"
#include "purge_plan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_line(const char *s, size_t max)
{
    size_t len = strlen(s);

    CB_ASSERT(len > 0 && len <= max);
    CB_ASSERT(!strchr(s, '\r') && !strchr(s, '\n'));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cb_proto_purge_request_t m;
    cb_jsonv_error_t e;
    char field[64], why[256];
    pf_plan_t plan;

    if (cb_proto_purge_request_decode(data, size, &m, &e) == 0 &&
        pf_plan_check(&m, field, sizeof(field), why, sizeof(why)) == 0) {
        for (int kind = 0; kind < PF_EDGE_KINDS; kind++) {
            if (pf_plan_build((pf_edge_kind_t) kind, &m, &plan) != 0)
                continue;
            CB_ASSERT(plan.n > 0);
            for (size_t i = 0; i < plan.n; i++) {
                CB_ASSERT(plan.reqs[i].target[0] == '/');
                check_line(plan.reqs[i].target, PF_PLAN_URL_MAX);
                for (size_t h = 0; plan.reqs[i].headers[h]; h++) {
                    const char *hd = plan.reqs[i].headers[h];
                    check_line(hd, PF_PLAN_HEADER_MAX + 64);
                    /* a regex_revalidate rule is "<regex> <expiry> <type>" */
                    if (strncmp(hd, "X-Ban-Regex: ", 13) == 0)
                        CB_ASSERT(!strpbrk(hd + 13, " \t"));
                }
            }
            pf_plan_release(&plan);
        }
    }
    cb_proto_purge_request_release(&m);
    return 0;
}
