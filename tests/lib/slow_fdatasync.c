/* A slow disk for the event spool, preloaded into the real daemon
 * (LD_PRELOAD): every fdatasync of a file named events.spool first waits
 * CIM_TEST_FDATASYNC_MS milliseconds, then as long as the file
 * CIM_TEST_FDATASYNC_HOLD exists (a hung disk, until the test removes it),
 * and appends a line to the file CIM_TEST_FDATASYNC_LOG when it returns.
 * Other files sync as they would. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int is_spool(int fd)
{
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    const ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0)
        return 0;
    path[n] = '\0';
    const char* name = strrchr(path, '/');
    return name && strcmp(name, "/events.spool") == 0;
}

int fdatasync(int fd)
{
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    if (!is_spool(fd))
        return real(fd);
    const char* ms = getenv("CIM_TEST_FDATASYNC_MS");
    const long delay = ms ? atol(ms) : 0;
    const struct timespec wait = {delay / 1000, (delay % 1000) * 1000000L};
    nanosleep(&wait, NULL);
    const char* hold = getenv("CIM_TEST_FDATASYNC_HOLD");
    const struct timespec poll = {0, 10 * 1000000L};
    while (hold && access(hold, F_OK) == 0)
        nanosleep(&poll, NULL);
    const int result = real(fd);
    const char* log = getenv("CIM_TEST_FDATASYNC_LOG");
    if (log) {
        const int out = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (out >= 0) {
            (void)!write(out, "fdatasync\n", 10);
            close(out);
        }
    }
    return result;
}
