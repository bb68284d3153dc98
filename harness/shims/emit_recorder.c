/* emit_recorder: see emit_recorder.h. */
#include "emit_recorder.h"
#include "virtual_clock.h"
#include "shim_report.h"
#include "allocation_tracker.h"

#include <json-glib/json-glib.h>

static GPtrArray *emissions;

static JsonNode *to_json_node(QObject *obj)
{
    JsonNode *node;
    guint i;

    if (!obj) {
        return json_node_init_null(json_node_alloc());
    }
    if (obj->refcnt <= 0) {
        qthrottle_fatal("use-after-release", "emitting QObject #%u after its last release",
                        obj->serial);
    }
    switch (obj->type) {
    case QTYPE_QSTRING:
        return json_node_init_string(json_node_alloc(), ((QString *)obj)->str);
    case QTYPE_QNUM: {
        QNum *qnum = (QNum *)obj;
        node = json_node_alloc();
        return qnum->is_int ? json_node_init_int(node, qnum->i)
                            : json_node_init_double(node, qnum->d);
    }
    case QTYPE_QBOOL:
        return json_node_init_boolean(json_node_alloc(), ((QBool *)obj)->value);
    case QTYPE_QLIST: {
        JsonArray *array = json_array_new();
        GPtrArray *items = ((QList *)obj)->items;
        for (i = 0; i < items->len; i++) {
            json_array_add_element(array, to_json_node(g_ptr_array_index(items, i)));
        }
        /* The node takes its own reference. */
        node = json_node_init_array(json_node_alloc(), array);
        json_array_unref(array);
        return node;
    }
    case QTYPE_QDICT: {
        JsonObject *object = json_object_new();
        GPtrArray *entries = ((QDict *)obj)->entries;
        for (i = 0; i < entries->len; i++) {
            QDictEntry *entry = g_ptr_array_index(entries, i);
            json_object_set_member(object, entry->key, to_json_node(entry->value));
        }
        node = json_node_init_object(json_node_alloc(), object);
        json_object_unref(object);
        return node;
    }
    default:
        return json_node_init_null(json_node_alloc());
    }
}

char *qthrottle_qobject_to_json(QObject *obj)
{
    JsonNode *node = to_json_node(obj);
    char *text = json_to_string(node, FALSE);

    json_node_unref(node);
    return text;
}

void monitor_qapi_event_emit(QAPIEvent event, QDict *qdict)
{
    JsonBuilder *builder;
    JsonNode *root;

    /* The emission log is the recorder's memory, not the caller's. */
    qthrottle_tracker_pause();
    builder = json_builder_new();
    if (!emissions) {
        emissions = g_ptr_array_new();
    }
    json_builder_begin_object(builder);
    json_builder_set_member_name(builder, "t");
    json_builder_add_int_value(builder, qthrottle_clock_now());
    json_builder_set_member_name(builder, "event");
    json_builder_add_string_value(builder, QAPIEvent_str(event));
    json_builder_set_member_name(builder, "data");
    json_builder_add_value(builder, to_json_node(qdict_get(qdict, "data")));
    json_builder_end_object(builder);
    root = json_builder_get_root(builder);
    g_ptr_array_add(emissions, json_to_string(root, FALSE));
    json_node_unref(root);
    g_object_unref(builder);
    qthrottle_tracker_resume();
}

GPtrArray *qthrottle_emissions(void)
{
    if (!emissions) {
        emissions = g_ptr_array_new();
    }
    return emissions;
}
