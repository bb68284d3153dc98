/*
 * emit_recorder: replaces the broadcast to QMP monitors. Every emission is
 * recorded with the virtual time, the event name and its data as JSON.
 */
#ifndef QTHROTTLE_EMIT_RECORDER_H
#define QTHROTTLE_EMIT_RECORDER_H

#include "qapi_event_enum.h"
#include "qobject_refcounted.h"

#include <glib.h>

/* Not static here: the extractor drops monitor.c's own definition. */
void monitor_qapi_event_emit(QAPIEvent event, QDict *qdict);

/* Driver side: JSON text of each emission, oldest first. */
GPtrArray *qthrottle_emissions(void);
char *qthrottle_qobject_to_json(QObject *obj);

#endif
