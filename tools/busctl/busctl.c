/*
 * castbus-busctl - operator's tool for the castbus bus.
 *
 *   castbus-busctl topics ensure [--replication N]  create the topics of proto/
 *   castbus-busctl topics list                      print them
 *   castbus-busctl produce --topic T [--key K]      validate stdin, produce it
 *   castbus-busctl request --subject S              validate stdin, NATS request
 *   castbus-busctl validate (--topic T | --subject S [--reply])
 *
 * Brokers and NATS come from the same settings as the daemons
 * (CASTBUS_KAFKA_BROKERS, CASTBUS_NATS_URL or --kafka-brokers, --nats-url).
 * Messages are checked against proto/ before they are sent, so a typo gets
 * "field 'x': required" here instead of a dead letter later.
 *
 * Exit status: 0 done, 1 failed, 2 bad usage or invalid message,
 * 3 timed out, 4 nobody serves the subject.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "cb_proto.h"
#include "config.h"
#include "kafka.h"
#include "log.h"
#include "nats.h"

#define STDIN_MAX (CB_PROTO_MAX_MESSAGE_BYTES + 1)

typedef struct busctl_opts {
    char *topic;
    char *subject;
    char *key;
    int64_t replication;
    int64_t timeout_ms;
    bool no_validate;
    bool reply;
} busctl_opts_t;

static const cb_config_key_t busctl_keys[] = {
    { .name = "topic",
      .type = CB_CONFIG_STRING,
      .def = "",
      .flags = CB_CONFIG_CLI,
      .offset = offsetof(busctl_opts_t, topic),
      .help = "Kafka topic (produce, validate)." },
    { .name = "subject",
      .type = CB_CONFIG_STRING,
      .def = "",
      .flags = CB_CONFIG_CLI,
      .offset = offsetof(busctl_opts_t, subject),
      .help = "NATS subject (request, validate)." },
    { .name = "key",
      .type = CB_CONFIG_STRING,
      .def = "",
      .flags = CB_CONFIG_CLI,
      .offset = offsetof(busctl_opts_t, key),
      .help = "Kafka key (default: the message field proto/ names as the key)." },
    { .name = "replication",
      .type = CB_CONFIG_INT,
      .def = "1",
      .min = 1,
      .max = 16,
      .flags = CB_CONFIG_CLI,
      .offset = offsetof(busctl_opts_t, replication),
      .help = "Replication factor of topics created by 'topics ensure'." },
    { .name = "timeout",
      .type = CB_CONFIG_DURATION,
      .def = "10s",
      .min = 10,
      .max = 600000,
      .flags = CB_CONFIG_CLI,
      .offset = offsetof(busctl_opts_t, timeout_ms),
      .help = "How long to wait for the brokers, an acknowledgement or a reply." },
    { .name = "no_validate",
      .type = CB_CONFIG_BOOL,
      .def = "false",
      .flags = CB_CONFIG_CLI,
      .offset = offsetof(busctl_opts_t, no_validate),
      .help = "Send the message even if it does not match proto/ (to test consumers)." },
    { .name = "reply",
      .type = CB_CONFIG_BOOL,
      .def = "false",
      .flags = CB_CONFIG_CLI,
      .offset = offsetof(busctl_opts_t, reply),
      .help = "validate: check stdin as the subject's reply instead of its request." },
    { .name = NULL },
};

static busctl_opts_t opts;
static cb_kafka_config_t kafka_cfg;
static cb_nats_config_t nats_cfg;

static void usage(FILE *out)
{
    fprintf(out, "usage: castbus-busctl topics ensure [--replication N] [--timeout 30s]\n"
                 "       castbus-busctl topics list\n"
                 "       castbus-busctl produce --topic T [--key K] [--no-validate] < msg.json\n"
                 "       castbus-busctl request --subject S [--timeout 2s] < req.json\n"
                 "       castbus-busctl validate (--topic T | --subject S [--reply]) < msg.json\n"
                 "       castbus-busctl --help\n");
}

static int read_stdin(cb_buf_t *b)
{
    char chunk[8192];
    size_t n;

    while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0) {
        if (cb_buf_append(b, chunk, n)) {
            fprintf(stderr, "busctl: input larger than %d bytes\n", CB_PROTO_MAX_MESSAGE_BYTES);
            return -E2BIG;
        }
    }
    /* a trailing newline from `echo` is not part of the message */
    while (b->len && (b->data[b->len - 1] == '\n' || b->data[b->len - 1] == '\r'))
        cb_buf_truncate(b, b->len - 1);
    return 0;
}

