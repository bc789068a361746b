/*
 * state_int.h: what state.c shares with its backends: the handle's common
 * part and the table of backend functions (state.h has the contract).
 */
#ifndef SL_STATE_INT_H
#define SL_STATE_INT_H

#include "state/state.h"

typedef struct sl_state_vt {
    const char *name;
    int (*reserve)(sl_state *h, const sl_reserve *q, sl_reserve_cb cb, void *ud, sl_state_op **op);
    int (*settle)(sl_state *h, const sl_settle *s);
    int (*usage)(sl_state *h, sl_str consumer, int64_t now_ms, sl_usage_cb cb, void *ud, sl_state_op **op);
    int (*get)(sl_state *h, sl_str key, sl_value_cb cb, void *ud, sl_state_op **op);
    int (*set)(sl_state *h, sl_str key, sl_str value, uint64_t ttl_ms, sl_value_cb cb, void *ud, sl_state_op **op);
    int (*incr)(sl_state *h, sl_str key, int64_t by, uint64_t ttl_ms, sl_value_cb cb, void *ud, sl_state_op **op);
    int (*del)(sl_state *h, sl_str key, sl_value_cb cb, void *ud, sl_state_op **op);
    int (*eval)(sl_state *h, const sl_state_script *s, const sl_str *keys, size_t nkeys, const sl_str *args,
                size_t nargs, sl_items_cb cb, void *ud, sl_state_op **op); /* NULL: not supported */
    void (*close)(sl_state *h);
} sl_state_vt;

struct sl_state {
    const sl_state_vt *vt;
    uv_loop_t *loop;
    int backend;         /* sl_state_backend */
    /* a copy of the redis settings it was opened with (strings owned) */
    char *url, *prefix;
    uint64_t timeout_ms;
    int on_error;
};

sl_state *sl_state_memory_open(uv_loop_t *loop);
sl_state *sl_state_redis_open(uv_loop_t *loop, const sl_state_cfg *cfg);
void sl_state_redis_cancel(sl_state_op *op);
void sl_state_sha1_hex(const char *text, char out[41]);

/* Memory table internals, for tests: drop everything. */
void sl_state_memory_reset(void);

#endif
