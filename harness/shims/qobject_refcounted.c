/* qobject_refcounted: see qobject_refcounted.h. */
#include "qobject_refcounted.h"
#include "shim_report.h"
#include "allocation_tracker.h"

#include <string.h>

static long live_objects;
static unsigned next_serial;
static GPtrArray *run_objects;  /* every QObject of this run, released or not */

static const char *type_name(QType type)
{
    static const char *const names[] = {
        "none", "QNull", "QNum", "QString", "QDict", "QList", "QBool",
    };
    return type <= QTYPE_QBOOL ? names[type] : "corrupt";
}

/* QObjects are the shim's memory, whoever asks for one: never tracked as the caller's. */
static void *object_new(size_t size, QType type)
{
    QObject *obj;

    qthrottle_tracker_pause();
    obj = g_malloc0(size);
    obj->type = type;
    obj->refcnt = 1;
    obj->serial = ++next_serial;
    live_objects++;
    if (!run_objects) {
        run_objects = g_ptr_array_new();
    }
    g_ptr_array_add(run_objects, obj);
    qthrottle_tracker_resume();
    return obj;
}

static void check_alive(const QObject *obj, const char *what)
{
    if (obj && obj->refcnt <= 0) {
        qthrottle_fatal("use-after-release",
                        "%s on %s #%u, whose last reference was already released",
                        what, type_name(obj->type), obj->serial);
    }
}

long qthrottle_qobject_live(void)
{
    return live_objects;
}

static void object_free(QObject *obj)
{
    guint i;

    if (obj->type == QTYPE_QSTRING) {
        g_free(((QString *)obj)->str);
    } else if (obj->type == QTYPE_QDICT) {
        GPtrArray *entries = ((QDict *)obj)->entries;
        for (i = 0; i < entries->len; i++) {
            QDictEntry *entry = g_ptr_array_index(entries, i);
            g_free(entry->key);
            g_free(entry);
        }
        g_ptr_array_free(entries, TRUE);
    } else if (obj->type == QTYPE_QLIST) {
        g_ptr_array_free(((QList *)obj)->items, TRUE);
    }
    g_free(obj);
}

void qthrottle_qobject_end_run(void)
{
    guint i;

    for (i = 0; run_objects && i < run_objects->len; i++) {
        object_free(g_ptr_array_index(run_objects, i));
    }
    if (run_objects) {
        g_ptr_array_set_size(run_objects, 0);
    }
    live_objects = 0;
    next_serial = 0;
}

QObject *qthrottle_qobject_ref(QObject *obj)
{
    if (obj) {
        check_alive(obj, "qobject_ref");
        obj->refcnt++;
    }
    return obj;
}

static void release_children(QObject *obj)
{
    guint i;

    if (obj->type == QTYPE_QDICT) {
        GPtrArray *entries = ((QDict *)obj)->entries;
        for (i = 0; i < entries->len; i++) {
            QDictEntry *entry = g_ptr_array_index(entries, i);
            qthrottle_qobject_unref(entry->value);
        }
    } else if (obj->type == QTYPE_QLIST) {
        GPtrArray *items = ((QList *)obj)->items;
        for (i = 0; i < items->len; i++) {
            qthrottle_qobject_unref(g_ptr_array_index(items, i));
        }
    }
}

void qthrottle_qobject_unref(QObject *obj)
{
    if (!obj) {
        return;
    }
    if (obj->refcnt <= 0) {
        qthrottle_fatal("double-release",
                        "qobject_unref on %s #%u, whose last reference was already released",
                        type_name(obj->type), obj->serial);
    }
    if (--obj->refcnt == 0) {
        live_objects--;
        /* The memory stays in the graveyard until the run ends. */
        release_children(obj);
    }
}

QObject *qthrottle_qobject_cast(QObject *obj, QType type)
{
    if (!obj) {
        return NULL;
    }
    check_alive(obj, "qobject_to");
    return obj->type == type ? obj : NULL;
}

QString *qstring_from_str(const char *str)
{
    QString *qstring = object_new(sizeof(*qstring), QTYPE_QSTRING);

    qthrottle_tracker_pause();
    qstring->str = g_strdup(str);
    qthrottle_tracker_resume();
    return qstring;
}

QNum *qnum_from_int(int64_t value)
{
    QNum *qnum = object_new(sizeof(*qnum), QTYPE_QNUM);

    qnum->is_int = true;
    qnum->i = value;
    return qnum;
}

