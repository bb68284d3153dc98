/*
 * The driver: a fork server speaking one JSON object per line on stdin and
 * answering one JSON object per line on stdout.
 *
 * The parent never runs throttle code: for each run it forks a child that
 * initialises the throttle and serves commands until "reset" (the child
 * exits, the parent acknowledges and forks a fresh one) or end of input.
 * When a child dies (sanitizer report, abort, signal), the parent answers
 * the pending command with {"crash": ...} and forks a fresh child, so a
 * crash costs one run, never the session. Sanitizer text goes to stderr.
 *
 * Commands:
 *   {"op":"queue","event":NAME,"data":{...}}   qapi_event_emit(NAME, data)
 *   {"op":"advance","ns":N}                     step the virtual clock by N
 *   {"op":"advance_to_next"}                    step to the next deadline
 *   {"op":"state"}                              table size, clock, counts
 *   {"op":"log"}                                every emission of this run
 *   {"op":"hash","event":NAME,"data":{...}}     the hash callback's value
 *   {"op":"equal","a":{"event":..,"data":..},"b":{...}}  equal(a, b)
 *   {"op":"reset"}                              a fresh run
 */
#include "qapi_event_enum.h"
#include "qobject_refcounted.h"
#include "virtual_clock.h"
#include "emit_recorder.h"
#include "shim_report.h"

#include <errno.h>
#include <json-glib/json-glib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Generated next to the extracted code, which alone knows its types. */
void qthrottle_glue_init(void);
void qthrottle_glue_queue(QAPIEvent event, QDict *qdict);
GHashTable *qthrottle_glue_table(void);
guint qthrottle_glue_hash(QAPIEvent event, QDict *data);
gboolean qthrottle_glue_equal(QAPIEvent event_a, QDict *data_a,
                              QAPIEvent event_b, QDict *data_b);

enum { CHILD_EOF = 0, CHILD_RESET = 17 };

static GString *findings;   /* JSON objects, comma separated, per command */
static guint emissions_seen;

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

