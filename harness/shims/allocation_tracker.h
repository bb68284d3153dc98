/*
 * allocation_tracker: which heap blocks the code under test allocated, and
 * which of them are still allocated.
 *
 * The sanitizer allocator calls a hook on every malloc and free. While the
 * driver runs code under test (its init function, the queue function, a
 * timer callback, hash or equality), each block allocated is remembered with
 * its owner; a free forgets it. The shims pause the tracking around their own
 * allocations (QObjects, timers, the emission log): those are accounted for by
 * the shims themselves (reference, timer and record leaks).
 *
 * GLib's hash table allocates its own arrays: those are the table's
 * (shims/ghash_tracked.h), kept apart from what the throttle allocates.
 *
 * The driver reads two things from it: whether memory the code under test
 * allocated during the run is still allocated at a quiet point (only then can
 * there be a leak for LeakSanitizer to look for), and whether a run left
 * nothing of its own behind (then the next run may start in the same process).
 */
#ifndef QTHROTTLE_ALLOCATION_TRACKER_H
#define QTHROTTLE_ALLOCATION_TRACKER_H

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    QTHROTTLE_OWNER_NONE,  /* the harness: not tracked */
    QTHROTTLE_OWNER_INIT,  /* the throttle's init function */
    QTHROTTLE_OWNER_RUN,   /* the throttle during a run */
    QTHROTTLE_OWNER_TABLE, /* GLib's hash table, called by the throttle during a run */
} QThrottleOwner;

/* Installs the hooks; false if the sanitizer runtime refused them. */
bool qthrottle_tracker_install(void);

/* Who owns what is allocated from now on (until the next call). */
void qthrottle_tracker_owner(QThrottleOwner owner);

/* Around the throttle's calls into its GLib hash table (ghash_tracked.h). */
void qthrottle_tracker_table_enter(void);
void qthrottle_tracker_table_leave(void);

/* In a hash or equality callback GLib calls: back to the throttle; the owner before. */
QThrottleOwner qthrottle_tracker_callback_enter(void);

/* From now on, who allocated what is not known. */
void qthrottle_tracker_give_up(void);

/* Around a shim's own allocations, which nobody in the code under test owns. */
void qthrottle_tracker_pause(void);
void qthrottle_tracker_resume(void);

/*
 * Blocks of @owner still allocated; false if that is not known (the hooks
 * are not installed, or more blocks were alive than the tracker holds).
 */
bool qthrottle_tracker_live(QThrottleOwner owner, size_t *count);

/*
 * When nothing the throttle allocated during the run is allocated any more:
 * forget the blocks of its init function and of its tables. They stay
 * allocated, referenced from a keep list (so never reported as leaks), and a
 * new init starts over. False if the keep list is full.
 */
bool qthrottle_tracker_keep_init(void);

#endif
