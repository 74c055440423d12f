// Request/reply load generator, fan-out timer and reconnect probe (nats.c).
//
//   health_bench [-n N] [-k K] [-w WARMUP] [-t SECONDS] URL SUBJECT
//     Closed loop: N measured requests (after WARMUP unmeasured ones), K in
//     flight at a time; each reply immediately triggers the next request on
//     its slot.
//     Prints {"requests","concurrency","elapsed_s","throughput","p50_us","p99_us"}.
//
//   health_bench -i INTERVAL_US [-n N] [-t SECONDS] URL SUBJECT
//     Paced: one request every INTERVAL_US, each waited for (1 s at most),
//     N in all; a low, steady rate at which the caller can read the
//     responder's CPU per request. Exit 1 if any went unanswered.
//     Prints {"requests","interval_us","answered","elapsed_s","p50_us","p99_us"}.
//
//   health_bench -f LEAVES [-r REPEATS] [-t SECONDS] URL SUBJECT
//     Fan-out: one request that LEAVES responders answer, the time from its
//     publish to the LEAVES-th reply; REPEATS times, 20 ms apart, each
//     waited for 2 s at most. Prints {"leaves","fanouts","completed",
//     "median_us","p90_us","max_us","short","missing"}: short fan-outs had
//     fewer replies in time, missing is the replies they lacked.
//
//   health_bench -p [-s SINCE_NS] [-t SECONDS] URL SUBJECT
//     Probe: connect (retrying) and request until SUBJECT answers. Prints
//     {"answered_ms"} counted from SINCE_NS (CLOCK_REALTIME ns), default now.
//
// Everything is bounded by -t (default 30 s); exit 1 if it runs out.
#include <nats/nats.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_K 1024

static int64_t now_ns(clockid_t clk) {
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what, natsStatus s) {
    fprintf(stderr, "health_bench: %s: %s %s\n", what, natsStatus_GetText(s), nats_GetLastError(NULL));
    exit(1);
}

// One wildcard inbox subscription; request i of slot k replies to <inbox>.k,
// so the reply callback knows which send time to subtract and which slot to
// refill, without a subscription per request.
struct bench {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    natsConnection *nc;
    const char *subject;
    char inbox[128];
    int warmup, total;      // total = warmup + measured
    int sent, done, failed; // guarded by mu
    int64_t sent_at[MAX_K];
    int64_t *lat;           // measured latencies, ns
    int64_t t0, t1;         // measured window, CLOCK_MONOTONIC ns
};

static natsStatus send_on(struct bench *b, int slot) {
    char reply[160];
    snprintf(reply, sizeof reply, "%s.%d", b->inbox, slot);
    return natsConnection_PublishRequest(b->nc, b->subject, reply, "", 0);
}

static void on_reply(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure) {
    (void)nc, (void)sub;
    struct bench *b = closure;
    int64_t t = now_ns(CLOCK_MONOTONIC);
    const char *dot = strrchr(natsMsg_GetSubject(msg), '.');
    int slot = dot ? atoi(dot + 1) : -1;
    bool no_responders = natsMsg_IsNoResponders(msg);
    natsMsg_Destroy(msg);

    pthread_mutex_lock(&b->mu);
    // More replies than requests (a second responder on the subject) would write past lat.
    if (no_responders || slot < 0 || slot >= MAX_K || b->done >= b->total) {
        b->failed = 1;
        pthread_cond_signal(&b->cv);
        pthread_mutex_unlock(&b->mu);
        return;
    }
    int i = b->done++;
    if (i >= b->warmup)
        b->lat[i - b->warmup] = t - b->sent_at[slot];
    if (b->done == b->warmup)
        b->t0 = t;
    if (b->done == b->total) {
        b->t1 = t;
        pthread_cond_signal(&b->cv);
    }
    bool more = b->sent < b->total;
    if (more) {
        b->sent++;
        b->sent_at[slot] = now_ns(CLOCK_MONOTONIC);
    }
    pthread_mutex_unlock(&b->mu);
    if (more && send_on(b, slot) != NATS_OK) {
        pthread_mutex_lock(&b->mu);
        b->failed = 1;
        pthread_cond_signal(&b->cv);
        pthread_mutex_unlock(&b->mu);
    }
}

static int cmp64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

// Nearest-rank percentile of a sorted array.
static double pct_us(const int64_t *v, int n, int p) {
    int rank = (int)(((int64_t)p * n + 99) / 100);
    return (double)v[rank > 0 ? rank - 1 : 0] / 1000.0;
}