static void reply_error(const char *message)
{
    char *quoted = json_quote(message);

    printf("{\"error\":%s}\n", quoted);
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

static void reply_state(void)
{
    GPtrArray *log = qthrottle_emissions();
    int64_t next = qthrottle_clock_next_deadline();
    guint table = g_hash_table_size(qthrottle_glue_table());
    long live = qthrottle_qobject_live();

    if (table == 0 && qthrottle_clock_pending() == 0 && live != 0) {
        char detail[160];
        snprintf(detail, sizeof(detail),
                 "no throttle state is left but %ld QObject(s) are still "
                 "referenced", live);
        add_finding("reference-leak", detail);
    }
    printf("{\"ok\":true,\"now\":%" G_GINT64_FORMAT ",\"table\":%u,"
           "\"pending_timers\":%u,\"live_qobjects\":%ld,\"next_deadline\":",
           qthrottle_clock_now(), table, qthrottle_clock_pending(), live);
    if (next < 0) {
        printf("null");
    } else {
        printf("%" G_GINT64_FORMAT, next);
    }
    printf(",\"emitted\":[");
    for (guint i = emissions_seen; i < log->len; i++) {
        printf("%s%s", i > emissions_seen ? "," : "", (char *)g_ptr_array_index(log, i));
    }
    emissions_seen = log->len;
    printf("],\"findings\":[%s]}\n", findings->str);
}

static void serve_command(JsonObject *cmd)
{
    const char *op = json_object_get_string_member_with_default(cmd, "op", "");
    QAPIEvent event, event_b;
    QDict *data, *data_b;

    g_string_truncate(findings, 0);
    if (!strcmp(op, "queue")) {
        if (event_arg(cmd, &event, &data)) {
            /* What qapi_event_emit() hands to the throttle. */
            QDict *qdict = qdict_new();
            qdict_put_obj(qdict, "event", QOBJECT(qstring_from_str(QAPIEvent_str(event))));
            if (data) {
                qdict_put_obj(qdict, "data", QOBJECT(data));
            }
            qthrottle_glue_queue(event, qdict);
            qobject_unref(qdict);
            reply_state();
        }
    } else if (!strcmp(op, "advance")) {
        JsonNode *ns = json_object_get_member(cmd, "ns");
        if (!ns || json_node_get_value_type(ns) != G_TYPE_INT64 || json_node_get_int(ns) < 0) {
            reply_error("advance needs a non-negative integer \"ns\"");
            return;
        }
        qthrottle_clock_advance_to(qthrottle_clock_now() + json_node_get_int(ns), after_timer);
        reply_state();
    } else if (!strcmp(op, "advance_to_next")) {
        int64_t next = qthrottle_clock_next_deadline();
        qthrottle_clock_advance_to(next < 0 ? qthrottle_clock_now() : next, after_timer);
        reply_state();
    } else if (!strcmp(op, "state")) {
        reply_state();
    } else if (!strcmp(op, "log")) {
        GPtrArray *log = qthrottle_emissions();
        printf("{\"ok\":true,\"log\":[");
        for (guint i = 0; i < log->len; i++) {
            printf("%s%s", i ? "," : "", (char *)g_ptr_array_index(log, i));
        }
        printf("]}\n");
    } else if (!strcmp(op, "hash")) {
        if (event_arg(cmd, &event, &data)) {
            printf("{\"ok\":true,\"hash\":%u}\n", qthrottle_glue_hash(event, data));
            qobject_unref(data);
        }
    } else if (!strcmp(op, "equal")) {
        JsonObject *a = object_member(cmd, "a");
        JsonObject *b = object_member(cmd, "b");
        if (!a || !b) {
            reply_error("equal needs objects \"a\" and \"b\"");
        } else if (event_arg(a, &event, &data)) {
            if (event_arg(b, &event_b, &data_b)) {
                printf("{\"ok\":true,\"equal\":%s}\n",
                       qthrottle_glue_equal(event, data, event_b, data_b) ? "true" : "false");
                qobject_unref(data_b);
            }
            qobject_unref(data);
        }
    } else {
        reply_error("unknown op");
    }
}

/* stdout carries the protocol: GLib's own messages (g_assert's "Bail out!") go to stderr. */
static void print_to_stderr(const gchar *text)
{
    fputs(text, stderr);
}

static void serve(void)
{
    char *line = NULL;
    size_t size = 0;

    /* Unbuffered, so that input after "reset" stays for the next child. */
    setvbuf(stdin, NULL, _IONBF, 0);
    g_set_print_handler(print_to_stderr);
    findings = g_string_new(NULL);
    qthrottle_glue_init();
    while (getline(&line, &size, stdin) >= 0) {
        JsonParser *parser = json_parser_new();
        JsonNode *root;

        if (!json_parser_load_from_data(parser, line, -1, NULL) ||
            !(root = json_parser_get_root(parser)) ||
            JSON_NODE_TYPE(root) != JSON_NODE_OBJECT) {
            reply_error("each command is one JSON object per line");
        } else if (!strcmp(json_object_get_string_member_with_default(
                               json_node_get_object(root), "op", ""), "reset")) {
            fflush(stdout);
            _exit(CHILD_RESET);
        } else {
            serve_command(json_node_get_object(root));
        }
        fflush(stdout);
        g_object_unref(parser);
    }
    fflush(stdout);
    _exit(CHILD_EOF);
}

int main(void)
{
    for (;;) {
        int status;
        pid_t child;

        fflush(stdout);
        child = fork();
        if (child < 0) {
            perror("qthrottle driver: fork");
            return 2;
        }
        if (child == 0) {
            serve();
        }
        while (waitpid(child, &status, 0) < 0) {
            if (errno != EINTR) {
                perror("qthrottle driver: waitpid");
                return 2;
            }
        }
        if (WIFEXITED(status) && WEXITSTATUS(status) == CHILD_EOF) {
            return 0;
        }
        if (WIFEXITED(status) && WEXITSTATUS(status) == CHILD_RESET) {
            printf("{\"ok\":true,\"reset\":true}\n");
        } else if (WIFSIGNALED(status)) {
            printf("{\"crash\":{\"signal\":%d}}\n", WTERMSIG(status));
        } else {
            printf("{\"crash\":{\"exit\":%d}}\n", WEXITSTATUS(status));
        }
    }
}
