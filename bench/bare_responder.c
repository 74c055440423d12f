// The baseline for the daemon's health endpoint: the least a nats.c program
// can do to answer requests on a subject with a fixed health-sized JSON.
//
//   bare_responder URL SUBJECT [REPLY_FILE]
//
// REPLY_FILE's bytes are the reply (bench/measure.py saves one of the
// daemon's health answers there, so both send exactly as many bytes);
// without it, a built-in one of about that size.
// Uses the same reconnect settings bench/run.sh gives the daemon, and sends
// READY=1 to $NOTIFY_SOCKET once subscribed and flushed, like the daemon, so
// both are measured the same way. Runs until SIGTERM or SIGINT.
//
// Built with -DSOCKET_LOOP (bare_responder_loop), it reads its socket through
// nats.c's external event loop on the main thread: a synchronous
// subscription emptied and answered after every read, the replies written
// there too, where nats.c's own model (bare's, and the daemon's) wakes a
// reader and a delivery thread for each request. It tells what that model
// is worth: the daemon tried it (branch socket-loop) and went back.
#include <nats/nats.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#ifdef SOCKET_LOOP
#include <stdatomic.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#endif

// About the size of the daemon's io.cim.leaf.v1.health reply.
static const char BUILTIN_REPLY[] =
    "{\"type\":\"io.cim.leaf.v1.health\",\"node\":\"bench\",\"time\":\"2025-01-01T00:00:00Z\","
    "\"version\":\"0.1.0\",\"status\":\"ok\",\"checks\":{\"nats\":{\"status\":\"ok\","
    "\"detail\":\"connected to nats://127.0.0.1:4222\"},\"dbus\":{\"status\":\"ok\","
    "\"detail\":\"disabled\"},\"systemd\":{\"status\":\"ok\",\"detail\":\"ready\"}},"
    "\"state\":\"connected\",\"uptime_s\":1,\"heartbeats_sent\":1,\"reconnects\":0}";

static const char *reply_data = BUILTIN_REPLY;
static int reply_len = (int)sizeof(BUILTIN_REPLY) - 1;

static void on_request(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure) {
    (void)sub, (void)closure;
    const char *reply = natsMsg_GetReply(msg);
    if (reply != NULL)
        natsConnection_Publish(nc, reply, reply_data, reply_len);
    natsMsg_Destroy(msg);
}

// The whole file as the reply; under 1 MiB, a NATS payload's default limit.
static int load_reply(const char *path) {
    static char buf[1 << 20];
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        return -1;
    }
    size_t len = fread(buf, 1, sizeof buf, f);
    int error = ferror(f) || !feof(f);
    fclose(f);
    if (error) {
        fprintf(stderr, "bare_responder: %s: unreadable or larger than %zu bytes\n", path, sizeof buf);
        return -1;
    }
    reply_data = buf;
    reply_len = (int)len;
    return 0;
}

