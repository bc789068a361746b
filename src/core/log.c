/* log.c: see log.h. */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static sl_log_level log_level = SL_LOG_INFO;

void sl_log_set_level(sl_log_level lvl) { log_level = lvl; }
sl_log_level sl_log_get_level(void) { return log_level; }

/* The seconds part is formatted once a second per thread; the milliseconds by hand (every access log line). */
void sl_log_timestamp(char *out, size_t n)
{
    static _Thread_local time_t cached_sec = -1;
    static _Thread_local char cached[80]; /* "YYYY-MM-DDTHH:MM:SS" (room for what the compiler cannot rule out) */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != cached_sec) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        snprintf(cached, sizeof cached, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        cached_sec = ts.tv_sec;
    }
    if (n < 25) {
        if (n) out[0] = '\0';
        return;
    }
    long ms = ts.tv_nsec / 1000000;
    memcpy(out, cached, 19);
    out[19] = '.';
    out[20] = (char)('0' + ms / 100);
    out[21] = (char)('0' + ms / 10 % 10);
    out[22] = (char)('0' + ms % 10);
    out[23] = 'Z';
    out[24] = '\0';
}

static size_t json_escape_into(char *dst, size_t cap, const char *s)
{
    size_t o = 0;
    for (; *s && o + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            dst[o++] = '\\';
            dst[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(dst + o, cap - o, "\\u%04x", c);
        } else {
            dst[o++] = (char)c;
        }
    }
    dst[o] = '\0';
    return o;
}

static const char *level_names[] = {"debug", "info", "warn", "error"};

void sl_log(sl_log_level lvl, const char *fmt, ...)
{
    if (lvl < log_level) return;
    char msg[1024], esc[2100], ts[40];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_escape_into(esc, sizeof esc, msg);
    sl_log_timestamp(ts, sizeof ts);
    /* One fprintf call: stdio locks the stream, so lines from workers never interleave. */
    fprintf(stderr, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"%s\"}\n", ts, level_names[lvl], esc);
}
