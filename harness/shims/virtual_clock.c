/* virtual_clock: see virtual_clock.h. */
#include "virtual_clock.h"
#include "shim_report.h"
#include "allocation_tracker.h"

#include <glib.h>

struct QEMUTimer {
    QEMUTimerCB *cb;
    void *opaque;       /* NULL once freed (see timer_free) */
    uintptr_t served;   /* the opaque it was created for, hidden (see record_of) */
    int64_t expire;     /* -1 when not pending */
    uint64_t armed_seq; /* equal deadlines fire in the order they were armed */
    bool freed;         /* freed timers stay allocated, to report misuse */
    unsigned serial;
};

/*
 * The sanitizer allocator's "was @p returned by malloc and not freed yet"
 * (sanitizer/allocator_interface.h, which gcc does not install).
 */
int __sanitizer_get_ownership(const volatile void *p);

/*
 * A timer remembers the record it served (its opaque) with the bits
 * flipped, so that the remembering is no pointer LeakSanitizer could follow.
 */
#define HIDDEN ((uintptr_t)0x5a5a5a5a5a5a5a5aULL)

static void *record_of(const QEMUTimer *timer)
{
    return (void *)(timer->served ^ HIDDEN);
}

static int64_t now_ns;
static uint64_t arm_seq;
static GPtrArray *all_timers;

static void check_timer(const QEMUTimer *timer, const char *what)
{
    if (!timer) {
        qthrottle_fatal("null-dereference", "%s(NULL)", what);
    }
    if (timer->freed) {
        qthrottle_fatal("use-after-free", "%s on timer #%u after timer_free", what,
                        timer->serial);
    }
}

QEMUTimer *timer_new_ns(QEMUClockType type, QEMUTimerCB *cb, void *opaque)
{
    QEMUTimer *timer;

    (void)type;
    /* Timers are the shim's memory (timer leaks are counted, not tracked). */
    qthrottle_tracker_pause();
    timer = g_new0(QEMUTimer, 1);
    if (!all_timers) {
        all_timers = g_ptr_array_new();
    }
    timer->cb = cb;
    timer->opaque = opaque;
    timer->served = (uintptr_t)opaque ^ HIDDEN;
    timer->expire = -1;
    timer->serial = all_timers->len + 1;
    g_ptr_array_add(all_timers, timer);
    qthrottle_tracker_resume();
    return timer;
}

QEMUTimer *timer_new_ms(QEMUClockType type, QEMUTimerCB *cb, void *opaque)
{
    /* Scale is applied by timer_mod on millisecond timers. */
    return timer_new_ns(type, cb, opaque);
}

void timer_mod_ns(QEMUTimer *timer, int64_t expire_time)
{
    check_timer(timer, "timer_mod_ns");
    timer->expire = expire_time < 0 ? 0 : expire_time;
    timer->armed_seq = ++arm_seq;
}

void timer_mod(QEMUTimer *timer, int64_t expire_time)
{
    timer_mod_ns(timer, expire_time);
}

void timer_del(QEMUTimer *timer)
{
    check_timer(timer, "timer_del");
    timer->expire = -1;
}

void timer_free(QEMUTimer *timer)
{
    if (!timer) {
        return;
    }
    check_timer(timer, "timer_free");
    timer->expire = -1;
    timer->freed = true;
    /*
     * The graveyard keeps the timer, not what it served: a record the code
     * under test forgets to free is then referenced by nothing, and
     * LeakSanitizer reports it.
     */
    timer->opaque = NULL;
}

bool timer_pending(QEMUTimer *timer)
{
    check_timer(timer, "timer_pending");
    return timer->expire >= 0;
}

int64_t qemu_clock_get_ns(QEMUClockType type)
{
    (void)type;
    return now_ns;
}

int64_t qemu_clock_get_ms(QEMUClockType type)
{
    return qemu_clock_get_ns(type) / SCALE_MS;
}

bool qtest_enabled(void)
{
    return true;
}

int64_t qthrottle_clock_now(void)
{
    return now_ns;
}

static QEMUTimer *earliest_pending(void)
{
    QEMUTimer *best = NULL;
    guint i;

    for (i = 0; all_timers && i < all_timers->len; i++) {
        QEMUTimer *timer = g_ptr_array_index(all_timers, i);
        if (timer->expire < 0) {
            continue;
        }
        if (!best || timer->expire < best->expire ||
            (timer->expire == best->expire && timer->armed_seq < best->armed_seq)) {
            best = timer;
        }
    }
    return best;
}

int64_t qthrottle_clock_next_deadline(void)
{
    QEMUTimer *timer = earliest_pending();

    return timer ? timer->expire : -1;
}

unsigned qthrottle_clock_alive(void)
{
    unsigned count = 0;
    guint i;

    for (i = 0; all_timers && i < all_timers->len; i++) {
        count += !((QEMUTimer *)g_ptr_array_index(all_timers, i))->freed;
    }
    return count;
}

unsigned qthrottle_clock_records_alive(void)
{
    unsigned count = 0;
    guint i, j;

    for (i = 0; all_timers && i < all_timers->len; i++) {
        void *record = record_of(g_ptr_array_index(all_timers, i));
        bool counted = false;

        for (j = 0; j < i && !counted; j++) {
            counted = record_of(g_ptr_array_index(all_timers, j)) == record;
        }
        count += !counted && record && __sanitizer_get_ownership(record);
    }
    return count;
}

unsigned qthrottle_clock_pending(void)
{
    unsigned count = 0;
    guint i;

    for (i = 0; all_timers && i < all_timers->len; i++) {
        count += ((QEMUTimer *)g_ptr_array_index(all_timers, i))->expire >= 0;
    }
    return count;
}

void qthrottle_clock_advance_to(int64_t target, QThrottleAfterTimer *after)
{
    QEMUTimer *timer;

    while ((timer = earliest_pending()) && timer->expire <= target) {
        void *opaque = timer->opaque;

        if (timer->expire > now_ns) {
            now_ns = timer->expire;
        }
        /* As in QEMU, a timer is no longer pending while its callback runs. */
        timer->expire = -1;
        timer->cb(opaque);
        after(opaque, timer->freed);
    }
    if (target > now_ns) {
        now_ns = target;
    }
}

void qthrottle_clock_end_run(void)
{
    guint i;

    for (i = 0; all_timers && i < all_timers->len; i++) {
        g_free(g_ptr_array_index(all_timers, i));
    }
    if (all_timers) {
        g_ptr_array_set_size(all_timers, 0);
    }
    now_ns = 0;
    arm_seq = 0;
}
