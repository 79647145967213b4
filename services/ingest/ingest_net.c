/*
 * ingest_net.c - RTMP/RTMPS listeners on an epoll loop; see ingest_net.h.
 *
 * DESIGN
 * The loop thread owns the connections (a list for timeouts, a hash by id
 * for messages from other threads). Other threads talk to it through a
 * mutex-guarded command list and an eventfd: authorization results and
 * kicks carry the connection id, never a pointer, so a command for a
 * connection that is gone is simply dropped.
 *
 * Reads go straight from the socket buffer into the RTMP session
 * (ingest_rtmp_input parses in place). Replies are few and small; a
 * connection whose replies cannot be written waits for EPOLLOUT.
 */
#include "ingest_net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "defs.h"
#include "log.h"

#include "ingest_amf0.h"
#include "ingest_flv.h"
#include "ingest_rtmp.h"
#include "ingest_store.h"

#define READ_CHUNK   65536
#define CONN_BUCKETS 1024
#define RL_SLOTS     1024
#define TAG_LISTENER 1
#define TAG_RTMPS    2
#define TAG_EVENT    3

typedef struct conn conn_t;

struct conn {
    ingest_net_t *net; /* immutable: the kick op reads it from other threads */
    uint64_t id;       /* immutable */
    int fd;
    SSL *ssl;
    bool tls_ready;
    ingest_rtmp_t *rtmp;
    char ip[64];
    char peer[80];
    const char *protocol;
    int64_t created_us, last_rx_us;
    bool auth_pending;
    bool backup;
    ingest_publisher_t *pub;
    bool want_out;
    bool closed;
    conn_t *next, *prev; /* all connections */
    conn_t *hnext;       /* id hash chain */
};

typedef enum cmd_type { CMD_AUTH, CMD_KICK } cmd_type_t;

typedef struct cmd {
    struct cmd *next;
    cmd_type_t type;
    uint64_t conn_id;
    int rc;
    ingest_stream_info_t info;
    ingest_cursor_t cursor;
    char why[200];
} cmd_t;

typedef struct rl_slot {
    char ip[64];
    int64_t window_start_us;
    int failures;
} rl_slot_t;

struct ingest_ratelimit {
    pthread_mutex_t lock;
    rl_slot_t slots[RL_SLOTS];
    int64_t max;
    int64_t window_us;
    cb_metric_t *m_refused;
};

struct ingest_net {
    ingest_net_config_t cfg;
    ingest_hub_t *hub;
    ingest_auth_fn auth;
    void *auth_arg;
    int ep, evfd, lfd, sfd;
    int rtmp_port, rtmps_port;
    SSL_CTX *tls;
    pthread_t thread;
    bool started;
    volatile bool stopping;
    pthread_mutex_t lock; /* cmds */
    cmd_t *cmds, *cmds_tail;
    conn_t *conns;
    conn_t *by_id[CONN_BUCKETS];
    size_t nconns;
    uint64_t next_id;
    ingest_ratelimit_t rl;
    uint8_t rbuf[READ_CHUNK]; /* the loop thread's read buffer */
    cb_metric_t *m_conns, *m_bytes, *m_closed, *m_auth;
    uint64_t rx_bytes[2]; /* rtmp, rtmps: received since the metric was updated */
    conn_t *dead;         /* closed this round, freed at its end */
    int64_t now_us;       /* time of the current round of events */
};

static const ingest_publisher_ops_t publisher_ops;

/* ---- rate limiting of failed keys, per address ---- */

