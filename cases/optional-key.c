/*
 * qthrottle case study "optional-key"
 *
 * A seeded bug, not a QEMU release: stop-bypass, except that
 * BLOCK_IO_ERROR is limited per "node-name" instead of "qom-path".  The
 * schema declares that member optional ('*node-name'), yet the hash and
 * equality callbacks read it with qdict_get_str(), which aborts when it
 * is absent.  Mirrors a 2025 review in which a patch keyed the throttle
 * on an optional member.  Expected to break invariant 7.
 *
 * Written by the qthrottle project in the shape of monitor/monitor.c so
 * that the extractor finds it; this is not QEMU source text.
 *
 * No #include lines on purpose: the qthrottle harness provides the QEMU
 * and GLib API this file uses.
 */

/*
 * Unrelated monitor code.  It only makes the excerpt look like the real
 * file; the extractor must step over it.
 */

/* Short name of a monitor flavour, for log messages. */
static const char *monitor_flavour_name(const Monitor *mon)
{
    if (!mon) {
        return "none";
    }
    return mon->is_qmp ? "qmp" : "hmp";
}

/*
 * Event throttling.
 *
 * One record per throttle key.  A key is the event plus, for events that
 * are limited per instance, one member of the event's data.
 */
typedef struct MonitorQAPIEventState {
    QAPIEvent event;    /* which event this record limits */
    QDict *data;        /* that event's "data" member; source of the key */
    QEMUTimer *timer;   /* fires when the current interval is over */
    QDict *qdict;       /* newest event held back in this interval, or NULL */
} MonitorQAPIEventState;

typedef struct {
    int64_t rate;       /* minimum gap between two sends, in ns; 0: none */
} MonitorQAPIEventConf;

/* Guards the throttle table and the monitor list. */
QemuMutex monitor_lock;

/* Live throttle records, see qapi_event_throttle_hash/_equal. */
static GHashTable *monitor_qapi_event_state;

/* Events missing from this table are never rate limited. */
static MonitorQAPIEventConf monitor_qapi_event_conf[QAPI_EVENT__MAX] = {
    [QAPI_EVENT_BALLOON_CHANGE]            = { 1000 * SCALE_MS },
    [QAPI_EVENT_BLOCK_IO_ERROR]            = { 1000 * SCALE_MS },
    [QAPI_EVENT_HV_BALLOON_STATUS_REPORT]  = { 1000 * SCALE_MS },
    [QAPI_EVENT_MEMORY_DEVICE_SIZE_CHANGE] = { 1000 * SCALE_MS },
    [QAPI_EVENT_QUORUM_FAILURE]            = { 1000 * SCALE_MS },
    [QAPI_EVENT_QUORUM_REPORT_BAD]         = { 1000 * SCALE_MS },
    [QAPI_EVENT_RTC_CHANGE]                = { 1000 * SCALE_MS },
    [QAPI_EVENT_VSERPORT_CHANGE]           = { 1000 * SCALE_MS },
    [QAPI_EVENT_WATCHDOG]                  = { 1000 * SCALE_MS },
};

/*
 * Tests step the virtual clock by hand, so under qtest the intervals are
 * measured on it; otherwise on the host's clock.
 */
static inline QEMUClockType monitor_get_event_clock(void)
{
    return qtest_enabled() ? QEMU_CLOCK_VIRTUAL : QEMU_CLOCK_REALTIME;
}

/* Sends @qdict to every QMP monitor; supplied by the harness. */
static void monitor_qapi_event_emit(QAPIEvent event, QDict *qdict);

static void monitor_qapi_event_handler(void *opaque);

/*
 * Send @qdict at once, or hold it back until its key's interval is over.
 * The caller keeps its reference; the table takes its own.
 */
static void monitor_qapi_event_queue_no_reenter(QAPIEvent event, QDict *qdict)
{
    MonitorQAPIEventConf *conf;
    MonitorQAPIEventState *rec;
    QDict *data;
    bool throttled;

    assert(event < QAPI_EVENT__MAX);
    conf = &monitor_qapi_event_conf[event];
    data = qobject_to(QDict, qdict_get(qdict, "data"));
    throttled = conf->rate != 0;

    /*
     * An I/O error that pauses the VM is a state change the management
     * layer has to see every time, and a paused guest issues no further
     * requests, so there is nothing to limit.
     */
    if (event == QAPI_EVENT_BLOCK_IO_ERROR &&
        !strcmp(qdict_get_str(data, "action"), "stop")) {
        trace_qthrottle_event_bypass(event, qdict);
        throttled = false;
    }
    trace_qthrottle_event_queue(event, qdict, conf->rate);

    QEMU_LOCK_GUARD(&monitor_lock);

    if (!throttled) {
        /* No limit for this event: straight out. */
        monitor_qapi_event_emit(event, qdict);
    } else {
        MonitorQAPIEventState probe = { .event = event, .data = data };

        rec = g_hash_table_lookup(monitor_qapi_event_state, &probe);
        if (rec) {
            /* Interval still running: only the newest event survives. */
            trace_qthrottle_event_delay(event, qdict);
            qobject_unref(rec->qdict);
            rec->qdict = qobject_ref(qdict);
        } else {
            /* Quiet key: send now and open an interval for it. */
            int64_t now = qemu_clock_get_ns(monitor_get_event_clock());

            monitor_qapi_event_emit(event, qdict);

            rec = g_new(MonitorQAPIEventState, 1);
            rec->event = event;
            rec->data = qobject_ref(data);
            rec->qdict = NULL;
            rec->timer = timer_new_ns(monitor_get_event_clock(),
                                      monitor_qapi_event_handler, rec);
            g_hash_table_add(monitor_qapi_event_state, rec);
            timer_mod_ns(rec->timer, now + conf->rate);
        }
    }
}

