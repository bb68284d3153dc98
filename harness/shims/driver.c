/*
 * The driver: a fork server that runs the throttle code for the harness
 * (harness/driver.py and harness/protocol.py hold the other end).
 *
 *   driver COMMAND_FD REPLY_FD LIFELINE_FD
 *
 * Commands arrive one JSON object per line on COMMAND_FD; replies leave one
 * JSON object per line on REPLY_FD. The protocol has descriptors of its own so
 * that whatever the code under test prints (printf, a failing g_assert's
 * "Bail out!", sanitizer reports) goes to stdout and stderr, which the harness
 * captures and shows with the step, and never into a reply. The first line is
 * the fork server's greeting, saying what the driver was built from:
 *   {"ok":true,"driver":"qthrottle","protocol":N,"build":ID}
 *
 * The parent never runs throttle code: for each run it forks a child that
 * initialises the throttle and serves commands until "reset" (the child
 * exits, the parent acknowledges and a fresh one serves) or end of input.
 * The next child is forked while the current one serves and waits to be
 * started, so that a fresh run does not wait for a fork; a child leaving for
 * a reset says so before its exit, which the parent does not wait for.
 * When a child dies any other way (sanitizer report, abort, a signal, or the
 * code under test calling exit()), the parent answers the pending command
 * with {"crash": ...} and forks a fresh child, so a crash costs one run,
 * never the session. A child says that it exits on purpose through a word of
 * memory shared with the parent, never through its exit status, which the
 * code under test can choose too.
 *
 * Neither process outlives the harness: nobody ever writes to LIFELINE_FD,
 * so it becomes readable (end of file) exactly when the harness is gone, even
 * by SIGKILL; the parent then kills its child and exits. A child dies with its
 * parent (PR_SET_PDEATHSIG), so a run stuck in the code under test cannot
 * outlive it either.
 *
 * One command is in flight at a time: the harness sends the next command only
 * once the last reply of the previous one is in, so a child never reads input
 * meant for the next child and the command stream can be read buffered.
 *
 * Commands:
 *   {"op":"queue","event":NAME,"data":{...}}   qapi_event_emit(NAME, data)
 *   {"op":"advance","ns":N}                     step the virtual clock by N
 *   {"op":"advance_to_next"}                    step to the next deadline
 *   {"op":"state"}                              table size, clock, counts
 *   {"op":"log"}                                every emission of this run
 *   {"op":"hash","event":NAME,"data":{...}}     the hash callback's value
 *   {"op":"equal","a":{"event":..,"data":..},"b":{...}}  equal(a, b)
 *   {"op":"keys","records":[{"event":..,"data":..},...]}  the callbacks on
 *       up to three records: every equal(a, b) in row order, then every hash
 *   {"op":"reset"}                              a fresh run
 *   {"op":"batch","timelines":[[CMD,...],...],"settle":N,"mark":TEXT}
 *       each timeline from a fresh run: one reply per command, as if sent
 *       alone; then, if the throttle is not quiet and N > 0, the clock
 *       advanced by N (that reply carries "settle":true); then the end of
 *       the timeline: {"ok":true,"fresh":true} when the next run starts in
 *       the same process, or the fork server's {"ok":true,"reset":true} when
 *       a fresh process serves what follows (the harness sends the remaining
 *       timelines again). A crash ends the timeline with the fork server's
 *       {"crash":...}. Before each reply the child sends, TEXT is written to
 *       stdout, so that the harness can tell which command printed what.
 *
 * A run may start over in the same process ("fresh") only when starting over
 * is exactly a fresh process: the throttle is quiet, nothing it allocated
 * during the run is still allocated (allocation_tracker.h), its global
 * variables are as its init function left them, it has no static locals and
 * the run reported nothing. Its globals are then set back to what they were
 * before init, and init runs again.
 *
 * After each step that leaves the throttle quiet (empty table, no timer
 * pending), nothing it allocated may be alive: QObjects still referenced,
 * timers never freed and (LeakSanitizer) memory no longer referenced at all
 * are reported as findings, invariant 8. LeakSanitizer's scan runs only if
 * something may have leaked: memory the throttle allocated during the run is
 * still allocated, or its globals changed.
 */
#include "qapi_event_enum.h"
#include "qobject_refcounted.h"
#include "virtual_clock.h"
#include "emit_recorder.h"
#include "shim_report.h"
#include "allocation_tracker.h"