static int run_bench(natsConnection *nc, const char *subject, int n, int k, int warmup, int max_s) {
    struct bench b = {.nc = nc, .subject = subject, .warmup = warmup, .total = warmup + n};
    pthread_mutex_init(&b.mu, NULL);
    pthread_cond_init(&b.cv, NULL);
    b.lat = calloc((size_t)n, sizeof *b.lat);
    natsInbox *inbox = NULL;
    natsSubscription *sub = NULL;
    natsStatus s = natsInbox_Create(&inbox);
    if (s != NATS_OK) die("inbox", s);
    snprintf(b.inbox, sizeof b.inbox, "%s", (const char *)inbox);
    char wildcard[160];
    snprintf(wildcard, sizeof wildcard, "%s.*", b.inbox);
    if ((s = natsConnection_Subscribe(&sub, nc, wildcard, on_reply, &b)) != NATS_OK) die("subscribe", s);
    if ((s = natsConnection_FlushTimeout(nc, 2000)) != NATS_OK) die("flush", s);

    if (k > b.total) k = b.total;
    pthread_mutex_lock(&b.mu);
    if (warmup == 0)
        b.t0 = now_ns(CLOCK_MONOTONIC);
    for (int slot = 0; slot < k; slot++) {
        b.sent++;
        b.sent_at[slot] = now_ns(CLOCK_MONOTONIC);
        if ((s = send_on(&b, slot)) != NATS_OK) die("publish", s);
    }
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += max_s;
    int rc = 0;
    while (b.done < b.total && !b.failed && rc == 0)
        rc = pthread_cond_timedwait(&b.cv, &b.mu, &deadline);
    int done = b.done, failed = b.failed;
    pthread_mutex_unlock(&b.mu);

    // Stop callbacks before reading results or freeing what they touch.
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    natsInbox_Destroy(inbox);
    if (failed) {
        fprintf(stderr, "health_bench: no responder on %s (or a bad reply, or more replies than requests)\n", subject);
        return 1;
    }
    if (done < b.total) {
        fprintf(stderr, "health_bench: only %d of %d replies within %d s\n", done, b.total, max_s);
        return 1;
    }
    double elapsed = (double)(b.t1 - b.t0) / 1e9;
    qsort(b.lat, (size_t)n, sizeof *b.lat, cmp64);
    printf("{\"requests\":%d,\"concurrency\":%d,\"elapsed_s\":%.6f,\"throughput\":%.1f,"
           "\"p50_us\":%.1f,\"p99_us\":%.1f}\n",
           n, k, elapsed, n / elapsed, pct_us(b.lat, n, 50), pct_us(b.lat, n, 99));
    free(b.lat);
    return 0;
}

static int run_paced(natsConnection *nc, const char *subject, int n, int interval_us, int max_s) {
    int64_t *lat = calloc((size_t)n, sizeof *lat);
    int64_t t0 = now_ns(CLOCK_MONOTONIC), deadline = t0 + (int64_t)max_s * 1000000000;
    int answered = 0, sent = 0;
    // An absolute schedule: a late reply shortens the next pause, not the rate.
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (; sent < n && now_ns(CLOCK_MONOTONIC) < deadline; sent++) {
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
        natsMsg *reply = NULL;
        int64_t t = now_ns(CLOCK_MONOTONIC);
        if (natsConnection_Request(&reply, nc, subject, "", 0, 1000) == NATS_OK)
            lat[answered++] = now_ns(CLOCK_MONOTONIC) - t;
        natsMsg_Destroy(reply);
        next.tv_nsec += (long)interval_us * 1000;
        next.tv_sec += next.tv_nsec / 1000000000;
        next.tv_nsec %= 1000000000;
    }
    double elapsed = (double)(now_ns(CLOCK_MONOTONIC) - t0) / 1e9;
    int rc = 0;
    if (answered < n) {
        fprintf(stderr, "health_bench: %d of %d requests answered (%d sent within %d s)\n", answered, n, sent, max_s);
        rc = 1;
    } else {
        qsort(lat, (size_t)n, sizeof *lat, cmp64);
        printf("{\"requests\":%d,\"interval_us\":%d,\"answered\":%d,\"elapsed_s\":%.6f,"
               "\"p50_us\":%.1f,\"p99_us\":%.1f}\n",
               n, interval_us, answered, elapsed, pct_us(lat, n, 50), pct_us(lat, n, 99));
    }
    free(lat);
    return rc;
}

