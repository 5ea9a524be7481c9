/* Fault injection for the stuck-loop drill (tests/integration/test_faults.py), LD_PRELOADed into the
 * runners: once the file named by MULLAMA_TEST_STALL_LOOP_FILE exists, the C++ decode loop's next write
 * to its eventfd never returns. The loop thread is stuck; the runner's Python side (HTTP, /health)
 * keeps answering, as with a deadlock inside llama.cpp. Nothing in mullama knows about this file. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

static int loop_fd = -1;

int eventfd(unsigned int initval, int flags) {
    static int (*real)(unsigned int, int);
    if (!real) real = (int (*)(unsigned int, int))dlsym(RTLD_NEXT, "eventfd");
    int fd = real(initval, flags);
    loop_fd = fd; /* the Batcher's: the runner makes no other eventfd */
    return fd;
}

ssize_t write(int fd, const void *buf, size_t n) {
    static ssize_t (*real)(int, const void *, size_t);
    if (!real) real = (ssize_t(*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    if (fd >= 0 && fd == loop_fd) {
        const char *flag = getenv("MULLAMA_TEST_STALL_LOOP_FILE");
        if (flag && access(flag, F_OK) == 0) {
            for (;;) pause();
        }
    }
    return real(fd, buf, n);
}
