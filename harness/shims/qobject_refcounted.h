/*
 * qobject_refcounted: QEMU's QObject family (QDict, QString, QNum, QBool,
 * QNull, QList) as the throttle code uses it, with every reference counted.
 *
 * Released objects are never handed back to malloc while a run lasts: they
 * stay in a graveyard marked released, so a double release or a read of a
 * released object is reported deterministically, with or without ASan.
 */
#ifndef QTHROTTLE_QOBJECT_REFCOUNTED_H
#define QTHROTTLE_QOBJECT_REFCOUNTED_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum QType {
    QTYPE_NONE, QTYPE_QNULL, QTYPE_QNUM, QTYPE_QSTRING,
    QTYPE_QDICT, QTYPE_QLIST, QTYPE_QBOOL,
} QType;

typedef struct QObject {
    QType type;
    long refcnt;        /* 0 once released */
    unsigned serial;    /* creation order, for reports */
} QObject;

typedef struct QString { QObject base; char *str; } QString;
typedef struct QNum { QObject base; bool is_int; int64_t i; double d; } QNum;
typedef struct QBool { QObject base; bool value; } QBool;
typedef struct QNull { QObject base; } QNull;
typedef struct QList { QObject base; GPtrArray *items; } QList;
typedef struct QDictEntry { char *key; QObject *value; } QDictEntry;
typedef struct QDict { QObject base; GPtrArray *entries; } QDict;

/* qobject_to(QDict, obj) and friends need the QType of a type name. */
#define QTHROTTLE_QTYPE_QDict QTYPE_QDICT
#define QTHROTTLE_QTYPE_QString QTYPE_QSTRING
#define QTHROTTLE_QTYPE_QNum QTYPE_QNUM
#define QTHROTTLE_QTYPE_QBool QTYPE_QBOOL
#define QTHROTTLE_QTYPE_QList QTYPE_QLIST
#define QTHROTTLE_QTYPE_QNull QTYPE_QNULL

#define QOBJECT(obj) ((QObject *)(obj))
#define qobject_ref(obj) ((__typeof__(obj))qthrottle_qobject_ref(QOBJECT(obj)))
#define qobject_unref(obj) qthrottle_qobject_unref(QOBJECT(obj))
#define qobject_to(type, obj) \
    ((type *)qthrottle_qobject_cast(QOBJECT(obj), QTHROTTLE_QTYPE_##type))
#define qobject_type(obj) (QOBJECT(obj)->type)

QObject *qthrottle_qobject_ref(QObject *obj);
void qthrottle_qobject_unref(QObject *obj);
QObject *qthrottle_qobject_cast(QObject *obj, QType type);

QString *qstring_from_str(const char *str);
QNum *qnum_from_int(int64_t value);
QNum *qnum_from_double(double value);
QBool *qbool_from_bool(bool value);
QNull *qnull(void);
QList *qlist_new(void);
void qlist_append_obj(QList *list, QObject *obj);
QDict *qdict_new(void);
void qdict_put_obj(QDict *dict, const char *key, QObject *value);

const char *qstring_get_str(const QString *qstring);
QObject *qdict_get(const QDict *dict, const char *key);
int qdict_haskey(const QDict *dict, const char *key);
size_t qdict_size(const QDict *dict);
/* Like QEMU: a missing member or a member of another type aborts. */
const char *qdict_get_str(const QDict *dict, const char *key);
int64_t qdict_get_int(const QDict *dict, const char *key);
bool qdict_get_bool(const QDict *dict, const char *key);
QDict *qdict_get_qdict(const QDict *dict, const char *key);
/* The try_ variants return the default (or NULL) instead. */
const char *qdict_get_try_str(const QDict *dict, const char *key);
int64_t qdict_get_try_int(const QDict *dict, const char *key, int64_t def);
bool qdict_get_try_bool(const QDict *dict, const char *key, bool def);

/* Accounting, for the driver. */
long qthrottle_qobject_live(void);
/*
 * End of a run in a process that serves many runs (the fuzz entry; the driver
 * forks one child per run instead): every QObject of the run goes back to
 * malloc, released or not. Nothing may use them afterwards.
 */
void qthrottle_qobject_end_run(void);

#endif