int ingest_ratelimit_check(ingest_ratelimit_t *rl, const char *ip, char *why, size_t whylen)
{
    int64_t now = cb_clock_mono_us();
    int rc = 0;
    size_t i;

    pthread_mutex_lock(&rl->lock);
    for (i = 0; i < RL_SLOTS; i++) {
        rl_slot_t *s = &rl->slots[i];
        if (strcmp(s->ip, ip) != 0)
            continue;
        if (now - s->window_start_us < rl->window_us && s->failures >= rl->max) {
            snprintf(why, whylen,
                     "too many wrong stream keys from %s: refused for %lld more seconds", ip,
                     (long long) ((rl->window_us - (now - s->window_start_us)) / 1000000 + 1));
            rc = -EBUSY;
        }
        break;
    }
    pthread_mutex_unlock(&rl->lock);
    if (rc)
        cb_metric_add(rl->m_refused, NULL, 1);
    return rc;
}

void ingest_ratelimit_fail(ingest_ratelimit_t *rl, const char *ip)
{
    int64_t now = cb_clock_mono_us();
    rl_slot_t *slot = NULL, *oldest = &rl->slots[0];
    size_t i;

    pthread_mutex_lock(&rl->lock);
    for (i = 0; i < RL_SLOTS; i++) {
        rl_slot_t *s = &rl->slots[i];
        if (strcmp(s->ip, ip) == 0) {
            slot = s;
            break;
        }
        if (s->window_start_us < oldest->window_start_us)
            oldest = s;
    }
    if (!slot) {
        /* the slot least recently opened makes room: bounded memory */
        slot = oldest;
        snprintf(slot->ip, sizeof(slot->ip), "%s", ip);
        slot->failures = 0;
        slot->window_start_us = now;
    }
    if (now - slot->window_start_us >= rl->window_us) {
        slot->window_start_us = now;
        slot->failures = 0;
    }
    slot->failures++;
    pthread_mutex_unlock(&rl->lock);
}

ingest_ratelimit_t *ingest_net_ratelimit(ingest_net_t *n)
{
    return &n->rl;
}

/* ---- commands from other threads ---- */

static void post(ingest_net_t *n, cmd_t *c)
{
    uint64_t one = 1;
    ssize_t w;

    pthread_mutex_lock(&n->lock);
    if (n->cmds_tail)
        n->cmds_tail->next = c;
    else
        n->cmds = c;
    n->cmds_tail = c;
    pthread_mutex_unlock(&n->lock);
    w = write(n->evfd, &one, sizeof(one));
    (void) w; /* a full eventfd counter already means "wake up" */
}

void ingest_net_auth_result(ingest_net_t *n, uint64_t conn_id, int rc,
                            const ingest_stream_info_t *info, const ingest_cursor_t *cursor,
                            const char *why)
{
    cmd_t *c = calloc(1, sizeof(*c));

    if (!c)
        return; /* the connection times out waiting: it is closed, not left hanging */
    c->type = CMD_AUTH;
    c->conn_id = conn_id;
    c->rc = rc;
    if (info)
        c->info = *info;
    if (cursor)
        c->cursor = *cursor;
    snprintf(c->why, sizeof(c->why), "%s", why ? why : "");
    post(n, c);
}

static void kick(void *connp, const char *why)
{
    conn_t *conn = connp;
    cmd_t *c = calloc(1, sizeof(*c));

    if (!c)
        return;
    c->type = CMD_KICK;
    c->conn_id = conn->id;
    snprintf(c->why, sizeof(c->why), "%s", why ? why : "kicked");
    post(conn->net, c);
}

static const ingest_publisher_ops_t publisher_ops = { .kick = kick };

/* ---- connections ---- */

static conn_t *find_conn(ingest_net_t *n, uint64_t id)
{
    conn_t *c;

    for (c = n->by_id[id % CONN_BUCKETS]; c; c = c->hnext) {
        if (c->id == id)
            return c;
    }
    return NULL;
}

