/*
 * accesslog.h: one JSON object a line per request (SPEC §4), to stdout or
 * server.access_log, reopened on SIGUSR1 for log rotation. Each thread
 * collects whole lines and writes them in one write(2) under a mutex per loop
 * iteration, so lines from workers never mix and a busy worker pays one
 * syscall for many requests.
 */
#ifndef SL_ACCESSLOG_H
#define SL_ACCESSLOG_H

#include "gateway/record.h"

int sl_accesslog_open(const char *path); /* NULL = stdout, "off" = disabled */
int sl_accesslog_reopen(void);
void sl_accesslog_close(void);
void sl_accesslog_write(const sl_req_record *r);
/* Writes this thread's waiting lines (called once per loop iteration by each worker). */
void sl_accesslog_flush(void);
/* Flushes and frees this thread's buffer (at thread exit). */
void sl_accesslog_thread_done(void);

#endif
