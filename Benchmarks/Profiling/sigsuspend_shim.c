/*
 * Lets the router run under valgrind (3.19, Debian 12).
 *
 * libdispatch's dispatch_main() parks the main thread in sigsuspend() with a mask that lives in
 * read-only memory (a `static const sigset_t`). Valgrind's rt_sigsuspend wrapper edits the mask
 * in place to keep its own signal out of it, faults on the read-only page and dies ("Valgrind
 * received a signal 11"). Preloaded, this sigsuspend() hands the kernel a writable copy.
 * Used only by scripts/profile; the router never ships with it.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

int sigsuspend(const sigset_t *mask) {
    sigset_t copy = *mask;
    /* The kernel's sigset is 8 bytes on Linux (_NSIG / 8). */
    return (int)syscall(SYS_rt_sigsuspend, &copy, 8);
}