// Fan-out i's replies go to <inbox>.i: a late reply to an earlier one is
// told apart and not counted.
struct fanout {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int leaves, current, replies; // guarded by mu
    int64_t last_at;              // the current fan-out's LEAVES-th reply, CLOCK_MONOTONIC ns
};

static void on_fanout_reply(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure) {
    (void)nc, (void)sub;
    struct fanout *f = closure;
    int64_t t = now_ns(CLOCK_MONOTONIC);
    const char *dot = strrchr(natsMsg_GetSubject(msg), '.');
    int index = dot ? atoi(dot + 1) : -1;
    bool counts = !natsMsg_IsNoResponders(msg);
    natsMsg_Destroy(msg);
    pthread_mutex_lock(&f->mu);
    if (counts && index == f->current && ++f->replies == f->leaves) {
        f->last_at = t;
        pthread_cond_signal(&f->cv);
    }
    pthread_mutex_unlock(&f->mu);
}

static int run_fanout(natsConnection *nc, const char *subject, int leaves, int repeats, int max_s) {
    struct fanout f = {.leaves = leaves, .current = -1};
    pthread_mutex_init(&f.mu, NULL);
    pthread_condattr_t monotonic;
    pthread_condattr_init(&monotonic);
    pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC); // waits on the clock that times the replies
    pthread_cond_init(&f.cv, &monotonic);
    int64_t *times = calloc((size_t)repeats, sizeof *times);
    natsInbox *inbox = NULL;
    natsSubscription *sub = NULL;
    natsStatus s = natsInbox_Create(&inbox);
    if (s != NATS_OK) die("inbox", s);
    char wildcard[160];
    snprintf(wildcard, sizeof wildcard, "%s.*", (const char *)inbox);
    if ((s = natsConnection_Subscribe(&sub, nc, wildcard, on_fanout_reply, &f)) != NATS_OK) die("subscribe", s);
    // Room for every reply of a fan-out: the default 65536 would do, but say so.
    if ((s = natsSubscription_SetPendingLimits(sub, leaves * 4 > 65536 ? leaves * 4 : 65536, -1)) != NATS_OK)
        die("pending limits", s);
    if ((s = natsConnection_FlushTimeout(nc, 2000)) != NATS_OK) die("flush", s);

    int64_t deadline = now_ns(CLOCK_MONOTONIC) + (int64_t)max_s * 1000000000;
    int fanouts = 0, completed = 0, short_ = 0, missing = 0;
    for (; fanouts < repeats && now_ns(CLOCK_MONOTONIC) < deadline; fanouts++) {
        if (fanouts > 0) usleep(20000); // the last fan-out's stragglers and wake-ups die down
        char reply[160];
        snprintf(reply, sizeof reply, "%s.%d", (const char *)inbox, fanouts);
        pthread_mutex_lock(&f.mu);
        f.current = fanouts;
        f.replies = 0;
        int64_t t0 = now_ns(CLOCK_MONOTONIC);
        if ((s = natsConnection_PublishRequest(nc, subject, reply, "", 0)) != NATS_OK) die("publish", s);
        int64_t until = t0 + 2000000000 < deadline ? t0 + 2000000000 : deadline;
        struct timespec wake = {.tv_sec = until / 1000000000, .tv_nsec = until % 1000000000};
        int rc = 0;
        while (f.replies < leaves && rc == 0)
            rc = pthread_cond_timedwait(&f.cv, &f.mu, &wake);
        if (f.replies >= leaves) {
            times[completed++] = f.last_at - t0;
        } else {
            short_++;
            missing += leaves - f.replies;
        }
        pthread_mutex_unlock(&f.mu);
    }
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    natsInbox_Destroy(inbox);
    if (completed == 0) {
        fprintf(stderr, "health_bench: no fan-out on %s had %d replies (%d tried)\n", subject, leaves, fanouts);
        free(times);
        return 1;
    }
    qsort(times, (size_t)completed, sizeof *times, cmp64);
    printf("{\"leaves\":%d,\"fanouts\":%d,\"completed\":%d,\"median_us\":%.1f,\"p90_us\":%.1f,"
           "\"max_us\":%.1f,\"short\":%d,\"missing\":%d}\n",
           leaves, fanouts, completed, pct_us(times, completed, 50), pct_us(times, completed, 90),
           (double)times[completed - 1] / 1000.0, short_, missing);
    free(times);
    return 0;
}

