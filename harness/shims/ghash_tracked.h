/*
 * ghash_tracked: the code under test's calls into GLib's hash table, told
 * apart for allocation_tracker.h.
 *
 * GLib's table allocates and reallocates its own arrays as keys come and go
 * (it widens its key array on the first pointer key). Those arrays belong to
 * the table, which lives from init to the end of the run, so they are tracked
 * as the table's, not as memory the throttle left behind (which is what makes
 * LeakSanitizer's scan worth running at a quiet point). The hash and equality
 * callbacks run inside those calls: the tables are created with wrappers
 * around them, so that what a callback allocates is still the throttle's.
 * The same GLib functions run, with the same arguments, in the same order.
 */
#ifndef QTHROTTLE_GHASH_TRACKED_H
#define QTHROTTLE_GHASH_TRACKED_H

#include <glib.h>

GHashTable *qthrottle_table_new_full(GHashFunc hash, GEqualFunc equal,
                                     GDestroyNotify key_destroy, GDestroyNotify value_destroy);
void qthrottle_table_enter(void);
void qthrottle_table_leave(void);

#define g_hash_table_new(hash, equal) qthrottle_table_new_full((hash), (equal), NULL, NULL)
#define g_hash_table_new_full(hash, equal, key_destroy, value_destroy) \
    qthrottle_table_new_full((hash), (equal), (key_destroy), (value_destroy))

/* Arguments first, then the call as the table's: an argument's allocation is the caller's. */
#define QTHROTTLE_TABLE_CALL2(type, call, table, a) ({ \
    GHashTable *qthrottle_table_ = (table); gpointer qthrottle_a_ = (gpointer)(a); \
    qthrottle_table_enter(); \
    type qthrottle_result_ = call(qthrottle_table_, qthrottle_a_); \
    qthrottle_table_leave(); \
    qthrottle_result_; })
#define QTHROTTLE_TABLE_CALL3(type, call, table, a, b) ({ \
    GHashTable *qthrottle_table_ = (table); gpointer qthrottle_a_ = (gpointer)(a); \
    gpointer qthrottle_b_ = (gpointer)(b); \
    qthrottle_table_enter(); \
    type qthrottle_result_ = call(qthrottle_table_, qthrottle_a_, qthrottle_b_); \
    qthrottle_table_leave(); \
    qthrottle_result_; })

#define g_hash_table_add(table, key) \
    QTHROTTLE_TABLE_CALL2(gboolean, g_hash_table_add, table, key)
#define g_hash_table_remove(table, key) \
    QTHROTTLE_TABLE_CALL2(gboolean, g_hash_table_remove, table, key)
#define g_hash_table_steal(table, key) \
    QTHROTTLE_TABLE_CALL2(gboolean, g_hash_table_steal, table, key)
#define g_hash_table_insert(table, key, value) \
    QTHROTTLE_TABLE_CALL3(gboolean, g_hash_table_insert, table, key, value)
#define g_hash_table_replace(table, key, value) \
    QTHROTTLE_TABLE_CALL3(gboolean, g_hash_table_replace, table, key, value)
#define g_hash_table_remove_all(table) ({ \
    GHashTable *qthrottle_table_ = (table); \
    qthrottle_table_enter(); \
    g_hash_table_remove_all(qthrottle_table_); \
    qthrottle_table_leave(); })

#endif