#include <errno.h>
#include <fcntl.h>
#include <json-glib/json-glib.h>
#include <poll.h>
#include <sanitizer/common_interface_defs.h>
#include <sanitizer/lsan_interface.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define QTHROTTLE_PROTOCOL 3
#ifndef QTHROTTLE_BUILD_ID
#define QTHROTTLE_BUILD_ID "unknown"
#endif

/* Generated next to the extracted code, which alone knows its types. */
void qthrottle_glue_init(void);
void qthrottle_glue_queue(QAPIEvent event, QDict *qdict);
GHashTable *qthrottle_glue_table(void);
guint qthrottle_glue_hash(QAPIEvent event, QDict *data);
gboolean qthrottle_glue_equal(QAPIEvent event_a, QDict *data_a,
                              QAPIEvent event_b, QDict *data_b);
/* The throttle's global variables, as bytes (harness/unit_state.py). */
size_t qthrottle_glue_state_size(void);
void qthrottle_glue_state_save(unsigned char *to);
bool qthrottle_glue_state_equals(const unsigned char *from);
void qthrottle_glue_state_restore(const unsigned char *from);
extern const bool qthrottle_glue_static_locals;

/* Why a child exited, as it tells its parent (anything else is a crash). */
enum { CHILD_CRASHED = 0, CHILD_RESET, CHILD_EOF };

static GString *findings;   /* JSON objects, comma separated, per command */
static GString *reply;      /* the reply being built, one line */
static int reply_fd = -1;   /* -1: replies are dropped (fuzz_entry.c) */
static guint emissions_seen;
static bool was_quiet = true;  /* the throttle was quiet after the previous step */
static bool fresh_run = true;  /* no command served since the run began */
static bool run_reported;      /* a finding in this run: it never starts over in place */
static unsigned runs_in_process;  /* runs that started over in this process */
#define RUNS_IN_PROCESS_MAX 1000  /* then a fresh process: bounds what init's memory costs */
static unsigned char *state_before_init;  /* the throttle's globals, untouched */
static unsigned char *state_after_init;   /* and as this run's init left them */

void qthrottle_fatal(const char *kind, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "qthrottle-shim: %s: ", kind);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    abort();
}

static char *json_quote(const char *text)
{
    JsonNode *node = json_node_init_string(json_node_alloc(), text);
    char *quoted = json_to_string(node, FALSE);

    json_node_unref(node);
    return quoted;
}

static void add_finding(const char *kind, const char *detail)
{
    char *quoted = json_quote(detail);

    g_string_append_printf(findings, "%s{\"kind\":\"%s\",\"detail\":%s}",
                           findings->len ? "," : "", kind, quoted);
    g_free(quoted);
    run_reported = true;
}

/* The code under test runs between these two: what it allocates is its own. */
static void enter_throttle(void)
{
    qthrottle_tracker_owner(QTHROTTLE_OWNER_RUN);
}

static void leave_throttle(void)
{
    qthrottle_tracker_owner(QTHROTTLE_OWNER_NONE);
}

/* The throttle's init function, at the start of a run. */
static void init_run(void)
{
    qthrottle_tracker_owner(QTHROTTLE_OWNER_INIT);
    qthrottle_glue_init();
    qthrottle_tracker_owner(QTHROTTLE_OWNER_NONE);
    if (state_after_init) {
        qthrottle_glue_state_save(state_after_init);
    }
    fresh_run = true;
    run_reported = false;
}

/* The throttle's globals are not as init left them (or that cannot be known). */
static bool state_changed(void)
{
    return qthrottle_glue_static_locals || !state_after_init ||
           !qthrottle_glue_state_equals(state_after_init);
}

/* Something the throttle allocated during the run may be left behind. */
static bool may_have_leaked(void)
{
    size_t live;

    return !qthrottle_tracker_live(QTHROTTLE_OWNER_RUN, &live) || live || state_changed();
}

