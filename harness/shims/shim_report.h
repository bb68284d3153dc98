/*
 * shim_report: how a shim reports a broken contract. The message goes to
 * stderr as "qthrottle-shim: KIND: detail" and the run aborts, so the Python
 * side classifies it like a sanitizer report.
 */
#ifndef QTHROTTLE_SHIM_REPORT_H
#define QTHROTTLE_SHIM_REPORT_H

void qthrottle_fatal(const char *kind, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 2, 3)));

#endif
