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
    if (s == NATS_OK) s = natsConnection_Connect(&nc, opts);
    if (s == NATS_OK) s = natsConnection_Subscribe(&sub, nc, argv[2], on_request, NULL);
    if (s == NATS_OK) s = natsConnection_FlushTimeout(nc, 2000);
    if (s != NATS_OK) {
        fprintf(stderr, "bare_responder: %s: %s\n", natsStatus_GetText(s), nats_GetLastError(NULL));
        return 1;
    }
    notify_ready();

    int sig;
    sigwait(&stop, &sig);

    natsSubscription_Destroy(sub);
    natsConnection_Destroy(nc);
    natsOptions_Destroy(opts);
    nats_Close();
    return 0;
}