static QObject *from_json(JsonNode *node)
{
    switch (JSON_NODE_TYPE(node)) {
    case JSON_NODE_OBJECT: {
        JsonObject *object = json_node_get_object(node);
        QDict *dict = qdict_new();
        GList *names = json_object_get_members(object);
        for (GList *l = names; l; l = l->next) {
            qdict_put_obj(dict, l->data,
                          from_json(json_object_get_member(object, l->data)));
        }
        g_list_free(names);
        return QOBJECT(dict);
    }
    case JSON_NODE_ARRAY: {
        JsonArray *array = json_node_get_array(node);
        QList *list = qlist_new();
        for (guint i = 0; i < json_array_get_length(array); i++) {
            qlist_append_obj(list, from_json(json_array_get_element(array, i)));
        }
        return QOBJECT(list);
    }
    case JSON_NODE_NULL:
        return QOBJECT(qnull());
    default:
        break;
    }
    switch (json_node_get_value_type(node)) {
    case G_TYPE_STRING:
        return QOBJECT(qstring_from_str(json_node_get_string(node)));
    case G_TYPE_BOOLEAN:
        return QOBJECT(qbool_from_bool(json_node_get_boolean(node)));
    case G_TYPE_DOUBLE:
        return QOBJECT(qnum_from_double(json_node_get_double(node)));
    default:
        return QOBJECT(qnum_from_int(json_node_get_int(node)));
    }
}

/* Send the reply built so far, as one line. */
static void send_reply(void)
{
    const char *at;
    size_t left;

    g_string_append_c(reply, '\n');
    at = reply->str;
    left = reply->len;
    while (reply_fd >= 0 && left > 0) {
        ssize_t written = write(reply_fd, at, left);
        if (written < 0 && errno == EINTR) {
            continue;
        }
        if (written <= 0) {
            _exit(CHILD_CRASHED);  /* the harness is gone */
        }
        at += written;
        left -= written;
    }
    g_string_truncate(reply, 0);
}

static void reply_error(const char *message)
{
    char *quoted = json_quote(message);

    g_string_append_printf(reply, "{\"error\":%s}", quoted);
    g_free(quoted);
}

/* Resolve {"event": NAME, "data": {...}} into an event and a new QDict. */
static bool event_arg(JsonObject *object, QAPIEvent *event, QDict **data)
{
    const char *name = json_object_get_string_member_with_default(object, "event", NULL);
    JsonNode *data_node = json_object_get_member(object, "data");
    int value;

    if (!name || (value = qthrottle_event_lookup(name)) < 0) {
        reply_error("unknown event");
        return false;
    }
    if (data_node && JSON_NODE_TYPE(data_node) != JSON_NODE_OBJECT) {
        reply_error("event data must be a JSON object");
        return false;
    }
    *event = value;
    /* QEMU's events without data carry no "data" member at all. */
    *data = data_node ? qobject_to(QDict, from_json(data_node)) : NULL;
    return true;
}

static JsonObject *object_member(JsonObject *object, const char *name)
{
    JsonNode *node = json_object_get_member(object, name);

    return node && JSON_NODE_TYPE(node) == JSON_NODE_OBJECT ? json_node_get_object(node) : NULL;
}

static void after_timer(void *opaque, bool timer_freed)
{
    GHashTableIter iter;
    gpointer key;

    if (!timer_freed) {
        return;
    }
    /* The callback freed its timer, so it freed the record it served. */
    g_hash_table_iter_init(&iter, qthrottle_glue_table());
    while (g_hash_table_iter_next(&iter, &key, NULL)) {
        if (key == opaque) {
            char detail[160];
            snprintf(detail, sizeof(detail),
                     "the timer handler freed record %p but the table still "
                     "holds it as a key", opaque);
            add_finding("dangling-entry", detail);
        }
    }
}

/*
 * Invariant 8 at a quiet point (empty table, no timer pending): everything
 * the throttle allocated must be gone. The shims' accounting (QObjects still
 * referenced, timers not freed, records a timer served not freed) is checked
 * on every quiet step. LeakSanitizer's scan, a few milliseconds, runs when the
 * throttle becomes quiet (and something may have leaked): it reports any
 * memory nothing points to any more, whoever allocated it, on stderr, which
 * the harness shows with the step. It looks for references in global memory
 * and the heap, not in stacks or registers (harness/driver.py: LSAN_OPTIONS):
 * the throttle is not running, so a pointer only a dead stack slot or a
 * register still holds is a leak, and the harness keeps what it uses
 * meanwhile (the command being served) in globals.
 */
