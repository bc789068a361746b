/*
 * accesslog.h: one JSON object a line per request (SPEC §4), to stdout or
 * server.access_log, reopened on SIGUSR1 for log rotation. Lines are written
 * whole with one write(2) under a mutex, so lines from workers never mix.
 */
#ifndef SL_ACCESSLOG_H
#define SL_ACCESSLOG_H

#include "gateway/record.h"

int sl_accesslog_open(const char *path); /* NULL = stdout, "off" = disabled */
int sl_accesslog_reopen(void);
void sl_accesslog_close(void);
void sl_accesslog_write(const sl_req_record *r);

#endif
