/* Linux calls Swift cannot make directly (variadic or not exported), each
   wrapped in one inline function. Header only: nothing to link. */
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <signal.h>
#include <unistd.h>

/* prctl(2) is variadic, which Swift cannot call: herd-proxy children of
   herd-control use this to receive SIGTERM when their parent dies, so that a
   crashed control never leaves orphaned proxies on the port. */
static inline int herd_set_parent_death_signal(int signal) {
    return prctl(PR_SET_PDEATHSIG, signal, 0, 0, 0);
}

/* syscall(2) is variadic and glibc's gettid() is not exported to Swift here:
   the SQLite writer thread lowers its own priority (setpriority on its tid)
   so that its batches never delay a loop thread sharing its core. */
static inline int herd_current_thread_id(void) {
    return (int)syscall(SYS_gettid);
}
