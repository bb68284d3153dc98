/*
 * The QEMU API the extracted throttle code is compiled against: real GLib,
 * plus one shim per thing faked. Included first by the generated unit.
 */
#ifndef QTHROTTLE_SHIM_H
#define QTHROTTLE_SHIM_H

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>   /* as QEMU's osdep.h: the code under test may print */
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "ghash_tracked.h"

#include "qapi_event_enum.h"
#include "qobject_refcounted.h"
#include "virtual_clock.h"
#include "lock_guard_noop.h"
#include "emit_recorder.h"
#include "trace_noop.h"

#ifndef container_of
#define container_of(ptr, type, member) \
    ((type *)((char *)(ptr) - offsetof(type, member)))
#endif

#endif