static void close_conn(ingest_net_t *n, conn_t *c, const char *reason)
{
    conn_t **pp;

    if (c->closed)
        return;
    c->closed = true;
    if (c->pub) {
        ingest_hub_detach(c->pub, reason);
        c->pub = NULL;
    }
    for (pp = &n->by_id[c->id % CONN_BUCKETS]; *pp; pp = &(*pp)->hnext) {
        if (*pp == c) {
            *pp = c->hnext;
            break;
        }
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        n->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    n->nconns--;
    epoll_ctl(n->ep, EPOLL_CTL_DEL, c->fd, NULL);
    if (c->ssl) {
        SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
    }
    close(c->fd);
    ingest_rtmp_free(c->rtmp);
    cb_metric_add(n->m_conns, (const char *[]){ c->protocol }, -1);
    cb_metric_add(n->m_closed, (const char *[]){ reason }, 1);
    cb_log_debug("%s connection from %s closed: %s", c->protocol, c->peer, reason);
    /* freed after this round of events: a later event of the round may still name it */
    c->next = n->dead;
    n->dead = c;
}

static void free_dead(ingest_net_t *n)
{
    while (n->dead) {
        conn_t *c = n->dead;
        n->dead = c->next;
        free(c);
    }
}

/* Write what the session has to say; arm EPOLLOUT if the socket is full. */
static int flush(ingest_net_t *n, conn_t *c)
{
    for (;;) {
        size_t len;
        const uint8_t *p = ingest_rtmp_output(c->rtmp, &len);
        ssize_t w;

        if (len == 0)
            break;
        if (c->ssl) {
            int r = SSL_write(c->ssl, p, (int) CB_MIN(len, (size_t) 1 << 30));
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
                    goto wait;
                return -EIO;
            }
            w = r;
        } else {
            w = send(c->fd, p, len, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    goto wait;
                if (errno == EINTR)
                    continue;
                return -errno;
            }
        }
        ingest_rtmp_output_consume(c->rtmp, (size_t) w);
    }
    if (c->want_out) {
        struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.ptr = c };
        c->want_out = false;
        epoll_ctl(n->ep, EPOLL_CTL_MOD, c->fd, &ev);
    }
    return ingest_rtmp_state(c->rtmp) == RTMP_STATE_CLOSING ? 1 : 0;
wait:
    if (!c->want_out) {
        struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                  .data.ptr = c };
        c->want_out = true;
        epoll_ctl(n->ep, EPOLL_CTL_MOD, c->fd, &ev);
    }
    return 0;
}

/* ---- RTMP session callbacks (loop thread) ---- */

static int on_connect(void *arg, const char *app, const char *tc_url, char *why, size_t whylen)
{
    conn_t *c = arg;
    size_t n = strcspn(app, "?/");

    (void) tc_url;
    if (n == 4 && strncmp(app, "live", 4) == 0)
        return 0;
    snprintf(why, whylen, "unknown application '%.64s': publish to rtmp://<host>/live/<stream key>",
             app);
    cb_log_info("rtmp %s: refused application '%.64s'", c->peer, app);
    return -ENOENT;
}

static int on_publish(void *arg, const char *name, char *code, size_t codelen, char *why,
                      size_t whylen)
{
    conn_t *c = arg;
    ingest_net_t *n = c->net;
    char key[INGEST_KEY_MAX];
    bool backup;

    if (ingest_parse_publish_name(name, key, &backup)) {
        snprintf(code, codelen, "NetStream.Publish.BadName");
        snprintf(why, whylen, "not a stream key");
        cb_log_warn("%s %s: publish refused (NetStream.Publish.BadName): not a stream key",
                    c->protocol, c->peer);
        cb_metric_add(n->m_auth, (const char *[]){ "malformed" }, 1);
        ingest_ratelimit_fail(&n->rl, c->ip);
        return -EINVAL;
    }
    if (ingest_ratelimit_check(&n->rl, c->ip, why, whylen)) {
        snprintf(code, codelen, "NetStream.Publish.BadName");
        cb_log_warn("%s %s: publish refused (NetStream.Publish.BadName): %s", c->protocol, c->peer,
                    why);
        cb_metric_add(n->m_auth, (const char *[]){ "rate_limited" }, 1);
        return -EBUSY;
    }
    c->backup = backup;
    c->auth_pending = true;
    n->auth(n->auth_arg, n, c->id, key, c->peer);
    return 1; /* answered by ingest_net_auth_result() */
}

