/* ghash_tracked: see ghash_tracked.h. */
#include "ghash_tracked.h"
#include "allocation_tracker.h"

#include <stdbool.h>

/* The callbacks of up to TABLES distinct tables, each behind its own wrapper. */
#define TABLES 4

static GHashFunc hashes[TABLES];
static GEqualFunc equals[TABLES];
static bool used[TABLES];

/* A callback GLib calls from inside the table: what it allocates is the throttle's. */
#define WRAPPERS(n) \
    static guint hash_##n(gconstpointer key) \
    { \
        QThrottleOwner owner = qthrottle_tracker_callback_enter(); \
        guint value = hashes[n] ? hashes[n](key) : g_direct_hash(key); \
        qthrottle_tracker_owner(owner); \
        return value; \
    } \
    static gboolean equal_##n(gconstpointer a, gconstpointer b) \
    { \
        QThrottleOwner owner = qthrottle_tracker_callback_enter(); \
        gboolean value = equals[n] ? equals[n](a, b) : a == b; \
        qthrottle_tracker_owner(owner); \
        return value; \
    }
WRAPPERS(0)
WRAPPERS(1)
WRAPPERS(2)
WRAPPERS(3)

static const GHashFunc hash_wrappers[TABLES] = {hash_0, hash_1, hash_2, hash_3};
static const GEqualFunc equal_wrappers[TABLES] = {equal_0, equal_1, equal_2, equal_3};

/* The macros of ghash_tracked.h do not apply here: these are GLib's own functions. */
#undef g_hash_table_new_full

GHashTable *qthrottle_table_new_full(GHashFunc hash, GEqualFunc equal,
                                     GDestroyNotify key_destroy, GDestroyNotify value_destroy)
{
    int slot;

    for (slot = 0; slot < TABLES; slot++) {
        if (!used[slot] || (hashes[slot] == hash && equals[slot] == equal)) {
            break;
        }
    }
    if (slot == TABLES) {
        /* More tables than wrappers: what allocates is no longer told apart. */
        qthrottle_tracker_give_up();
        return g_hash_table_new_full(hash, equal, key_destroy, value_destroy);
    }
    used[slot] = true;
    hashes[slot] = hash;
    equals[slot] = equal;
    return g_hash_table_new_full(hash_wrappers[slot], equal_wrappers[slot], key_destroy,
                                 value_destroy);
}

void qthrottle_table_enter(void)
{
    qthrottle_tracker_table_enter();
}

void qthrottle_table_leave(void)
{
    qthrottle_tracker_table_leave();
}
