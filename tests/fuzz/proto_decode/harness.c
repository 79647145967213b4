/*
 * Fuzz harness: every message decoder generated from proto/ (and through
 * them the jsonv validator) on arbitrary bytes, as they arrive from Kafka
 * and NATS. A decoded message is re-encoded and decoded again: what we
 * accept we must be able to write back.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cb_proto.h"
#include "defs.h"

#define ROUND(snake)                                                                               \
    do {                                                                                           \
        cb_proto_##snake##_t m, m2;                                                                \
        cb_jsonv_error_t e;                                                                        \
        if (cb_proto_##snake##_decode(data, size, &m, &e) == 0) {                                  \
            size_t len;                                                                            \
            char *out = cb_proto_##snake##_encode(&m, &len);                                       \
            CB_ASSERT(out != NULL);                                                                \
            CB_ASSERT(cb_proto_##snake##_decode(out, len, &m2, &e) == 0);                          \
            cb_proto_##snake##_release(&m2);                                                       \
            free(out);                                                                             \
        }                                                                                          \
        cb_proto_##snake##_release(&m);                                                            \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ROUND(transcode_job);
    ROUND(transcode_done);
    ROUND(package_event);
    ROUND(purge_request);
    ROUND(analytics_event);
    ROUND(entitlement_check);
    ROUND(entitlement_decision);
    ROUND(drm_keys_get);
    ROUND(drm_key);
    ROUND(error_reply);
    ROUND(edge_heartbeat);
    ROUND(edge_ack);
    return 0;
}