static void on_unpublish(void *arg)
{
    conn_t *c = arg;

    if (c->pub) {
        ingest_hub_detach(c->pub, "the publisher stopped");
        c->pub = NULL;
    }
}

static int on_media(void *arg, int type, uint32_t ts, const uint8_t *data, size_t len)
{
    conn_t *c = arg;
    ingest_media_t m;
    ingest_frame_t f;
    char why[256];
    int rc;

    if (!c->pub)
        return 0;
    rc = type == RTMP_MSG_VIDEO ? ingest_flv_parse_video(data, len, &m, why, sizeof(why))
                                : ingest_flv_parse_audio(data, len, &m, why, sizeof(why));
    if (rc == 0 && (m.skip || m.end_of_sequence))
        return 0;
    if (rc == 0) {
        f.kind = m.kind;
        f.codec = m.codec;
        f.config = m.config;
        f.keyframe = m.keyframe;
        f.dts = ts;
        f.cts = m.cts_ms;
        f.data = m.data;
        f.len = m.len;
        rc = ingest_publisher_push(c->pub, &f, why, sizeof(why));
    }
    if (rc) {
        cb_log_warn("%s %s: publish of stream ended: %s", c->protocol, c->peer, why);
        ingest_rtmp_end(c->rtmp, "error", "NetStream.Publish.Failed", why);
    }
    return 0;
}

static void on_metadata(void *arg, const ingest_amf0_t *meta)
{
    conn_t *c = arg;

    if (!c->pub)
        return;
    ingest_publisher_hints(c->pub, (int) ingest_amf0_get_number(meta, "width", 0),
                           (int) ingest_amf0_get_number(meta, "height", 0),
                           ingest_amf0_get_number(meta, "framerate", 0));
}

static const ingest_rtmp_callbacks_t rtmp_callbacks = {
    .on_connect = on_connect,
    .on_publish = on_publish,
    .on_unpublish = on_unpublish,
    .on_media = on_media,
    .on_metadata = on_metadata,
};

/* ---- loop ---- */

static void handle_cmd(ingest_net_t *n, cmd_t *cmd)
{
    conn_t *c = find_conn(n, cmd->conn_id);
    char why[256];
    int rc;

    if (!c)
        return;
    if (cmd->type == CMD_KICK) {
        cb_log_info("%s %s: kicked: %s", c->protocol, c->peer, cmd->why);
        ingest_rtmp_end(c->rtmp, "error", "NetConnection.Connect.Closed", cmd->why);
        if (c->pub) {
            ingest_hub_detach(c->pub, cmd->why);
            c->pub = NULL;
        }
    } else if (c->auth_pending) {
        c->auth_pending = false;
        if (cmd->rc) {
            if (cmd->rc == -EACCES) {
                ingest_ratelimit_fail(&n->rl, c->ip);
                cb_metric_add(n->m_auth, (const char *[]){ "bad_key" }, 1);
                cb_log_warn(
                    "%s %s: publish refused (NetStream.Publish.BadName): wrong stream key: %s",
                    c->protocol, c->peer, cmd->why);
            } else {
                cb_metric_add(n->m_auth, (const char *[]){ "unavailable" }, 1);
                cb_log_error("%s %s: cannot check the stream key: %s", c->protocol, c->peer,
                             cmd->why);
            }
            ingest_rtmp_publish_result(c->rtmp,
                                       cmd->rc == -EACCES ? "NetStream.Publish.BadName"
                                                          : "NetStream.Publish.Failed",
                                       cmd->rc == -EACCES ? "wrong stream key" : cmd->why);
        } else {
            rc =
                ingest_hub_attach(n->hub, &cmd->info, &cmd->cursor,
                                  c->backup ? INGEST_ROLE_BACKUP : INGEST_ROLE_PRIMARY, c->protocol,
                                  c->peer, 1000, 32, &publisher_ops, c, &c->pub, why, sizeof(why));
            if (rc) {
                cb_log_warn("%s %s: publish refused (NetStream.Publish.BadName): %s", c->protocol,
                            c->peer, why);
                ingest_rtmp_publish_result(c->rtmp, "NetStream.Publish.BadName", why);
            } else {
                cb_metric_add(n->m_auth, (const char *[]){ "ok" }, 1);
                ingest_rtmp_publish_result(c->rtmp, NULL, NULL);
            }
        }
    }
    if (flush(n, c) != 0)
        close_conn(n, c, cmd->type == CMD_KICK ? "kicked" : "refused");
}