static void check_quiet(guint table)
{
    bool quiet = table == 0 && qthrottle_clock_pending() == 0;
    long live = qthrottle_qobject_live();
    unsigned timers = qthrottle_clock_alive();
    unsigned records = qthrottle_clock_records_alive();
    char detail[200];

    if (quiet && live != 0) {
        snprintf(detail, sizeof(detail),
                 "no throttle state is left but %ld QObject(s) are still "
                 "referenced", live);
        add_finding("reference-leak", detail);
    }
    if (quiet && timers != 0) {
        snprintf(detail, sizeof(detail),
                 "no throttle state is left but %u timer(s) were never freed "
                 "(timer_free)", timers);
        add_finding("timer-leak", detail);
    }
    if (quiet && records != 0) {
        snprintf(detail, sizeof(detail),
                 "no throttle state is left but %u throttle record(s) were never "
                 "freed", records);
        add_finding("record-leak", detail);
    }
    if (quiet && !was_quiet && may_have_leaked() && __lsan_do_recoverable_leak_check()) {
        add_finding("memory-leak",
                    "no throttle state is left but LeakSanitizer found memory "
                    "that nothing points to (its report is in the C output)");
    }
    was_quiet = quiet;
}

static void reply_state(void)
{
    GPtrArray *log = qthrottle_emissions();
    int64_t next = qthrottle_clock_next_deadline();
    guint table = g_hash_table_size(qthrottle_glue_table());
    char deadline[24] = "null";
    char head[200];

    check_quiet(table);
    if (next >= 0) {
        snprintf(deadline, sizeof(deadline), "%" G_GINT64_FORMAT, next);
    }
    /*
     * Formatted on the stack, not with g_string_append_printf: that allocates
     * for each call, and under AddressSanitizer every allocation records its
     * stack (a tenth of the driver's time per step).
     */
    snprintf(head, sizeof(head), "{\"ok\":true,\"now\":%" G_GINT64_FORMAT ",\"table\":%u,"
             "\"pending_timers\":%u,\"live_qobjects\":%ld,\"next_deadline\":%s",
             qthrottle_clock_now(), table, qthrottle_clock_pending(), qthrottle_qobject_live(),
             deadline);
    g_string_append(reply, head);
    g_string_append(reply, ",\"emitted\":[");
    for (guint i = emissions_seen; i < log->len; i++) {
        if (i > emissions_seen) {
            g_string_append_c(reply, ',');
        }
        g_string_append(reply, g_ptr_array_index(log, i));
    }
    emissions_seen = log->len;
    g_string_append(reply, "],\"findings\":[");
    g_string_append(reply, findings->str);
    g_string_append(reply, "]}");
}

static JsonArray *array_member(JsonObject *object, const char *name)
{
    JsonNode *node = json_object_get_member(object, name);

    return node && JSON_NODE_TYPE(node) == JSON_NODE_ARRAY ? json_node_get_array(node) : NULL;
}

#define KEYS_MAX 3

/*
 * {"op":"keys","records":[{"event":..,"data":..},...]}: the callbacks on up to
 * three records as GLib calls them, every equal(stored = a, lookup = b) in row
 * order, then every hash: {"ok":true,"equal":[[..],..],"hash":[..]}.
 */
static void serve_keys(JsonArray *records)
{
    QAPIEvent events[KEYS_MAX];
    QDict *datas[KEYS_MAX];
    guint count = records ? json_array_get_length(records) : 0;
    guint parsed = 0;

    if (count == 0 || count > KEYS_MAX) {
        reply_error("keys needs \"records\": one to three events");
        return;
    }
    for (; parsed < count; parsed++) {
        JsonNode *node = json_array_get_element(records, parsed);
        if (JSON_NODE_TYPE(node) != JSON_NODE_OBJECT ||
            !event_arg(json_node_get_object(node), &events[parsed], &datas[parsed])) {
            if (JSON_NODE_TYPE(node) != JSON_NODE_OBJECT) {
                reply_error("each record is a JSON object");
            }
            break;
        }
    }
    if (parsed == count) {
        gboolean equal[KEYS_MAX][KEYS_MAX];
        guint hash[KEYS_MAX];

        enter_throttle();
        for (guint i = 0; i < count; i++) {
            for (guint j = 0; j < count; j++) {
                equal[i][j] = qthrottle_glue_equal(events[i], datas[i], events[j], datas[j]);
            }
        }
        for (guint i = 0; i < count; i++) {
            hash[i] = qthrottle_glue_hash(events[i], datas[i]);
        }
        leave_throttle();
        g_string_append(reply, "{\"ok\":true,\"equal\":[");
        for (guint i = 0; i < count; i++) {
            g_string_append(reply, i ? ",[" : "[");
            for (guint j = 0; j < count; j++) {
                g_string_append(reply, j ? "," : "");
                g_string_append(reply, equal[i][j] ? "true" : "false");
            }
            g_string_append_c(reply, ']');
        }
        g_string_append(reply, "],\"hash\":[");
        for (guint i = 0; i < count; i++) {
            char number[16];

            snprintf(number, sizeof(number), "%s%u", i ? "," : "", hash[i]);
            g_string_append(reply, number);  /* no allocation (see reply_state) */
        }
        g_string_append(reply, "]}");
    }
    for (guint i = 0; i < parsed; i++) {
        qobject_unref(datas[i]);
    }
}