static int topics_list(void)
{
    size_t i;

    printf("%-28s %10s  %-10s %s\n", "TOPIC", "PARTITIONS", "KEY", "MESSAGE");
    for (i = 0; i < cb_proto_ntopics; i++) {
        const cb_proto_topic_t *t = &cb_proto_topics[i];
        printf("%-28s %10d  %-10s %s\n", t->name, t->partitions, t->key,
               t->message ? t->message : "(dead letters)");
    }
    for (i = 0; i < cb_proto_nsubjects; i++)
        printf("subject %-20s request %s, reply %s\n", cb_proto_subjects[i].name,
               cb_proto_subjects[i].request, cb_proto_subjects[i].reply);
    return 0;
}

static int topics_ensure(void)
{
    cb_kafka_topic_spec_t specs[64];
    size_t i, created = 0;
    char err[512];
    int rc;

    CB_ASSERT(cb_proto_ntopics <= CB_ARRAY_LEN(specs));
    for (i = 0; i < cb_proto_ntopics; i++) {
        specs[i].name = cb_proto_topics[i].name;
        specs[i].partitions = cb_proto_topics[i].partitions;
        specs[i].replication = (int) opts.replication;
    }
    rc = cb_kafka_ensure_topics(&kafka_cfg, specs, cb_proto_ntopics, opts.timeout_ms, &created, err,
                                sizeof(err));
    if (rc) {
        fprintf(stderr, "busctl: %s\n", err);
        return rc == -ETIMEDOUT ? 3 : 1;
    }
    printf("busctl: all %zu topics exist on %s (%zu created now)\n", cb_proto_ntopics,
           kafka_cfg.brokers, created);
    return 0;
}

static int check_message(cb_proto_validate_fn validate, const cb_buf_t *msg, const char *what)
{
    cb_jsonv_error_t err;

    if (validate(msg->data ? msg->data : "", msg->len, &err) == 0)
        return 0;
    fprintf(stderr, "busctl: invalid %s: %s\n", what, err.text);
    return 2;
}

/* The value of the topic's key field in the message, if it is a string. */
static char *key_from_message(const cb_proto_topic_t *t, const cb_buf_t *msg)
{
    json_t *root = json_loadb(msg->data ? msg->data : "", msg->len, 0, NULL);
    const char *v = root ? json_string_value(json_object_get(root, t->key)) : NULL;
    char *key = v ? strdup(v) : NULL;

    json_decref(root);
    return key;
}

static int produce(void)
{
    const cb_proto_topic_t *t = cb_proto_topic_find(opts.topic);
    cb_kafka_producer_t *p = NULL;
    cb_metrics_t *m = NULL;
    char err[512], *key = NULL;
    cb_buf_t msg;
    int rc;

    if (!t) {
        fprintf(stderr, "busctl: unknown topic '%s' (see 'topics list')\n", opts.topic);
        return 2;
    }
    cb_buf_init(&msg, STDIN_MAX);
    if (read_stdin(&msg)) {
        cb_buf_release(&msg);
        return 2;
    }
    if (!opts.no_validate && t->validate) {
        rc = check_message(t->validate, &msg, t->message);
        if (rc) {
            cb_buf_release(&msg);
            return rc;
        }
    }
    key = opts.key[0] ? strdup(opts.key) : key_from_message(t, &msg);
    rc = cb_metrics_new(&m);
    if (rc == 0)
        rc = cb_kafka_producer_new(&kafka_cfg, "castbus-busctl", m, &p, err, sizeof(err));
    if (rc == 0)
        rc = cb_kafka_produce_sync(p, t->name, key, key ? strlen(key) : 0, msg.data, msg.len, NULL,
                                   0, opts.timeout_ms, err, sizeof(err));
    if (rc)
        fprintf(stderr, "busctl: %s\n", err);
    else
        printf("busctl: produced %zu bytes to %s (key '%s')\n", msg.len, t->name, key ? key : "");
    cb_kafka_producer_free(p);
    cb_metrics_free(m);
    free(key);
    cb_buf_release(&msg);
    return rc == 0 ? 0 : rc == -ETIMEDOUT ? 3 : 1;
}

