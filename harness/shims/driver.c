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
 * exits, the parent acknowledges and forks a fresh one) or end of input.
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
 * Commands:
 *   {"op":"queue","event":NAME,"data":{...}}   qapi_event_emit(NAME, data)
 *   {"op":"advance","ns":N}                     step the virtual clock by N
 *   {"op":"advance_to_next"}                    step to the next deadline
 *   {"op":"state"}                              table size, clock, counts
 *   {"op":"log"}                                every emission of this run
 *   {"op":"hash","event":NAME,"data":{...}}     the hash callback's value
 *   {"op":"equal","a":{"event":..,"data":..},"b":{...}}  equal(a, b)
 *   {"op":"reset"}                              a fresh run
 *
 * After each step that leaves the throttle quiet (empty table, no timer
 * pending), nothing it allocated may be alive: QObjects still referenced,
 * timers never freed and (LeakSanitizer) memory no longer referenced at all
 * are reported as findings, invariant 8.
 */
#include "qapi_event_enum.h"
#include "qobject_refcounted.h"
#include "virtual_clock.h"
#include "emit_recorder.h"
#include "shim_report.h"

#include <errno.h>
#include <fcntl.h>
#include <json-glib/json-glib.h>
#include <poll.h>
#include <sanitizer/lsan_interface.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define QTHROTTLE_PROTOCOL 2
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

/* Why a child exited, as it tells its parent (anything else is a crash). */
enum { CHILD_CRASHED = 0, CHILD_RESET, CHILD_EOF };

static GString *findings;   /* JSON objects, comma separated, per command */
static GString *reply;      /* the reply being built, one line */
static int reply_fd = -1;   /* -1: replies are dropped (fuzz_entry.c) */
static guint emissions_seen;
static bool was_quiet = true;  /* the throttle was quiet after the previous step */

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
 * throttle becomes quiet: it reports any memory nothing points to any more,
 * whoever allocated it, on stderr, which the harness shows with the step.
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
    if (quiet && !was_quiet && __lsan_do_recoverable_leak_check()) {
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

    check_quiet(table);
    g_string_append_printf(reply, "{\"ok\":true,\"now\":%" G_GINT64_FORMAT ",\"table\":%u,"
                           "\"pending_timers\":%u,\"live_qobjects\":%ld,\"next_deadline\":",
                           qthrottle_clock_now(), table, qthrottle_clock_pending(),
                           qthrottle_qobject_live());
    if (next < 0) {
        g_string_append(reply, "null");
    } else {
        g_string_append_printf(reply, "%" G_GINT64_FORMAT, next);
    }
    g_string_append(reply, ",\"emitted\":[");
    for (guint i = emissions_seen; i < log->len; i++) {
        g_string_append_printf(reply, "%s%s", i > emissions_seen ? "," : "",
                               (char *)g_ptr_array_index(log, i));
    }
    emissions_seen = log->len;
    g_string_append_printf(reply, "],\"findings\":[%s]}", findings->str);
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
        g_string_append(reply, "{\"ok\":true,\"log\":[");
        for (guint i = 0; i < log->len; i++) {
            g_string_append_printf(reply, "%s%s", i ? "," : "",
                                   (char *)g_ptr_array_index(log, i));
        }
        g_string_append(reply, "]}");
    } else if (!strcmp(op, "hash")) {
        if (event_arg(cmd, &event, &data)) {
            g_string_append_printf(reply, "{\"ok\":true,\"hash\":%u}",
                                   qthrottle_glue_hash(event, data));
            qobject_unref(data);
        }
    } else if (!strcmp(op, "equal")) {
        JsonObject *a = object_member(cmd, "a");
        JsonObject *b = object_member(cmd, "b");
        if (!a || !b) {
            reply_error("equal needs objects \"a\" and \"b\"");
        } else if (event_arg(a, &event, &data)) {
            if (event_arg(b, &event_b, &data_b)) {
                g_string_append_printf(reply, "{\"ok\":true,\"equal\":%s}",
                                       qthrottle_glue_equal(event, data, event_b, data_b)
                                       ? "true" : "false");
                qobject_unref(data_b);
            }
            qobject_unref(data);
        }
    } else {
        reply_error("unknown op");
    }
}