static void drain_cmds(ingest_net_t *n)
{
    uint64_t v;
    cmd_t *list;
    ssize_t r = read(n->evfd, &v, sizeof(v));

    (void) r;
    pthread_mutex_lock(&n->lock);
    list = n->cmds;
    n->cmds = n->cmds_tail = NULL;
    pthread_mutex_unlock(&n->lock);
    while (list) {
        cmd_t *next = list->next;
        handle_cmd(n, list);
        free(list);
        list = next;
    }
}

static void accept_all(ingest_net_t *n, int lfd, bool tls)
{
    for (;;) {
        struct sockaddr_storage sa;
        socklen_t salen = sizeof(sa);
        int fd = accept4(lfd, (struct sockaddr *) &sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        struct epoll_event ev;
        char host[64] = "?", port[16] = "?";
        conn_t *c;
        int one = 1;
        ingest_rtmp_limits_t lim = { .max_message_bytes = (size_t) n->cfg.max_message_bytes,
                                     .out_chunk_size = 4096 };

        if (fd < 0)
            return; /* EAGAIN, or a transient error: epoll tells us again */
        getnameinfo((struct sockaddr *) &sa, salen, host, sizeof(host), port, sizeof(port),
                    NI_NUMERICHOST | NI_NUMERICSERV);
        if ((int64_t) n->nconns >= n->cfg.max_connections || n->stopping) {
            cb_metric_add(n->m_closed, (const char *[]){ "too_many_connections" }, 1);
            cb_log_warn("refusing a connection from %s: %zu connections already", host, n->nconns);
            close(fd);
            continue;
        }
        c = calloc(1, sizeof(*c));
        if (!c || ingest_rtmp_new(&rtmp_callbacks, c, &lim, &c->rtmp)) {
            free(c);
            close(fd);
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c->net = n;
        c->id = ++n->next_id;
        c->fd = fd;
        c->protocol = tls ? "rtmps" : "rtmp";
        snprintf(c->ip, sizeof(c->ip), "%s", host);
        snprintf(c->peer, sizeof(c->peer), "%s:%s", host, port);
        c->created_us = c->last_rx_us = cb_clock_mono_us();
        if (tls) {
            c->ssl = SSL_new(n->tls);
            if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
                ingest_rtmp_free(c->rtmp);
                SSL_free(c->ssl);
                free(c);
                close(fd);
                continue;
            }
            SSL_set_accept_state(c->ssl);
        }
        c->next = n->conns;
        if (n->conns)
            n->conns->prev = c;
        n->conns = c;
        c->hnext = n->by_id[c->id % CONN_BUCKETS];
        n->by_id[c->id % CONN_BUCKETS] = c;
        n->nconns++;
        cb_metric_add(n->m_conns, (const char *[]){ c->protocol }, 1);
        ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
        ev.data.ptr = c;
        epoll_ctl(n->ep, EPOLL_CTL_ADD, fd, &ev);
    }
}

/*
 * Read what the socket holds. Edge-triggered, so until it is empty; a short
 * read already says so (the next byte raises a new edge), which saves the
 * recv() that would only answer EAGAIN - unless the peer also hung up, which
 * only reading to the end tells.
 */
static void read_conn(ingest_net_t *n, conn_t *c, uint32_t events)
{
    uint8_t *buf = n->rbuf;
    const char *why = NULL;
    uint64_t got = 0;
    bool hangup = events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR);
    int rc;

    for (;;) {
        ssize_t r;

        if (c->ssl) {
            int s = SSL_read(c->ssl, buf, READ_CHUNK);
            if (s <= 0) {
                int e = SSL_get_error(c->ssl, s);
                if (e == SSL_ERROR_WANT_READ)
                    break;
                if (e == SSL_ERROR_WANT_WRITE) {
                    flush(n, c);
                    break;
                }
                why = e == SSL_ERROR_ZERO_RETURN ? "peer closed" : "TLS error";
                break;
            }
            r = s;
        } else {
            r = recv(c->fd, buf, READ_CHUNK, 0);
            if (r < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    break;
                if (errno == EINTR)
                    continue;
                why = "read error";
                break;
            }
            if (r == 0) {
                why = "peer closed";
                break;
            }
        }
        got += (uint64_t) r;
        /* callbacks may end the session, never free the connection */
        rc = ingest_rtmp_input(c->rtmp, buf, (size_t) r);
        if (rc < 0) {
            cb_log_warn("%s %s: protocol error: %s", c->protocol, c->peer,
                        ingest_rtmp_error(c->rtmp));
            why = "protocol error";
            break;
        }
        if (!c->ssl && r < READ_CHUNK && !hangup)
            break; /* drained */
    }
    if (got) {
        c->last_rx_us = n->now_us;
        n->rx_bytes[c->ssl ? 1 : 0] += got; /* to the metric once a second */
    }
    if (!why && flush(n, c) != 0)
        why = "session ended";
    if (why)
        close_conn(n, c, why);
}