static void serve_command(JsonObject *cmd)
{
    const char *op = json_object_get_string_member_with_default(cmd, "op", "");
    QAPIEvent event, event_b;
    QDict *data, *data_b;

    g_string_truncate(findings, 0);
    fresh_run = false;
    if (!strcmp(op, "queue")) {
        if (event_arg(cmd, &event, &data)) {
            /* What qapi_event_emit() hands to the throttle. */
            QDict *qdict = qdict_new();
            qdict_put_obj(qdict, "event", QOBJECT(qstring_from_str(QAPIEvent_str(event))));
            if (data) {
                qdict_put_obj(qdict, "data", QOBJECT(data));
            }
            enter_throttle();
            qthrottle_glue_queue(event, qdict);
            leave_throttle();
            qobject_unref(qdict);
            reply_state();
        }
    } else if (!strcmp(op, "advance")) {
        JsonNode *ns = json_object_get_member(cmd, "ns");
        if (!ns || json_node_get_value_type(ns) != G_TYPE_INT64 || json_node_get_int(ns) < 0) {
            reply_error("advance needs a non-negative integer \"ns\"");
            return;
        }
        enter_throttle();
        qthrottle_clock_advance_to(qthrottle_clock_now() + json_node_get_int(ns), after_timer);
        leave_throttle();
        reply_state();
    } else if (!strcmp(op, "advance_to_next")) {
        int64_t next = qthrottle_clock_next_deadline();
        enter_throttle();
        qthrottle_clock_advance_to(next < 0 ? qthrottle_clock_now() : next, after_timer);
        leave_throttle();
        reply_state();
    } else if (!strcmp(op, "state")) {
        reply_state();
    } else if (!strcmp(op, "log")) {
        GPtrArray *log = qthrottle_emissions();
        g_string_append(reply, "{\"ok\":true,\"log\":[");
        for (guint i = 0; i < log->len; i++) {
            g_string_append_printf(reply, "%s%s", i ? "," : "",
                                   (char *)g_ptr_array_index(log, i));
        }
        g_string_append(reply, "]}");
    } else if (!strcmp(op, "hash")) {
        if (event_arg(cmd, &event, &data)) {
            guint hash;

            enter_throttle();
            hash = qthrottle_glue_hash(event, data);
            leave_throttle();
            g_string_append_printf(reply, "{\"ok\":true,\"hash\":%u}", hash);
            qobject_unref(data);
        }
    } else if (!strcmp(op, "equal")) {
        JsonObject *a = object_member(cmd, "a");
        JsonObject *b = object_member(cmd, "b");
        if (!a || !b) {
            reply_error("equal needs objects \"a\" and \"b\"");
        } else if (event_arg(a, &event, &data)) {
            if (event_arg(b, &event_b, &data_b)) {
                gboolean equal;

                enter_throttle();
                equal = qthrottle_glue_equal(event, data, event_b, data_b);
                leave_throttle();
                g_string_append_printf(reply, "{\"ok\":true,\"equal\":%s}",
                                       equal ? "true" : "false");
                qobject_unref(data_b);
            }
            qobject_unref(data);
        }
    } else if (!strcmp(op, "keys")) {
        serve_keys(array_member(cmd, "records"));
    } else {
        reply_error("unknown op");
    }
}

