/*
 * virtual_clock: QEMU timers on one virtual clock owned by the driver.
 * Every QEMUClockType reads the same clock, as under qtest; time moves only
 * when the driver advances it, firing due timers in deadline order.
 */
#ifndef QTHROTTLE_VIRTUAL_CLOCK_H
#define QTHROTTLE_VIRTUAL_CLOCK_H

#include <stdbool.h>
#include <stdint.h>

#define SCALE_NS 1
#define SCALE_US 1000
#define SCALE_MS 1000000
#define NANOSECONDS_PER_SECOND 1000000000LL

typedef enum {
    QEMU_CLOCK_REALTIME,
    QEMU_CLOCK_VIRTUAL,
    QEMU_CLOCK_HOST,
    QEMU_CLOCK_VIRTUAL_RT,
    QEMU_CLOCK_MAX,
} QEMUClockType;

typedef void QEMUTimerCB(void *opaque);
typedef struct QEMUTimer QEMUTimer;

QEMUTimer *timer_new_ns(QEMUClockType type, QEMUTimerCB *cb, void *opaque);
QEMUTimer *timer_new_ms(QEMUClockType type, QEMUTimerCB *cb, void *opaque);
void timer_mod_ns(QEMUTimer *timer, int64_t expire_time);
void timer_mod(QEMUTimer *timer, int64_t expire_time);
void timer_del(QEMUTimer *timer);
void timer_free(QEMUTimer *timer);
bool timer_pending(QEMUTimer *timer);
int64_t qemu_clock_get_ns(QEMUClockType type);
int64_t qemu_clock_get_ms(QEMUClockType type);
bool qtest_enabled(void);

/* Driver side. */
typedef void QThrottleAfterTimer(void *opaque, bool timer_freed);
int64_t qthrottle_clock_now(void);
/* Deadline of the earliest pending timer, or -1. */
int64_t qthrottle_clock_next_deadline(void);
unsigned qthrottle_clock_pending(void);
/* Timers created and not yet freed (timer_free), pending or not. */
unsigned qthrottle_clock_alive(void);
/*
 * The records (a timer's opaque) timers were created for that are still
 * allocated (not yet freed), each counted once.
 */
unsigned qthrottle_clock_records_alive(void);
/* Fire due timers in deadline order up to @target, then set the clock to it. */
void qthrottle_clock_advance_to(int64_t target, QThrottleAfterTimer *after);
/* End of a run in a process that serves many runs: every timer freed, time 0. */
void qthrottle_clock_end_run(void);

#endif