static void flush_rx_metric(ingest_net_t *n)
{
    if (n->rx_bytes[0])
        cb_metric_add(n->m_bytes, (const char *[]){ "rtmp" }, (double) n->rx_bytes[0]);
    if (n->rx_bytes[1])
        cb_metric_add(n->m_bytes, (const char *[]){ "rtmps" }, (double) n->rx_bytes[1]);
    n->rx_bytes[0] = n->rx_bytes[1] = 0;
}

static void check_timeouts(ingest_net_t *n)
{
    int64_t now = cb_clock_mono_us();
    conn_t *c = n->conns, *next;

    for (; c; c = next) {
        next = c->next;
        if (ingest_rtmp_state(c->rtmp) < RTMP_STATE_CONNECTED &&
            now - c->created_us > n->cfg.handshake_timeout_ms * 1000)
            close_conn(n, c, "handshake timeout");
        else if (now - c->last_rx_us > n->cfg.idle_timeout_ms * 1000)
            close_conn(n, c, "idle timeout");
        else if (c->auth_pending && now - c->last_rx_us > 30 * 1000000LL)
            close_conn(n, c, "key check timeout");
    }
}

static void *loop_main(void *arg)
{
    ingest_net_t *n = arg;
    struct epoll_event events[256];
    int64_t last_check = cb_clock_mono_us();
    int i, k;

    pthread_setname_np(pthread_self(), "ingest-net");
    while (!n->stopping) {
        k = epoll_wait(n->ep, events, CB_ARRAY_LEN(events), 500);
        n->now_us = cb_clock_mono_us();
        for (i = 0; i < k; i++) {
            void *p = events[i].data.ptr;
            if (p == &n->lfd) {
                accept_all(n, n->lfd, false);
            } else if (p == &n->sfd) {
                accept_all(n, n->sfd, true);
            } else if (p == &n->evfd) {
                drain_cmds(n);
            } else {
                conn_t *c = p;
                if (c->closed)
                    continue;
                if (events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                    read_conn(n, c, events[i].events);
                else if (events[i].events & EPOLLOUT && flush(n, c) != 0)
                    close_conn(n, c, "session ended");
            }
        }
        free_dead(n);
        if (n->now_us - last_check >= 1000000) {
            check_timeouts(n);
            flush_rx_metric(n);
            last_check = n->now_us;
        }
        /* busy: let a few ms of packets gather before the next wakeup */
        if (k > 0 && n->cfg.read_batch_us > 0) {
            int64_t spent = cb_clock_mono_us() - n->now_us;
            if (spent < n->cfg.read_batch_us) {
                struct timespec ts = { 0, (long) (n->cfg.read_batch_us - spent) * 1000 };
                nanosleep(&ts, NULL);
            }
        }
    }
    flush_rx_metric(n);
    drain_cmds(n);
    while (n->conns)
        close_conn(n, n->conns, "server stopping");
    free_dead(n);
    return NULL;
}

static int listen_on(const char *host, int port, int *out_port, char *err, size_t errlen)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC,
                              .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICHOST };
    struct addrinfo *ai = NULL;
    struct sockaddr_storage sa;
    socklen_t salen = sizeof(sa);
    char ps[16];
    int fd, one = 1;

    snprintf(ps, sizeof(ps), "%d", port);
    if (getaddrinfo(host, ps, &hints, &ai) != 0 || !ai) {
        snprintf(err, errlen, "'%s' is not an address to listen on", host);
        return -EINVAL;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 1024)) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", host, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return -EADDRINUSE;
    }
    freeaddrinfo(ai);
    getsockname(fd, (struct sockaddr *) &sa, &salen);
    *out_port = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *) &sa)->sin6_port
                                               : ((struct sockaddr_in *) &sa)->sin_port);
    return fd;
}