/* Set by a child just before it exits on purpose; shared with the parent. */
static volatile int *child_exit_reason;

static int child_exited[2];

/*
 * The child leaves on purpose. The parent is told at once (a byte where it waits
 * for SIGCHLD), so that it answers and forks the next child while this one is
 * still being torn down (~1 ms under the sanitizers).
 */
static void __attribute__((noreturn)) child_exit(int reason)
{
    *child_exit_reason = reason;
    if (write(child_exited[1], "", 1) < 0) {
        /* The pipe is full: the parent is awake anyway. */
    }
    _exit(0);
}

/*
 * Start the next run in this process, if that is exactly a fresh process (see
 * the top of this file); otherwise leave everything as it is.
 */
static bool start_over(void)
{
    GPtrArray *log = qthrottle_emissions();
    size_t live;

    if (run_reported || runs_in_process >= RUNS_IN_PROCESS_MAX || !state_before_init ||
        g_hash_table_size(qthrottle_glue_table()) || qthrottle_clock_pending() ||
        qthrottle_clock_alive() || qthrottle_clock_records_alive() ||
        qthrottle_qobject_live() || !qthrottle_tracker_live(QTHROTTLE_OWNER_RUN, &live) ||
        live || state_changed() || !qthrottle_tracker_keep_init()) {
        return false;
    }
    for (guint i = 0; i < log->len; i++) {
        g_free(g_ptr_array_index(log, i));
    }
    g_ptr_array_set_size(log, 0);
    emissions_seen = 0;
    was_quiet = true;
    qthrottle_clock_end_run();
    qthrottle_qobject_end_run();
    qthrottle_glue_state_restore(state_before_init);
    runs_in_process++;
    init_run();
    return true;
}

/* Before each reply of a batch: which output came before it. */
static void mark_output(const char *mark, size_t length)
{
    while (length > 0) {
        ssize_t written = write(STDOUT_FILENO, mark, length);
        if (written < 0 && errno == EINTR) {
            continue;
        }
        if (written <= 0) {
            return;  /* the code under test closed its stdout: its output is not split */
        }
        mark += written;
        length -= written;
    }
}

/* {"op":"batch",...}: replies as it goes; exits when a run cannot start over in place. */
static void serve_batch(JsonObject *cmd)
{
    JsonArray *timelines = array_member(cmd, "timelines");
    JsonNode *settle_node = json_object_get_member(cmd, "settle");
    const char *mark = json_object_get_string_member_with_default(cmd, "mark", "");
    size_t mark_length = strlen(mark);
    gint64 settle;

    if (!fresh_run) {
        reply_error("a batch starts from a fresh run: reset first");
        send_reply();
        return;
    }
    if (!timelines || !settle_node || json_node_get_value_type(settle_node) != G_TYPE_INT64 ||
        (settle = json_node_get_int(settle_node)) < 0) {
        reply_error("batch needs \"timelines\" (arrays of commands) and a non-negative "
                    "integer \"settle\"");
        send_reply();
        return;
    }
    for (guint i = 0; i < json_array_get_length(timelines); i++) {
        JsonNode *node = json_array_get_element(timelines, i);
        JsonArray *timeline = JSON_NODE_TYPE(node) == JSON_NODE_ARRAY
                              ? json_node_get_array(node) : NULL;

        for (guint j = 0; timeline && j < json_array_get_length(timeline); j++) {
            JsonNode *command = json_array_get_element(timeline, j);

            if (JSON_NODE_TYPE(command) == JSON_NODE_OBJECT) {
                serve_command(json_node_get_object(command));
            } else {
                reply_error("each command of a timeline is a JSON object");
            }
            mark_output(mark, mark_length);
            if (g_str_has_prefix(reply->str, "{\"error\"")) {
                send_reply();
                return;  /* the harness gives up on this process */
            }
            send_reply();
        }
        if (!timeline) {
            reply_error("each timeline is a JSON array of commands");
            mark_output(mark, mark_length);
            send_reply();
            return;
        }
        if (settle > 0 && (g_hash_table_size(qthrottle_glue_table()) ||
                           qthrottle_clock_pending())) {
            g_string_truncate(findings, 0);
            enter_throttle();
            qthrottle_clock_advance_to(qthrottle_clock_now() + settle, after_timer);
            leave_throttle();
            reply_state();
            g_string_insert(reply, 1, "\"settle\":true,");
            mark_output(mark, mark_length);
            send_reply();
        }
        if (!start_over()) {
            child_exit(CHILD_RESET);
        }
        g_string_append(reply, "{\"ok\":true,\"fresh\":true}");
        mark_output(mark, mark_length);
        send_reply();
    }
}