/* Set by a child just before it exits on purpose; shared with the parent. */
static volatile int *child_exit_reason;

static void __attribute__((noreturn)) child_exit(int reason)
{
    *child_exit_reason = reason;
    _exit(0);
}

/* One run: serve commands from @commands until "reset" or end of input. */
static void __attribute__((noreturn)) serve(FILE *commands)
{
    char *line = NULL;
    size_t size = 0;

    /*
     * What the code under test prints is written at once: a buffer would hold it
     * past the reply (its step) or lose it when the run ends with _exit.
     */
    setvbuf(stdout, NULL, _IONBF, 0);
    findings = g_string_new(NULL);
    qthrottle_glue_init();
    while (getline(&line, &size, commands) >= 0) {
        JsonParser *parser = json_parser_new();
        JsonNode *root;

        if (!json_parser_load_from_data(parser, line, -1, NULL) ||
            !(root = json_parser_get_root(parser)) ||
            JSON_NODE_TYPE(root) != JSON_NODE_OBJECT) {
            reply_error("each command is one JSON object per line");
        } else if (!strcmp(json_object_get_string_member_with_default(
                               json_node_get_object(root), "op", ""), "reset")) {
            child_exit(CHILD_RESET);
        } else {
            serve_command(json_node_get_object(root));
        }
        send_reply();
        g_object_unref(parser);
    }
    child_exit(CHILD_EOF);
}

/* SIGCHLD, as a byte in a pipe that poll() can wait on beside the lifeline. */
static int child_exited[2];

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

/* Wait for @child to end; if the harness goes first, kill the child and exit. */
static int wait_child(pid_t child, int lifeline)
{
    for (;;) {
        struct pollfd watch[2] = {{lifeline, POLLIN, 0}, {child_exited[0], POLLIN, 0}};
        char drained[64];
        int status;
        pid_t done = waitpid(child, &status, WNOHANG);

        if (done == child) {
            return status;
        }
        if (done < 0 && errno != EINTR) {
            perror("qthrottle driver: waitpid");
            exit(2);
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

int main(int argc, char **argv)
{
    int command_fd = argc == 4 ? descriptor_arg(argv[1]) : -1;
    int lifeline = argc == 4 ? descriptor_arg(argv[3]) : -1;
    pid_t server = getpid();
    struct sigaction action = {0};
    FILE *commands;

    reply_fd = argc == 4 ? descriptor_arg(argv[2]) : -1;
    if (command_fd < 0 || reply_fd < 0 || lifeline < 0 ||
        !(commands = fdopen(command_fd, "r"))) {
        fprintf(stderr, "usage: %s COMMAND_FD REPLY_FD LIFELINE_FD (run by qthrottle)\n",
                argv[0]);
        return 2;
    }
    /* Unbuffered, so that input after "reset" stays for the next child. */
    setvbuf(commands, NULL, _IONBF, 0);
    child_exit_reason = mmap(NULL, sizeof(*child_exit_reason), PROT_READ | PROT_WRITE,
                             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (child_exit_reason == MAP_FAILED || pipe(child_exited) < 0 ||
        fcntl(child_exited[0], F_SETFL, O_NONBLOCK) < 0 ||
        fcntl(child_exited[1], F_SETFL, O_NONBLOCK) < 0) {
        perror("qthrottle driver: setup");
        return 2;
    }
    action.sa_handler = on_sigchld;
    action.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigaction(SIGCHLD, &action, NULL);
    reply = g_string_new(NULL);
    g_string_append_printf(reply, "{\"ok\":true,\"driver\":\"qthrottle\",\"protocol\":%d,"
                           "\"build\":\"%s\"}", QTHROTTLE_PROTOCOL, QTHROTTLE_BUILD_ID);
    send_reply();
    for (;;) {
        int status;
        pid_t child;

        *child_exit_reason = CHILD_CRASHED;
        child = fork();
        if (child < 0) {
            perror("qthrottle driver: fork");
            return 2;
        }
        if (child == 0) {
            /* Dies with the server, even while stuck in the code under test. */
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != server) {
                _exit(0);
            }
            signal(SIGCHLD, SIG_DFL);
            close(lifeline);
            close(child_exited[0]);
            close(child_exited[1]);
            serve(commands);
        }
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
