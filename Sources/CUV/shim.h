#include <uv.h>
#include <sys/prctl.h>

/* prctl(2) is variadic, which Swift cannot call: herd-proxy children of
   herd-control use this to receive SIGTERM when their parent dies, so that a
   crashed control never leaves orphaned proxies on the port. */
static inline int herd_set_parent_death_signal(int signal) {
    return prctl(PR_SET_PDEATHSIG, signal, 0, 0, 0);
}