QNum *qnum_from_double(double value)
{
    QNum *qnum = object_new(sizeof(*qnum), QTYPE_QNUM);

    qnum->d = value;
    return qnum;
}

QBool *qbool_from_bool(bool value)
{
    QBool *qbool = object_new(sizeof(*qbool), QTYPE_QBOOL);

    qbool->value = value;
    return qbool;
}

QNull *qnull(void)
{
    return object_new(sizeof(QNull), QTYPE_QNULL);
}

QList *qlist_new(void)
{
    QList *list = object_new(sizeof(*list), QTYPE_QLIST);

    qthrottle_tracker_pause();
    list->items = g_ptr_array_new();
    qthrottle_tracker_resume();
    return list;
}

void qlist_append_obj(QList *list, QObject *obj)
{
    qthrottle_tracker_pause();
    g_ptr_array_add(list->items, obj);
    qthrottle_tracker_resume();
}

QDict *qdict_new(void)
{
    QDict *dict = object_new(sizeof(*dict), QTYPE_QDICT);

    qthrottle_tracker_pause();
    dict->entries = g_ptr_array_new();
    qthrottle_tracker_resume();
    return dict;
}

void qdict_put_obj(QDict *dict, const char *key, QObject *value)
{
    QDictEntry *entry;

    qthrottle_tracker_pause();
    entry = g_new(QDictEntry, 1);
    entry->key = g_strdup(key);
    entry->value = value;
    g_ptr_array_add(dict->entries, entry);
    qthrottle_tracker_resume();
}

const char *qstring_get_str(const QString *qstring)
{
    check_alive(&qstring->base, "qstring_get_str");
    return qstring->str;
}

QObject *qdict_get(const QDict *dict, const char *key)
{
    guint i;

    if (!dict) {
        qthrottle_fatal("null-dereference", "qdict_get(NULL, \"%s\")", key);
    }
    check_alive(&dict->base, "qdict_get");
    for (i = 0; i < dict->entries->len; i++) {
        QDictEntry *entry = g_ptr_array_index(dict->entries, i);
        if (!strcmp(entry->key, key)) {
            return entry->value;
        }
    }
    return NULL;
}

int qdict_haskey(const QDict *dict, const char *key)
{
    return qdict_get(dict, key) != NULL;
}

size_t qdict_size(const QDict *dict)
{
    check_alive(&dict->base, "qdict_size");
    return dict->entries->len;
}

static QObject *get_typed(const QDict *dict, const char *key, QType type,
                          const char *accessor)
{
    QObject *obj = qdict_get(dict, key);

    if (!obj) {
        qthrottle_fatal("missing-member", "%s: event data has no member '%s'",
                        accessor, key);
    }
    if (obj->type != type) {
        qthrottle_fatal("wrong-member-type", "%s: member '%s' is a %s, not a %s",
                        accessor, key, type_name(obj->type), type_name(type));
    }
    return obj;
}

const char *qdict_get_str(const QDict *dict, const char *key)
{
    return ((QString *)get_typed(dict, key, QTYPE_QSTRING, "qdict_get_str"))->str;
}

int64_t qdict_get_int(const QDict *dict, const char *key)
{
    QNum *qnum = (QNum *)get_typed(dict, key, QTYPE_QNUM, "qdict_get_int");

    if (!qnum->is_int) {
        qthrottle_fatal("wrong-member-type", "qdict_get_int: member '%s' is not an integer", key);
    }
    return qnum->i;
}

bool qdict_get_bool(const QDict *dict, const char *key)
{
    return ((QBool *)get_typed(dict, key, QTYPE_QBOOL, "qdict_get_bool"))->value;
}

QDict *qdict_get_qdict(const QDict *dict, const char *key)
{
    return qobject_to(QDict, qdict_get(dict, key));
}

const char *qdict_get_try_str(const QDict *dict, const char *key)
{
    QString *qstring = qobject_to(QString, qdict_get(dict, key));

    return qstring ? qstring->str : NULL;
}

int64_t qdict_get_try_int(const QDict *dict, const char *key, int64_t def)
{
    QNum *qnum = qobject_to(QNum, qdict_get(dict, key));

    return qnum && qnum->is_int ? qnum->i : def;
}

bool qdict_get_try_bool(const QDict *dict, const char *key, bool def)
{
    QBool *qbool = qobject_to(QBool, qdict_get(dict, key));

    return qbool ? qbool->value : def;
}