/* The command being served: in globals, where LeakSanitizer sees it (check_quiet). */
static char *line;
static size_t line_size;
static JsonParser *parser;

/* One run: serve commands from @commands until "reset" or end of input. */
static void __attribute__((noreturn)) serve(FILE *commands)
{

    /*
     * What the code under test prints is written at once: a buffer would hold it
     * past the reply (its step) or lose it when the run ends with _exit.
     */
    setvbuf(stdout, NULL, _IONBF, 0);
    findings = g_string_new(NULL);
    if (state_before_init) {
        state_after_init = g_malloc(qthrottle_glue_state_size() + 1);
    }
    init_run();
    while (getline(&line, &line_size, commands) >= 0) {
        JsonNode *root;
        const char *op;

        parser = json_parser_new();
        if (!json_parser_load_from_data(parser, line, -1, NULL) ||
            !(root = json_parser_get_root(parser)) ||
            JSON_NODE_TYPE(root) != JSON_NODE_OBJECT) {
            reply_error("each command is one JSON object per line");
            send_reply();
        } else if (!strcmp(op = json_object_get_string_member_with_default(
                               json_node_get_object(root), "op", ""), "reset")) {
            child_exit(CHILD_RESET);
        } else if (!strcmp(op, "batch")) {
            serve_batch(json_node_get_object(root));
        } else {
            serve_command(json_node_get_object(root));
            send_reply();
        }
        g_object_unref(parser);
    }
    child_exit(CHILD_EOF);
}

/* SIGCHLD, as a byte in a pipe that poll() can wait on beside the lifeline. */

static void on_sigchld(int signum)
{
    int saved = errno;

    (void)signum;
    if (write(child_exited[1], "", 1) < 0) {
        /* The pipe is full: poll() wakes up anyway. */
    }
    errno = saved;
}

static int descriptor_arg(const char *text)
{
    char *end;
    long value = strtol(text, &end, 10);

    return *text && !*end && value >= 0 && value < 1 << 20 ? (int)value : -1;
}

/*
 * Wait for @child to end, or to say it leaves for a reset (its exit status is then
 * not waited for, and 0 is returned); if the harness goes first, kill the child and
 * exit. Children that left earlier are reaped on the way.
 */
static int wait_child(pid_t child, int lifeline)
{
    for (;;) {
        struct pollfd watch[2] = {{lifeline, POLLIN, 0}, {child_exited[0], POLLIN, 0}};
        char drained[64];
        int status;
        pid_t done = waitpid(-1, &status, WNOHANG);

        if (done == child) {
            return status;
        }
        if (done > 0) {
            continue;  /* a child that left for a reset, gone now */
        }
        if (done < 0 && errno != EINTR) {
            perror("qthrottle driver: waitpid");
            exit(2);
        }
        if (*child_exit_reason == CHILD_RESET) {
            return 0;
        }
        if (poll(watch, 2, -1) < 0 && errno != EINTR) {
            perror("qthrottle driver: poll");
            exit(2);
        }
        if (watch[0].revents) {  /* the harness is gone */
            kill(child, SIGKILL);
            waitpid(child, &status, 0);
            _exit(0);
        }
        while (read(child_exited[0], drained, sizeof(drained)) > 0) {
        }
    }
}

/*
 * A child that waits to serve: it starts when the server sends a byte on *@go (a
 * socket, so that a spare gone meanwhile is an error, not a SIGPIPE), and leaves if
 * the server closes it first. -1 if the fork failed.
 */
