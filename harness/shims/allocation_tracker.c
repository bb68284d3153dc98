/* allocation_tracker: see allocation_tracker.h. */
#include "allocation_tracker.h"

#include <stdint.h>

/* sanitizer/allocator_interface.h, which gcc does not install. */
int __sanitizer_install_malloc_and_free_hooks(
    void (*malloc_hook)(const volatile void *, size_t),
    void (*free_hook)(const volatile void *));

#define SLOTS 1024u                 /* open addressing, linear probing */
#define MOST_TRACKED (SLOTS / 2)    /* beyond: not known */
#define KEPT_MAX 4096u
/*
 * A block's address is stored with its bits flipped: the table must not count
 * as a reference when LeakSanitizer looks for memory nothing points to.
 */
#define HIDDEN ((uintptr_t)0xa5a5a5a5a5a5a5a5ULL)

static uintptr_t slot_key[SLOTS];  /* 0: empty */
static unsigned char slot_owner[SLOTS];
static size_t live[4];
static size_t tracked;
static bool installed, overflowed;
static QThrottleOwner owner;
static int paused;
static QThrottleOwner before_table;
static void *kept[KEPT_MAX];  /* plain pointers: these blocks are referenced */
static size_t kept_count;

static size_t home(uintptr_t key)
{
    uint64_t address = key ^ HIDDEN;

    return (size_t)((address >> 4) * 0x9E3779B97F4A7C15ULL >> 40) & (SLOTS - 1);
}

static void remember(const volatile void *block, size_t size)
{
    uintptr_t key = (uintptr_t)block ^ HIDDEN;
    size_t i;

    (void)size;
    if (owner == QTHROTTLE_OWNER_NONE || paused || !block) {
        return;
    }
    if (tracked >= MOST_TRACKED) {
        overflowed = true;
        return;
    }
    for (i = home(key); slot_key[i]; i = (i + 1) & (SLOTS - 1)) {
    }
    slot_key[i] = key;
    slot_owner[i] = (unsigned char)owner;
    live[owner]++;
    tracked++;
}

static void forget(const volatile void *block)
{
    uintptr_t key = (uintptr_t)block ^ HIDDEN;
    size_t i, j;

    if (!tracked || !block) {
        return;
    }
    for (i = home(key); slot_key[i] != key; i = (i + 1) & (SLOTS - 1)) {
        if (!slot_key[i]) {
            return;  /* not one of ours */
        }
    }
    live[slot_owner[i]]--;
    tracked--;
    /* Deletion by backward shift: no tombstones, probes stay short. */
    slot_key[i] = 0;
    for (j = (i + 1) & (SLOTS - 1); slot_key[j]; j = (j + 1) & (SLOTS - 1)) {
        size_t k = home(slot_key[j]);
        bool in_place = i <= j ? (i < k && k <= j) : (i < k || k <= j);

        if (!in_place) {
            slot_key[i] = slot_key[j];
            slot_owner[i] = slot_owner[j];
            slot_key[j] = 0;
            i = j;
        }
    }
}

bool qthrottle_tracker_install(void)
{
    installed = __sanitizer_install_malloc_and_free_hooks(remember, forget) != 0;
    return installed;
}

void qthrottle_tracker_owner(QThrottleOwner who)
{
    owner = who;
}

void qthrottle_tracker_table_enter(void)
{
    before_table = owner;
    if (owner == QTHROTTLE_OWNER_RUN) {
        owner = QTHROTTLE_OWNER_TABLE;
    }
}

void qthrottle_tracker_table_leave(void)
{
    owner = before_table;
}

QThrottleOwner qthrottle_tracker_callback_enter(void)
{
    QThrottleOwner before = owner;

    if (owner == QTHROTTLE_OWNER_TABLE) {
        owner = QTHROTTLE_OWNER_RUN;
    }
    return before;
}

void qthrottle_tracker_give_up(void)
{
    overflowed = true;
}

void qthrottle_tracker_pause(void)
{
    paused++;
}

void qthrottle_tracker_resume(void)
{
    paused--;
}

bool qthrottle_tracker_live(QThrottleOwner who, size_t *count)
{
    *count = live[who];
    return installed && !overflowed;
}

bool qthrottle_tracker_keep_init(void)
{
    size_t i;

    if (!installed || overflowed || live[QTHROTTLE_OWNER_RUN] ||
        kept_count + tracked > KEPT_MAX) {
        return false;
    }
    for (i = 0; i < SLOTS; i++) {
        if (slot_key[i]) {
            kept[kept_count++] = (void *)(slot_key[i] ^ HIDDEN);
            slot_key[i] = 0;
        }
    }
    live[QTHROTTLE_OWNER_INIT] = live[QTHROTTLE_OWNER_TABLE] = 0;
    tracked = 0;
    return true;
}