int ingest_net_new(const ingest_net_config_t *cfg, ingest_hub_t *hub, cb_metrics_t *metrics,
                   ingest_auth_fn auth, void *auth_arg, ingest_net_t **out, char *err,
                   size_t errlen)
{
    ingest_net_t *n = calloc(1, sizeof(*n));

    if (!n)
        return -ENOMEM;
    n->cfg = *cfg;
    n->hub = hub;
    n->auth = auth;
    n->auth_arg = auth_arg;
    n->lfd = n->sfd = n->ep = n->evfd = -1;
    pthread_mutex_init(&n->lock, NULL);
    pthread_mutex_init(&n->rl.lock, NULL);
    n->rl.max = cfg->auth_failures_max;
    n->rl.window_us = cfg->auth_failure_window_ms * 1000;
    if (cfg->rtmps_port > 0 && cfg->tls_cert && *cfg->tls_cert) {
        n->tls = SSL_CTX_new(TLS_server_method());
        if (!n->tls || SSL_CTX_set_min_proto_version(n->tls, TLS1_2_VERSION) != 1 ||
            SSL_CTX_use_certificate_chain_file(n->tls, cfg->tls_cert) != 1 ||
            SSL_CTX_use_PrivateKey_file(n->tls, cfg->tls_key, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(n->tls) != 1) {
            char e[160];
            ERR_error_string_n(ERR_get_error(), e, sizeof(e));
            snprintf(err, errlen, "CASTBUS_INGEST_TLS_CERT/KEY ('%s', '%s'): %s", cfg->tls_cert,
                     cfg->tls_key ? cfg->tls_key : "", e);
            ingest_net_free(n);
            return -EINVAL;
        }
    }
    n->m_conns = cb_metrics_gauge(metrics, "castbus_ingest_connections",
                                  "Open publisher connections, by protocol.",
                                  (const char *[]){ "protocol", NULL });
    n->m_bytes = cb_metrics_counter(metrics, "castbus_ingest_received_bytes_total",
                                    "Bytes received from publishers, by protocol.",
                                    (const char *[]){ "protocol", NULL });
    n->m_closed = cb_metrics_counter(metrics, "castbus_ingest_connections_closed_total",
                                     "Publisher connections closed, by reason.",
                                     (const char *[]){ "reason", NULL });
    n->m_auth = cb_metrics_counter(metrics, "castbus_ingest_publish_attempts_total",
                                   "Publish attempts, by outcome (ok, bad_key, rate_limited, "
                                   "malformed, unavailable).",
                                   (const char *[]){ "result", NULL });
    n->rl.m_refused = cb_metrics_counter(metrics, "castbus_ingest_rate_limited_total",
                                         "Publish attempts refused because their address sent "
                                         "too many wrong keys.",
                                         NULL);
    *out = n;
    return 0;
}

int ingest_net_start(ingest_net_t *n, char *err, size_t errlen)
{
    struct epoll_event ev;
    int rc;

    n->ep = epoll_create1(EPOLL_CLOEXEC);
    n->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (n->ep < 0 || n->evfd < 0) {
        snprintf(err, errlen, "epoll/eventfd: %s", strerror(errno));
        return -errno;
    }
    ev.events = EPOLLIN;
    ev.data.ptr = &n->evfd;
    epoll_ctl(n->ep, EPOLL_CTL_ADD, n->evfd, &ev);
    if (n->cfg.rtmp_port > 0) {
        n->lfd = listen_on(n->cfg.host, (int) n->cfg.rtmp_port, &n->rtmp_port, err, errlen);
        if (n->lfd < 0)
            return n->lfd;
        ev.events = EPOLLIN | EPOLLET;
        ev.data.ptr = &n->lfd;
        epoll_ctl(n->ep, EPOLL_CTL_ADD, n->lfd, &ev);
    }
    if (n->tls) {
        n->sfd = listen_on(n->cfg.host, (int) n->cfg.rtmps_port, &n->rtmps_port, err, errlen);
        if (n->sfd < 0)
            return n->sfd;
        ev.events = EPOLLIN | EPOLLET;
        ev.data.ptr = &n->sfd;
        epoll_ctl(n->ep, EPOLL_CTL_ADD, n->sfd, &ev);
    }
    rc = pthread_create(&n->thread, NULL, loop_main, n);
    if (rc) {
        snprintf(err, errlen, "cannot start the RTMP thread: %s", strerror(rc));
        return -rc;
    }
    n->started = true;
    cb_log_info("rtmp listening on %s:%d%s", n->cfg.host, n->rtmp_port,
                n->tls ? ", rtmps too" : " (rtmps off: no certificate)");
    if (n->tls)
        cb_log_info("rtmps listening on %s:%d", n->cfg.host, n->rtmps_port);
    return 0;
}

int ingest_net_rtmp_port(const ingest_net_t *n)
{
    return n->rtmp_port;
}

int ingest_net_rtmps_port(const ingest_net_t *n)
{
    return n->rtmps_port;
}

void ingest_net_stop(ingest_net_t *n)
{
    uint64_t one = 1;
    ssize_t w;

    if (!n->started)
        return;
    n->stopping = true;
    w = write(n->evfd, &one, sizeof(one));
    (void) w;
    pthread_join(n->thread, NULL);
    n->started = false;
}

void ingest_net_free(ingest_net_t *n)
{
    cmd_t *c;

    if (!n)
        return;
    ingest_net_stop(n);
    while ((c = n->cmds) != NULL) {
        n->cmds = c->next;
        free(c);
    }
    if (n->lfd >= 0)
        close(n->lfd);
    if (n->sfd >= 0)
        close(n->sfd);
    if (n->ep >= 0)
        close(n->ep);
    if (n->evfd >= 0)
        close(n->evfd);
    SSL_CTX_free(n->tls);
    pthread_mutex_destroy(&n->lock);
    pthread_mutex_destroy(&n->rl.lock);
    free(n);
}