static pid_t fork_child(pid_t server, int lifeline, FILE *commands, int *go)
{
    int pair[2];
    pid_t child;

    if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) < 0) {
        *go = -1;
        return -1;
    }
    child = fork();
    if (child < 0) {
        close(pair[0]);
        close(pair[1]);
        *go = -1;
        return -1;
    }
    if (child == 0) {
        char byte;
        ssize_t got;

        /* Dies with the server, even while stuck in the code under test. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != server) {
            _exit(0);
        }
        signal(SIGCHLD, SIG_DFL);
        close(lifeline);
        close(child_exited[0]);
        close(pair[0]);
        do {
            got = read(pair[1], &byte, 1);
        } while (got < 0 && errno == EINTR);
        if (got != 1) {
            _exit(0);
        }
        close(pair[1]);
        serve(commands);
    }
    close(pair[1]);
    *go = pair[0];
    return child;
}

int main(int argc, char **argv)
{
    int command_fd = argc == 4 ? descriptor_arg(argv[1]) : -1;
    int lifeline = argc == 4 ? descriptor_arg(argv[3]) : -1;
    pid_t server = getpid();
    struct sigaction action = {0};
    FILE *commands;
    pid_t spare;
    int spare_go;

    reply_fd = argc == 4 ? descriptor_arg(argv[2]) : -1;
    if (command_fd < 0 || reply_fd < 0 || lifeline < 0 ||
        !(commands = fdopen(command_fd, "r"))) {
        fprintf(stderr, "usage: %s COMMAND_FD REPLY_FD LIFELINE_FD (run by qthrottle)\n",
                argv[0]);
        return 2;
    }
    /*
     * Read buffered: with one command in flight, a child that exits has read no
     * input meant for the next one.
     */
    setvbuf(commands, NULL, _IOFBF, 1 << 16);
    child_exit_reason = mmap(NULL, sizeof(*child_exit_reason), PROT_READ | PROT_WRITE,
                             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (child_exit_reason == MAP_FAILED || pipe(child_exited) < 0 ||
        fcntl(child_exited[0], F_SETFL, O_NONBLOCK) < 0 ||
        fcntl(child_exited[1], F_SETFL, O_NONBLOCK) < 0) {
        perror("qthrottle driver: setup");
        return 2;
    }
    /* Before any init: the globals a run starts over from. */
    state_before_init = g_malloc(qthrottle_glue_state_size() + 1);
    qthrottle_glue_state_save(state_before_init);
    if (!qthrottle_tracker_install()) {
        g_free(state_before_init);  /* runs never start over in place */
        state_before_init = NULL;
    }
    /*
     * The sanitizers' list of loaded modules, which a report reads from
     * /proc/self/maps (several times) when it first needs it: made here once,
     * so that each child inherits it and a crash costs less.
     */
    {
        char module[2];
        void *offset;

        __sanitizer_get_module_and_offset_for_pc((void *)main, module, sizeof(module), &offset);
    }
    action.sa_handler = on_sigchld;
    action.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigaction(SIGCHLD, &action, NULL);
    reply = g_string_new(NULL);
    g_string_append_printf(reply, "{\"ok\":true,\"driver\":\"qthrottle\",\"protocol\":%d,"
                           "\"build\":\"%s\"}", QTHROTTLE_PROTOCOL, QTHROTTLE_BUILD_ID);
    send_reply();
    spare = fork_child(server, lifeline, commands, &spare_go);
    for (;;) {
        int status;
        pid_t child = spare;

        /*
         * The spare child, forked while the previous one served, starts serving; the
         * next spare is forked while this one serves (a fork costs ~1 ms under the
         * sanitizers). A spare that died meanwhile is replaced at once.
         */
        *child_exit_reason = CHILD_CRASHED;
        if (child < 0 || send(spare_go, "", 1, MSG_NOSIGNAL) != 1) {
            close(spare_go);
            child = fork_child(server, lifeline, commands, &spare_go);
            if (child < 0 || send(spare_go, "", 1, MSG_NOSIGNAL) != 1) {
                perror("qthrottle driver: fork");
                return 2;
            }
        }
        close(spare_go);
        spare = fork_child(server, lifeline, commands, &spare_go);
        status = wait_child(child, lifeline);
        if (*child_exit_reason == CHILD_EOF) {
            return 0;
        }
        if (*child_exit_reason == CHILD_RESET) {
            g_string_append(reply, "{\"ok\":true,\"reset\":true}");
        } else if (WIFSIGNALED(status)) {
            g_string_append_printf(reply, "{\"crash\":{\"signal\":%d}}", WTERMSIG(status));
        } else {
            g_string_append_printf(reply, "{\"crash\":{\"exit\":%d}}", WEXITSTATUS(status));
        }
        send_reply();
    }
}