static int run_probe(natsOptions *opts, const char *subject, int64_t since, int max_s) {
    int64_t deadline = now_ns(CLOCK_MONOTONIC) + (int64_t)max_s * 1000000000;
    natsConnection *nc = NULL;
    natsMsg *reply = NULL;
    int attempts = 0;
    while (now_ns(CLOCK_MONOTONIC) < deadline) {
        if (nc == NULL && natsConnection_Connect(&nc, opts) != NATS_OK) {
            nc = NULL;
        } else if (nc != NULL) {
            attempts++;
            if (natsConnection_RequestString(&reply, nc, subject, "", 20) == NATS_OK) break;
        }
        usleep(5000); // also after "no responders", which comes back at once
    }
    if (reply == NULL) {
        fprintf(stderr, "health_bench: %s did not answer within %d s\n", subject, max_s);
        return 1;
    }
    printf("{\"answered_ms\":%.1f,\"attempts\":%d}\n", (double)(now_ns(CLOCK_REALTIME) - since) / 1e6, attempts);
    natsMsg_Destroy(reply);
    natsConnection_Destroy(nc);
    return 0;
}

int main(int argc, char **argv) {
    int n = 20000, k = 8, warmup = -1, max_s = 30, probe = 0, interval_us = 0, leaves = 0, repeats = 50, opt;
    int64_t since = now_ns(CLOCK_REALTIME);
    while ((opt = getopt(argc, argv, "n:k:w:t:ps:i:f:r:")) != -1) {
        switch (opt) {
        case 'n': n = atoi(optarg); break;
        case 'k': k = atoi(optarg); break;
        case 'w': warmup = atoi(optarg); break;
        case 't': max_s = atoi(optarg); break;
        case 'p': probe = 1; break;
        case 's': since = strtoll(optarg, NULL, 10); break;
        case 'i': interval_us = atoi(optarg); break;
        case 'f': leaves = atoi(optarg); break;
        case 'r': repeats = atoi(optarg); break;
        default: return 2;
        }
    }
    if (argc - optind != 2 || n < 1 || k < 1 || k > MAX_K || max_s < 1 || max_s > 600 || interval_us < 0 ||
        interval_us > 10000000 || leaves < 0 || leaves > 100000 || repeats < 1 || repeats > 100000 ||
        probe + (interval_us > 0) + (leaves > 0) > 1) {
        fprintf(stderr, "usage: health_bench [-n N>0] [-k 1..%d] [-w WARMUP] [-t 1..600] URL SUBJECT\n"
                        "       health_bench -i INTERVAL_US [-n N>0] [-t 1..600] URL SUBJECT\n"
                        "       health_bench -f LEAVES [-r REPEATS] [-t 1..600] URL SUBJECT\n"
                        "       health_bench -p [-s SINCE_NS] [-t 1..600] URL SUBJECT\n", MAX_K);
        return 2;
    }
    if (warmup < 0) warmup = n / 10 < 1000 ? n / 10 : 1000;
    const char *url = argv[optind], *subject = argv[optind + 1];

    natsOptions *opts = NULL;
    natsStatus s = natsOptions_Create(&opts);
    if (s == NATS_OK) s = natsOptions_SetURL(opts, url);
    if (s == NATS_OK) s = natsOptions_SetName(opts, "health_bench");
    if (s == NATS_OK) s = natsOptions_SetTimeout(opts, 500);
    // Send each request at once rather than via nats.c's flusher thread,
    // which adds ~1 ms per publish; the client must not be the bottleneck.
    if (s == NATS_OK) s = natsOptions_SetSendAsap(opts, true);
    if (s == NATS_OK) s = natsOptions_SetAllowReconnect(opts, false);
    if (s != NATS_OK) die("options", s);

    int rc;
    if (probe) {
        rc = run_probe(opts, subject, since, max_s);
    } else {
        natsConnection *nc = NULL;
        if ((s = natsConnection_Connect(&nc, opts)) != NATS_OK) die(url, s);
        if (interval_us > 0)
            rc = run_paced(nc, subject, n, interval_us, max_s);
        else if (leaves > 0)
            rc = run_fanout(nc, subject, leaves, repeats, max_s);
        else
            rc = run_bench(nc, subject, n, k, warmup, max_s);
        natsConnection_Destroy(nc);
    }
    natsOptions_Destroy(opts);
    nats_Close();
    return rc;
}