// Minimal sd_notify(): one datagram to $NOTIFY_SOCKET ('@' = abstract name).
static void notify_ready(void) {
    const char *path = getenv("NOTIFY_SOCKET");
    if (path == NULL || path[0] == '\0')
        return;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    if (len >= sizeof(addr.sun_path))
        return;
    memcpy(addr.sun_path, path, len);
    if (addr.sun_path[0] == '@')
        addr.sun_path[0] = '\0';
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    sendto(fd, "READY=1", 7, 0, (struct sockaddr *)&addr,
           (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
    close(fd);
}

#ifdef SOCKET_LOOP
static int epoll_fd = -1, socket_fd = -1, kick_fd = -1;
static pthread_t loop_thread;
static atomic_bool write_wanted;
static _Atomic(natsSubscription *) subscription;
static const char *subject;

// nats.c's callbacks (its connection lock held): what epoll watches. A write
// asked for on the loop's own thread is done after the read that caused it.
static void watch(bool in, bool out) {
    struct epoll_event e = {.events = (in ? EPOLLIN : 0u) | (out ? EPOLLOUT : 0u), .data.fd = socket_fd};
    if (epoll_ctl(epoll_fd, EPOLL_CTL_MOD, socket_fd, &e) != 0)
        epoll_ctl(epoll_fd, EPOLL_CTL_ADD, socket_fd, &e);
}
static natsStatus on_attach(void **data, void *loop, natsConnection *nc, natsSock fd) {
    (void)loop, (void)nc;
    *data = NULL;
    socket_fd = fd;
    watch(true, false);
    return NATS_OK;
}
static natsStatus on_read(void *data, bool add) {
    (void)data;
    if (add)
        watch(true, atomic_load(&write_wanted));
    else
        epoll_ctl(epoll_fd, EPOLL_CTL_DEL, socket_fd, NULL);
    return NATS_OK;
}
static natsStatus on_write(void *data, bool add) {
    (void)data;
    atomic_store(&write_wanted, add);
    if (!add || !pthread_equal(pthread_self(), loop_thread))
        watch(true, add);
    return NATS_OK;
}
static natsStatus on_detach(void *data) {
    (void)data;
    return NATS_OK;
}

// Subscribes, waits for the server to confirm, READY=1; the loop meanwhile reads.
static void *subscribe(void *closure) {
    natsConnection *nc = closure;
    natsSubscription *sub = NULL;
    natsStatus s = natsConnection_SubscribeSync(&sub, nc, subject);
    if (s == NATS_OK) {
        atomic_store(&subscription, sub);
        eventfd_write(kick_fd, 1);  // a request that came before the store
        s = natsConnection_FlushTimeout(nc, 2000);
    }
    if (s != NATS_OK) {
        fprintf(stderr, "bare_responder: %s: %s\n", natsStatus_GetText(s), nats_GetLastError(NULL));
        exit(1);
    }
    notify_ready();
    return NULL;
}

static void answer_pending(natsConnection *nc) {
    natsSubscription *sub = atomic_load(&subscription);
    int pending = 0;
    if (sub == NULL || natsSubscription_GetPending(sub, &pending, NULL) != NATS_OK)
        return;
    natsMsg *msg = NULL;
    for (; pending > 0 && natsSubscription_NextMsg(&msg, sub, 0) == NATS_OK; pending--)
        on_request(nc, sub, msg, NULL);
}

// Until SIGTERM or SIGINT (`stop`, blocked).
static natsStatus serve(natsConnection *nc, const sigset_t *stop) {
    int signal_fd = signalfd(-1, stop, SFD_CLOEXEC);
    struct epoll_event e = {.events = EPOLLIN, .data.fd = signal_fd};
    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, signal_fd, &e);
    e.data.fd = kick_fd;
    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, kick_fd, &e);
    pthread_t subscriber;
    pthread_create(&subscriber, NULL, subscribe, nc);
    pthread_detach(subscriber);
    for (;;) {
        struct epoll_event events[3];
        int n = epoll_wait(epoll_fd, events, 3, -1);
        bool readable = false, kicked = false;
        for (int i = 0; i < n; i++) {
            if (events[i].data.fd == signal_fd)
                return NATS_OK;
            if (events[i].data.fd == kick_fd) {
                eventfd_t count;
                eventfd_read(kick_fd, &count);
                kicked = true;
            } else if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                readable = true;
            }
        }
        if (readable)
            natsConnection_ProcessReadEvent(nc);
        if (readable || kicked)
            answer_pending(nc);
        if (atomic_load(&write_wanted))  // only then: nats.c takes a send() of nothing for a closed socket
            natsConnection_ProcessWriteEvent(nc);
        if (atomic_load(&write_wanted))
            watch(true, true);  // the rest when the socket takes it
    }
}
#endif

int main(int argc, char **argv) {
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: %s URL SUBJECT [REPLY_FILE]\n", argv[0]);
        return 2;
    }
    if (argc == 4 && load_reply(argv[3]) != 0)
        return 1;
    // Block the stop signals before nats.c starts its threads, so only
    // sigwait() below receives them.
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    natsOptions *opts = NULL;
    natsConnection *nc = NULL;
    natsSubscription *sub = NULL;
    natsStatus s = natsOptions_Create(&opts);
    if (s == NATS_OK) s = natsOptions_SetURL(opts, argv[1]);
    if (s == NATS_OK) s = natsOptions_SetName(opts, "bare_responder");
    // Without it nats.c buffers the reply for its flusher thread, which
    // sleeps 1 ms per wake-up: every reply would be ~1 ms late.
    if (s == NATS_OK) s = natsOptions_SetSendAsap(opts, true);
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(opts, -1);
    if (s == NATS_OK) s = natsOptions_SetReconnectWait(opts, 250);
    if (s == NATS_OK) s = natsOptions_SetReconnectJitter(opts, 100, 100);
#ifdef SOCKET_LOOP
    epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    loop_thread = pthread_self();
    subject = argv[2];
    if (s == NATS_OK) s = natsOptions_SetEventLoop(opts, &epoll_fd, on_attach, on_read, on_write, on_detach);
    if (s == NATS_OK) s = natsConnection_Connect(&nc, opts);
    if (s == NATS_OK) s = serve(nc, &stop);
    sub = atomic_load(&subscription);
#else
    if (s == NATS_OK) s = natsConnection_Connect(&nc, opts);
    if (s == NATS_OK) s = natsConnection_Subscribe(&sub, nc, argv[2], on_request, NULL);
    if (s == NATS_OK) s = natsConnection_FlushTimeout(nc, 2000);
    if (s == NATS_OK) notify_ready();
#endif
    if (s != NATS_OK) {
        fprintf(stderr, "bare_responder: %s: %s\n", natsStatus_GetText(s), nats_GetLastError(NULL));
        return 1;
    }
#ifndef SOCKET_LOOP
    int sig;
    sigwait(&stop, &sig);
#endif

    natsSubscription_Destroy(sub);
    natsConnection_Destroy(nc);
    natsOptions_Destroy(opts);
    nats_Close();
    return 0;
}