void qapi_event_emit(QAPIEvent event, QDict *qdict)
{
    monitor_qapi_event_queue_no_reenter(event, qdict);
}

/*
 * End of an interval.  A held-back event goes out and starts a new
 * interval; with nothing held back the key is quiet and its record goes.
 */
static void monitor_qapi_event_handler(void *opaque)
{
    MonitorQAPIEventState *rec = opaque;
    MonitorQAPIEventConf *conf = &monitor_qapi_event_conf[rec->event];

    trace_qthrottle_event_expire(rec->event, rec->qdict);
    QEMU_LOCK_GUARD(&monitor_lock);

    if (rec->qdict) {
        int64_t now = qemu_clock_get_ns(monitor_get_event_clock());

        monitor_qapi_event_emit(rec->event, rec->qdict);
        qobject_unref(rec->qdict);
        rec->qdict = NULL;
        timer_mod_ns(rec->timer, now + conf->rate);
    } else {
        g_hash_table_remove(monitor_qapi_event_state, rec);
        qobject_unref(rec->data);
        timer_free(rec->timer);
        g_free(rec);
    }
}

/* Must agree with qapi_event_throttle_equal: equal keys, equal hashes. */
static unsigned int qapi_event_throttle_hash(const void *key)
{
    const MonitorQAPIEventState *evstate = key;
    unsigned int hash = evstate->event * 255;

    if (evstate->event == QAPI_EVENT_VSERPORT_CHANGE) {
        hash += g_str_hash(qdict_get_str(evstate->data, "id"));
    }
    if (evstate->event == QAPI_EVENT_QUORUM_REPORT_BAD) {
        hash += g_str_hash(qdict_get_str(evstate->data, "node-name"));
    }
    if (evstate->event == QAPI_EVENT_MEMORY_DEVICE_SIZE_CHANGE) {
        hash += g_str_hash(qdict_get_str(evstate->data, "qom-path"));
    }
    if (evstate->event == QAPI_EVENT_BLOCK_IO_ERROR) {
        hash += g_str_hash(qdict_get_str(evstate->data, "node-name"));
    }
    return hash;
}

/*
 * Two records share a key when they are the same event and, for events
 * limited per instance, name the same instance.
 */
static gboolean qapi_event_throttle_equal(const void *a, const void *b)
{
    const MonitorQAPIEventState *lhs = a;
    const MonitorQAPIEventState *rhs = b;

    if (lhs->event != rhs->event) {
        return FALSE;
    }

    if (lhs->event == QAPI_EVENT_VSERPORT_CHANGE) {
        return !strcmp(qdict_get_str(lhs->data, "id"),
                       qdict_get_str(rhs->data, "id"));
    }
    if (lhs->event == QAPI_EVENT_QUORUM_REPORT_BAD) {
        return !strcmp(qdict_get_str(lhs->data, "node-name"),
                       qdict_get_str(rhs->data, "node-name"));
    }
    if (lhs->event == QAPI_EVENT_MEMORY_DEVICE_SIZE_CHANGE) {
        return !strcmp(qdict_get_str(lhs->data, "qom-path"),
                       qdict_get_str(rhs->data, "qom-path"));
    }
    if (lhs->event == QAPI_EVENT_BLOCK_IO_ERROR) {
        return !strcmp(qdict_get_str(lhs->data, "node-name"),
                       qdict_get_str(rhs->data, "node-name"));
    }

    /* Everything else is limited per event name. */
    return TRUE;
}

static void monitor_qapi_event_init(void)
{
    monitor_qapi_event_state = g_hash_table_new(qapi_event_throttle_hash,
                                                qapi_event_throttle_equal);
}

/* More unrelated monitor code. */

/* Number of QMP monitors that would see an event sent right now. */
int monitor_count_event_listeners(void)
{
    Monitor *mon;
    int listeners = 0;

    QEMU_LOCK_GUARD(&monitor_lock);
    QTAILQ_FOREACH(mon, &mon_list, entry) {
        if (mon->is_qmp && !mon->skip_events) {
            listeners++;
        }
    }
    return listeners;
}

/* Greeting line a freshly opened human monitor prints. */
static void monitor_format_greeting(GString *buf, int major, int minor)
{
    g_string_append_printf(buf, "human monitor of emulator %d.%d ready",
                           major, minor);
    g_string_append(buf, " (commands: 'help')\n");
}
