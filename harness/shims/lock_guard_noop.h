/*
 * lock_guard_noop: the driver is single-threaded, so QEMU's monitor lock and
 * its guards compile to nothing.
 */
#ifndef QTHROTTLE_LOCK_GUARD_NOOP_H
#define QTHROTTLE_LOCK_GUARD_NOOP_H

typedef struct QemuMutex { int unused; } QemuMutex;

#define qemu_mutex_init(m) ((void)(m))
#define qemu_mutex_lock(m) ((void)(m))
#define qemu_mutex_unlock(m) ((void)(m))
#define QEMU_LOCK_GUARD(m) ((void)(m))
#define WITH_QEMU_LOCK_GUARD(m) for (int qthrottle_once_ = ((void)(m), 1); \
                                     qthrottle_once_; qthrottle_once_ = 0)

#endif
