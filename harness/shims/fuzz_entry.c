/*
 * fuzz_entry: a libFuzzer target over the same throttle code, shims and
 * command handling as the driver, for bench/engines_bench.py, which compares
 * a coverage-guided fuzzer with qthrottle's engines.
 *
 * The alphabet is a JSON array of driver commands ({"op":"queue",...},
 * {"op":"advance","ns":N}, {"op":"advance_to_next"}) in the file named by
 * QTHROTTLE_FUZZ_COMMANDS. Each input byte picks one of them (byte modulo
 * their number), so an input is a timeline.
 *
 * The oracle is what a fuzzer has: ASan and UBSan reports, and the shims'
 * own aborts (qthrottle_fatal: use-after-release, double-release,
 * missing-member, ...). The driver's findings (dangling-entry,
 * reference-leak: JSON replies, not aborts) and the invariants of
 * model/invariants.py are not looked at: that is what the comparison measures.
 *
 * Every input starts from the initial state, as each of the driver's forked
 * runs does: after the timeline the clock runs out (every timer fires, so the
 * records are released as after a quiet period), then the run's table, timers,
 * QObjects and emissions are discarded. LeakSanitizer stays off (run with
 * -detect_leaks=0): records an input leaves behind are dropped, not freed.
 *
 * QTHROTTLE_FUZZ_ECHO=1 prints each command to stderr before it runs, so a
 * crashing input can be read as a timeline.
 */

/* driver.c's own headers first, so that renaming main below touches only driver.c. */
#include "qapi_event_enum.h"
#include "qobject_refcounted.h"
#include "virtual_clock.h"
#include "emit_recorder.h"
#include "shim_report.h"

#include <errno.h>
#include <json-glib/json-glib.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/*
 * The driver's command handling, compiled into this unit so that every
 * operation takes exactly the driver's path (JSON decoding, timer hook). Its
 * fork server main() is not used: libFuzzer owns main().
 */
#define main qthrottle_driver_main
#include "driver.c"
#undef main

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static JsonArray *alphabet;
static JsonObject *to_next_deadline;
static bool echo;

static void run_command(JsonObject *command)
{
    if (echo) {
        JsonNode *node = json_node_init_object(json_node_alloc(), command);
        char *text = json_to_string(node, FALSE);

        fprintf(stderr, "fuzz_entry: %s\n", text);
        g_free(text);
        json_node_unref(node);
    }
    serve_command(command);
    g_string_truncate(reply, 0);  /* nobody reads the replies here */
}

/* Back to the state of a fresh driver run. */
static void end_run(void)
{
    GPtrArray *log = qthrottle_emissions();

    for (guint i = 0; i < log->len; i++) {
        g_free(g_ptr_array_index(log, i));
    }
    g_ptr_array_set_size(log, 0);
    emissions_seen = 0;
    was_quiet = true;
    /* No destroy callbacks: the records are not touched, whatever state they are in. */
    g_hash_table_destroy(qthrottle_glue_table());
    qthrottle_clock_end_run();
    qthrottle_qobject_end_run();
    qthrottle_glue_init();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *path = getenv("QTHROTTLE_FUZZ_COMMANDS");
    JsonParser *parser = json_parser_new();
    GError *error = NULL;
    JsonNode *root = NULL;

    (void)argc;
    (void)argv;
    if (path && json_parser_load_from_file(parser, path, &error)) {
        root = json_parser_get_root(parser);
    }
    if (!root || JSON_NODE_TYPE(root) != JSON_NODE_ARRAY ||
        json_array_get_length(json_node_get_array(root)) == 0) {
        fprintf(stderr, "fuzz_entry: QTHROTTLE_FUZZ_COMMANDS must name a file holding a "
                "non-empty JSON array of driver commands%s%s\n",
                error ? ": " : "", error ? error->message : "");
        exit(2);
    }
    alphabet = json_array_ref(json_node_get_array(root));
    for (guint i = 0; i < json_array_get_length(alphabet); i++) {
        JsonNode *command = json_array_get_element(alphabet, i);
        if (JSON_NODE_TYPE(command) != JSON_NODE_OBJECT) {
            fprintf(stderr, "fuzz_entry: command %u is not a JSON object\n", i);
            exit(2);
        }
    }
    g_object_unref(parser);
    to_next_deadline = json_object_new();
    json_object_set_string_member(to_next_deadline, "op", "advance_to_next");
    echo = getenv("QTHROTTLE_FUZZ_ECHO") != NULL;
    findings = g_string_new(NULL);
    reply = g_string_new(NULL);
    qthrottle_glue_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    guint count = json_array_get_length(alphabet);

    for (size_t i = 0; i < size; i++) {
        run_command(json_array_get_object_element(alphabet, data[i] % count));
    }
    /*
     * Run the clock out. A record's timer fires at most twice after its last
     * event (send the held-back one, then free), so this bound ends even a
     * throttle that keeps re-arming.
     */
    for (size_t fired = 0; qthrottle_clock_pending() && fired <= 2 * size + 2; fired++) {
        run_command(to_next_deadline);
    }
    end_run();
    return 0;
}
