/*
 * log.h: structured logging. One JSON object a line on stderr:
 * {"ts":"...","level":"info","msg":"...", ...fields}. Fields are passed as a
 * preformatted JSON fragment so the hot path formats once. Secrets must never
 * be passed here (config values are logged by name, not by value).
 */
#ifndef SL_LOG_H
#define SL_LOG_H

#include "core/sl.h"

typedef enum { SL_LOG_DEBUG, SL_LOG_INFO, SL_LOG_WARN, SL_LOG_ERROR } sl_log_level;

void sl_log_set_level(sl_log_level lvl);
sl_log_level sl_log_get_level(void);
/* msg is printf-formatted and JSON-escaped. */
void sl_log(sl_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define sl_debug(...) do { if (sl_log_get_level() <= SL_LOG_DEBUG) sl_log(SL_LOG_DEBUG, __VA_ARGS__); } while (0)
#define sl_info(...) sl_log(SL_LOG_INFO, __VA_ARGS__)
#define sl_warn(...) sl_log(SL_LOG_WARN, __VA_ARGS__)
#define sl_error(...) sl_log(SL_LOG_ERROR, __VA_ARGS__)

/* Formats the current UTC time as RFC 3339 with milliseconds into out (>= 32 bytes). */
void sl_log_timestamp(char *out, size_t n);

#endif
