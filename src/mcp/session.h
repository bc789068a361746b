/*
 * session.h: where MCP sessions live: a key -> value store with a TTL per
 * entry, behind a table of operations so that a shared backend (Redis, with
 * the governance work's src/state/) can replace the in-process one and let
 * any gateway instance serve any session.
 *
 * The operations are asynchronous in shape (a callback per call) because a
 * network backend is; the memory backend calls back before returning. The
 * value is an opaque byte string (the host keeps a small JSON record there).
 */
#ifndef SL_MCP_SESSION_H
#define SL_MCP_SESSION_H

#include "core/sl.h"

/* rc: 0, SL_ENOTFOUND (unknown or expired), SL_ELIMIT (store full), SL_ENOMEM, SL_EIO (backend down). */
typedef void (*sl_mcp_store_cb)(void *ud, int rc, sl_str value);

typedef struct sl_mcp_store_ops {
    /* Reads id and, when found, extends its life to ttl_ms from now. */
    void (*get)(void *self, sl_str id, uint64_t ttl_ms, sl_mcp_store_cb cb, void *ud);
    /* Creates or replaces; max_entries bounds the store (0 = no bound). */
    void (*put)(void *self, sl_str id, sl_str value, uint64_t ttl_ms, uint64_t max_entries, sl_mcp_store_cb cb, void *ud);
    void (*del)(void *self, sl_str id, sl_mcp_store_cb cb, void *ud);
} sl_mcp_store_ops;

typedef struct sl_mcp_store {
    const sl_mcp_store_ops *ops;
    void *self;
} sl_mcp_store;

/* The process-wide store in use (the memory backend unless one was installed). */
sl_mcp_store *sl_mcp_store_get(void);
/* Installs another backend (before the workers start). */
void sl_mcp_store_set(const sl_mcp_store_ops *ops, void *self);

/* Memory backend: thread-safe (one mutex), expired entries dropped lazily and by a sweep on put. */
extern const sl_mcp_store_ops sl_mcp_memory_store_ops;
/* Test hooks: clock override (0 = the monotonic clock) and entry count. */
void sl_mcp_memory_store_set_clock(uint64_t now_ms);
size_t sl_mcp_memory_store_count(void);
void sl_mcp_memory_store_clear(void);

#endif