static int request(void)
{
    const cb_proto_subject_t *s = cb_proto_subject_find(opts.subject);
    cb_nats_t *n = NULL;
    cb_metrics_t *m = NULL;
    cb_buf_t msg, reply;
    char err[512];
    int rc, tries;

    if (!s) {
        fprintf(stderr, "busctl: unknown subject '%s' (see 'topics list')\n", opts.subject);
        return 2;
    }
    cb_buf_init(&msg, STDIN_MAX);
    cb_buf_init(&reply, CB_PROTO_MAX_MESSAGE_BYTES);
    rc = read_stdin(&msg) ? 2 : 0;
    if (rc == 0 && !opts.no_validate)
        rc = check_message(s->validate_request, &msg, s->request);
    if (rc == 0 && cb_metrics_new(&m))
        rc = 1;
    if (rc == 0 && cb_nats_new(&nats_cfg, "castbus-busctl", m, &n, err, sizeof(err))) {
        fprintf(stderr, "busctl: %s\n", err);
        rc = 1;
    }
    if (rc == 0) {
        /* the connection is made in the background: give it the timeout to come up */
        for (tries = 0;; tries++) {
            rc = cb_nats_request(n, s->name, msg.data, msg.len, opts.timeout_ms, &reply);
            if (rc != -ENOTCONN || tries * 100 >= opts.timeout_ms)
                break;
            usleep(100 * 1000);
        }
        if (rc == 0) {
            fwrite(reply.data, 1, reply.len, stdout);
            fputc('\n', stdout);
        } else {
            fprintf(stderr, "busctl: request on '%s' failed: %s\n", s->name,
                    rc == -ENOENT ? "no responder" : strerror(-rc));
        }
        rc = rc == 0 ? 0 : rc == -ETIMEDOUT ? 3 : rc == -ENOENT ? 4 : 1;
    }
    cb_nats_free(n);
    cb_metrics_free(m);
    cb_buf_release(&msg);
    cb_buf_release(&reply);
    return rc;
}

static int validate(void)
{
    cb_proto_validate_fn fn = NULL;
    const char *what = NULL;
    cb_buf_t msg;
    int rc;

    if (opts.topic[0]) {
        const cb_proto_topic_t *t = cb_proto_topic_find(opts.topic);
        if (t && t->validate) {
            fn = t->validate;
            what = t->message;
        }
    } else if (opts.subject[0]) {
        const cb_proto_subject_t *s = cb_proto_subject_find(opts.subject);
        if (s) {
            fn = opts.reply ? s->validate_reply : s->validate_request;
            what = opts.reply ? s->reply : s->request;
        }
    }
    if (!fn) {
        fprintf(stderr, "busctl: validate needs a known --topic or --subject\n");
        return 2;
    }
    cb_buf_init(&msg, STDIN_MAX);
    rc = read_stdin(&msg) ? 2 : check_message(fn, &msg, what);
    if (rc == 0)
        printf("busctl: valid %s\n", what);
    cb_buf_release(&msg);
    return rc;
}

int main(int argc, char **argv)
{
    cb_config_t *c = NULL;
    cb_config_action_t action;
    const char *cmd, *sub = "";
    char err[512];
    int skip, rc;

    cb_log_init("busctl", CB_LOG_WARN);
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    cmd = argv[1];
    skip = 1;
    if (strcmp(cmd, "topics") == 0) {
        sub = argc > 2 ? argv[2] : "";
        skip = 2;
    }
    if (cb_config_new("busctl", "castbus bus tool: topics, messages and requests.", &c) ||
        cb_config_add(c, "busctl", busctl_keys, &opts) ||
        cb_config_add(c, "kafka", cb_kafka_config_keys, &kafka_cfg) ||
        cb_config_add(c, "nats", cb_nats_config_keys, &nats_cfg)) {
        fprintf(stderr, "busctl: out of memory\n");
        return 1;
    }
    rc = cb_config_load(c, argc - skip, argv + skip, &action, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "busctl: %s\n", err);
        cb_config_free(c);
        return 2;
    }
    if (action == CB_CONFIG_ACTION_HELP) {
        usage(stdout);
        cb_config_print_help(c, stdout);
        cb_config_free(c);
        return 0;
    }
    if (strcmp(cmd, "topics") == 0 && strcmp(sub, "ensure") == 0)
        rc = topics_ensure();
    else if (strcmp(cmd, "topics") == 0 && strcmp(sub, "list") == 0)
        rc = topics_list();
    else if (strcmp(cmd, "produce") == 0 && opts.topic[0])
        rc = produce();
    else if (strcmp(cmd, "request") == 0 && opts.subject[0])
        rc = request();
    else if (strcmp(cmd, "validate") == 0)
        rc = validate();
    else {
        usage(stderr);
        rc = 2;
    }
    cb_config_free(c);
    return rc;
}
