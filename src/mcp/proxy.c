/*
 * proxy.c: type proxy servers: upstream MCP servers aggregated under one
 * endpoint. The gateway holds one session with each upstream per client
 * session (ids kept in the client's session record, so another instance can
 * continue it), opened when the client initializes (capabilities merged) and
 * reopened when an upstream forgets it (404).
 *
 *   tools/list   every upstream's tools (all pages), names prefixed per
 *                upstream, filtered by access control, paged by us
 *   tools/call   routed by prefix, the prefix stripped, the answer and the
 *                notifications before it (progress, logging) passed back
 *   others       (resources, prompts, completion, logging) forwarded to the
 *                first upstream, which is meaningful with one upstream
 *
 * Upstream failures of a tool call are isError results; of a listing, that
 * upstream's tools are left out (and logged).
 */
#include <stdio.h>

#include "core/log.h"
#include "mcp/mcp_int.h"
#include "mcp/upcall.h"

#define INIT_ID "\"sluice-init\""
#define LIST_ID "\"sluice-list\""
#define MAX_LIST_PAGES 50
#define MAX_CAP_KEYS 16

typedef enum { P_INIT, P_LIST, P_CALL, P_FORWARD, P_DELETE } pkind;
enum { S_START, S_INIT_SENT, S_NOTIFY_SENT, S_NOTIFIED, S_MAIN_SENT };

typedef struct pop {
    mcp_call *c;
    mcp_x *x;
    pkind kind;
    size_t ui;
    int step;
    bool retried;
    mcp_up *up;
    sl_buf final;      /* the upstream's answer to the current message */
    sl_buf acc;        /* P_LIST: tool objects joined by ','; P_INIT: capability members */
    sl_buf cursor;     /* P_LIST: the upstream's nextCursor */
    sl_buf body;       /* the current main message */
    unsigned pages;
    size_t ncap;
    char capkeys[MAX_CAP_KEYS][32];
    sl_str want;       /* raw id of the answer to the main message */
} pop;

static void step(pop *op);

static void op_free(pop *op)
{
    if (op->up) mcp_up_cancel(op->up);
    op->up = NULL;
    sl_buf_free(&op->final);
    sl_buf_free(&op->acc);
    sl_buf_free(&op->cursor);
    sl_buf_free(&op->body);
}

static void op_cancel(mcp_call *c) { op_free(c->op); }

static pop *op_new(mcp_call *c, pkind kind)
{
    mcp_x *x = c ? c->x : NULL;
    pop *op = sl_arena_calloc(c->x->a, sizeof *op);
    if (!op) return NULL;
    op->c = c, op->x = x, op->kind = kind;
    sl_buf_init(&op->final, x->mc->max_response_bytes);
    sl_buf_init(&op->acc, x->mc->max_response_bytes);
    sl_buf_init(&op->cursor, 4096);
    sl_buf_init(&op->body, x->r->cfg->server.limits.max_body_bytes);
    c->op = op;
    c->cancel = op_cancel;
    return op;
}

/* Completion: buffers freed first, since completing may free the arena op lives in. */
static void complete_result(pop *op, sl_buf *res, bool raw)
{
    mcp_call *c = op->c;
    op_free(op);
    c->op = NULL, c->cancel = NULL;
    if (raw) sl_mcp_call_raw(c, sl_buf_str(res));
    else sl_mcp_call_result(c, sl_buf_str(res));
    sl_buf_free(res);
}

static void complete_tool_error(pop *op, const char *msg)
{
    sl_buf b;
    sl_buf_init(&b, 0);
    sl_mcp_write_tool_result(&b, sl_str_from_cstr(msg), SL_STR_NULL, true);
    if (!op->x->r->rec.error.n) op->x->r->rec.error = sl_arena_str(op->x->a, sl_str_from_cstr(msg));
    complete_result(op, &b, false);
}

static void complete_error(pop *op, int code, const char *msg)
{
    mcp_call *c = op->c;
    op_free(op);
    c->op = NULL, c->cancel = NULL;
    sl_mcp_call_error(c, code, "%s", msg);
}

static const sl_mcp_upstream_cfg *upstream(const pop *op) { return &op->x->srv->upstreams[op->ui]; }
static bool is_legacy(const pop *op) { return upstream(op)->transport == SL_MCP_UP_SSE; }

/* ---------------------------------------------------------------- talking to one upstream */

static void on_up_msg(void *ud, sl_str msg)
{
    pop *op = ud;
    sl_arena a;
    sl_arena_init(&a, 1024, 0);
    sl_json_doc d;
    if (sl_json_parse(&d, msg.p, msg.n, &a, NULL, NULL) == SL_OK && sl_json_type_of(&d, 0) == SL_JSON_OBJECT) {
        int id = sl_json_obj_get(&d, 0, "id"), method = sl_json_obj_get(&d, 0, "method");
        bool is_answer = id >= 0 && method < 0;
        sl_str want = op->step == S_INIT_SENT ? SL_STR(INIT_ID) : op->want;
        if (is_answer && sl_str_eq(sl_json_raw(&d, id), want)) {
            sl_buf_clear(&op->final);
            if (sl_buf_append_str(&op->final, msg) != SL_OK) sl_buf_clear(&op->final);
        } else if (method >= 0 && op->step == S_MAIN_SENT && (op->kind == P_CALL || op->kind == P_FORWARD)) {
            sl_mcp_call_notify(op->c, msg); /* progress, logging, ... before the answer */
        }
    }
    sl_arena_free(&a);
}

static void on_up_done(void *ud, int status, sl_str sid, const char *err);
static const mcp_up_cbs up_cbs = {.on_msg = on_up_msg, .on_done = on_up_done};

static bool up_send(pop *op, const char *method, sl_str body, sl_str want)
{
    mcp_x *x = op->x;
    const char *sid = x->sess.up_sid[op->ui];
    mcp_up_req req = {
        .cfg = upstream(op),
        .method = method,
        .session_id = sid ? sl_str_from_cstr(sid) : SL_STR_NULL,
        .version = sl_str_from_cstr(x->sess.version),
        .body = body,
        .want_id = want,
        .request_id = x->r->request_id,
        .max_bytes = x->mc->max_response_bytes,
    };
    sl_buf_clear(&op->final);
    op->up = mcp_up_start(x->r->gw->w->upstream, &req, &up_cbs, op);
    return op->up != NULL;
}

static bool send_initialize(pop *op)
{
    char body[400];
    int n = snprintf(body, sizeof body,
                     "{\"jsonrpc\":\"2.0\",\"id\":" INIT_ID ",\"method\":\"initialize\",\"params\":{\"protocolVersion\":"
                     "\"%s\",\"capabilities\":{},\"clientInfo\":{\"name\":\"sluice\",\"version\":\"%s\"}}}",
                     op->x->sess.version, SL_VERSION);
    op->step = S_INIT_SENT;
    return up_send(op, "POST", (sl_str){body, (size_t)n}, SL_STR(INIT_ID));
}

/* P_INIT: adds the capability members of an initialize answer that are not there yet. */
static void merge_capabilities(pop *op)
{
    sl_arena a;
    sl_arena_init(&a, 1024, 0);
    sl_json_doc d;
    if (sl_json_parse(&d, op->final.p, op->final.len, &a, NULL, NULL) == SL_OK && sl_json_type_of(&d, 0) == SL_JSON_OBJECT) {
        int res = sl_json_obj_get(&d, 0, "result");
        int caps = res >= 0 && sl_json_type_of(&d, res) == SL_JSON_OBJECT ? sl_json_obj_get(&d, res, "capabilities") : -1;
        if (caps >= 0 && sl_json_type_of(&d, caps) == SL_JSON_OBJECT) {
            for (int k = sl_json_first(&d, caps); k >= 0; k = sl_json_next(&d, k)) {
                sl_str key = sl_json_str_raw(&d, k);
                bool seen = key.n >= sizeof op->capkeys[0];
                for (size_t i = 0; i < op->ncap && !seen; i++) seen = sl_str_eq_lit(key, op->capkeys[i]);
                if (seen || op->ncap == MAX_CAP_KEYS) continue;
                memcpy(op->capkeys[op->ncap], key.p, key.n);
                op->capkeys[op->ncap++][key.n] = '\0';
                if (op->acc.len) sl_buf_append(&op->acc, ",", 1);
                sl_buf_append_str(&op->acc, sl_json_raw(&d, k));
                sl_buf_append(&op->acc, ":", 1);
                sl_buf_append_str(&op->acc, sl_json_raw(&d, sl_json_member_value(k)));
            }
        }
    }
    sl_arena_free(&a);
}

/* ---------------------------------------------------------------- what each kind does with an answer */

static sl_str prefix_of(const sl_mcp_upstream_cfg *u) { return sl_str_from_cstr(u->prefix ? u->prefix : ""); }

/* P_LIST: the tools of one page, names prefixed; true when another page follows. */
static bool take_tools_page(pop *op)
{
    sl_arena a;
    sl_arena_init(&a, 4096, 0);
    sl_json_doc d;
    bool more = false;
    sl_buf_clear(&op->cursor);
    if (sl_json_parse(&d, op->final.p, op->final.len, &a, NULL, NULL) == SL_OK && sl_json_type_of(&d, 0) == SL_JSON_OBJECT) {
        int res = sl_json_obj_get(&d, 0, "result");
        int tools = res >= 0 && sl_json_type_of(&d, res) == SL_JSON_OBJECT ? sl_json_obj_get(&d, res, "tools") : -1;
        sl_str prefix = prefix_of(upstream(op));
        for (int t = tools >= 0 && sl_json_type_of(&d, tools) == SL_JSON_ARRAY ? sl_json_first(&d, tools) : -1; t >= 0;
             t = sl_json_next(&d, t)) {
            int name = sl_json_type_of(&d, t) == SL_JSON_OBJECT ? sl_json_obj_get(&d, t, "name") : -1;
            sl_str nm;
            if (name < 0 || sl_json_type_of(&d, name) != SL_JSON_STRING || sl_json_str(&d, name, &a, &nm) != SL_OK) continue;
            sl_buf full;
            sl_buf_init(&full, 0);
            sl_buf_append(&full, "\"", 1);
            sl_json_escape(&full, prefix);
            sl_json_escape(&full, nm);
            sl_buf_append(&full, "\"", 1);
            sl_json_edit e = {d.toks[name].start - d.toks[t].start, d.toks[name].end - d.toks[t].start, sl_buf_str(&full)};
            sl_str obj = sl_json_raw(&d, t);
            if (op->acc.len) sl_buf_append(&op->acc, ",", 1);
            sl_json_splice(obj.p, obj.n, &e, 1, &op->acc);
            sl_buf_free(&full);
        }
        int nc = res >= 0 && sl_json_type_of(&d, res) == SL_JSON_OBJECT ? sl_json_obj_get(&d, res, "nextCursor") : -1;
        sl_str cur;
        if (nc >= 0 && sl_json_type_of(&d, nc) == SL_JSON_STRING && sl_json_str(&d, nc, &a, &cur) == SL_OK && cur.n &&
            sl_buf_append_str(&op->cursor, cur) == SL_OK)
            more = ++op->pages < MAX_LIST_PAGES;
    }
    sl_arena_free(&a);
    return more;
}

/* P_LIST: our page of the merged list, filtered by access control. */
static void finish_list(pop *op)
{
    mcp_x *x = op->x;
    mcp_call *c = op->c;
    sl_buf all;
    sl_buf_init(&all, 0);
    sl_buf_append(&all, "[", 1);
    sl_buf_append(&all, op->acc.p, op->acc.len);
    sl_buf_append(&all, "]", 1);
    sl_json_doc d;
    uint64_t off = 0;
    int cur = c->m.params >= 0 ? sl_json_obj_get(c->doc, c->m.params, "cursor") : -1;
    sl_str cs;
    bool bad_cursor = false;
    if (cur >= 0 && sl_json_type_of(c->doc, cur) == SL_JSON_STRING) {
        bad_cursor = sl_json_str(c->doc, cur, x->a, &cs) != SL_OK || cs.n < 2 || cs.p[0] != 'o' || cs.p[1] != ':' ||
                     sl_str_to_u64((sl_str){cs.p + 2, cs.n - 2}, UINT32_MAX, &off) != SL_OK;
    }
    if (bad_cursor || sl_json_parse(&d, all.p, all.len, x->a, NULL, NULL) != SL_OK) {
        sl_buf_free(&all);
        complete_error(op, bad_cursor ? SL_JSONRPC_INVALID_PARAMS : SL_JSONRPC_INTERNAL_ERROR,
                       bad_cursor ? "Invalid cursor" : "upstream tool list is not valid JSON");
        return;
    }
    sl_buf out;
    sl_buf_init(&out, 0);
    sl_jw w;
    sl_jw_init(&w, &out);
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "tools"), sl_jw_arr_begin(&w);
    uint64_t seen = 0, shown = 0;
    bool more = false;
    for (int t = sl_json_first(&d, 0); t >= 0; t = sl_json_next(&d, t)) {
        sl_str name;
        if (sl_json_str(&d, sl_json_obj_get(&d, t, "name"), x->a, &name) != SL_OK) continue;
        if (!sl_mcp_tool_allowed(x->r, sl_str_from_cstr(x->srv->name), name)) continue;
        if (seen++ < off) continue;
        if (shown == x->mc->page_size) {
            more = true;
            break;
        }
        sl_jw_raw(&w, sl_json_raw(&d, t));
        shown++;
    }
    sl_jw_arr_end(&w);
    if (more) {
        char next[32];
        snprintf(next, sizeof next, "o:%llu", (unsigned long long)(off + shown));
        sl_jw_key(&w, "nextCursor"), sl_jw_cstr(&w, next);
    }
    sl_jw_obj_end(&w);
    sl_buf_free(&all);
    complete_result(op, &out, false);
}

static void finish_init(pop *op)
{
    sl_buf caps, res;
    sl_buf_init(&caps, 0);
    sl_buf_init(&res, 0);
    sl_buf_append(&caps, "{", 1);
    bool has_tools = false;
    for (size_t i = 0; i < op->ncap; i++) has_tools |= !strcmp(op->capkeys[i], "tools");
    sl_buf_append(&caps, op->acc.p, op->acc.len);
    if (!has_tools) sl_buf_append_cstr(&caps, op->acc.len ? ",\"tools\":{}" : "\"tools\":{}");
    sl_buf_append(&caps, "}", 1);
    int rc = sl_mcp_write_initialize(op->x->srv, sl_str_from_cstr(op->x->sess.version), sl_buf_str(&caps), &res);
    sl_buf_free(&caps);
    if (rc) {
        sl_buf_free(&res);
        complete_error(op, SL_JSONRPC_INTERNAL_ERROR, "cannot build the initialize result");
        return;
    }
    complete_result(op, &res, false);
}

/* Moves to the next upstream (P_INIT, P_LIST, P_DELETE) or ends. */
static void next_upstream(pop *op)
{
    op->ui++;
    op->step = S_START;
    op->retried = false;
    op->pages = 0;
    sl_buf_clear(&op->cursor);
    step(op);
}

static void upstream_failed(pop *op, const char *err)
{
    const sl_mcp_upstream_cfg *u = upstream(op);
    sl_warn("mcp: server %s upstream %s: %s", op->x->srv->name, u->name, err ? err : "failed");
    switch (op->kind) {
    case P_INIT:
    case P_LIST:
    case P_DELETE: next_upstream(op); return; /* the others still serve */
    case P_CALL: {
        char msg[300];
        snprintf(msg, sizeof msg, "upstream MCP server %s failed: %s", u->name, err ? err : "error");
        complete_tool_error(op, msg);
        return;
    }
    case P_FORWARD: complete_error(op, SL_JSONRPC_INTERNAL_ERROR, "upstream MCP server failed"); return;
    }
}

static void main_answered(pop *op)
{
    switch (op->kind) {
    case P_INIT: next_upstream(op); return; /* nothing more than the session */
    case P_LIST:
        if (take_tools_page(op)) {
            op->step = S_NOTIFIED; /* same upstream, next page */
            step(op);
        } else {
            next_upstream(op);
        }
        return;
    case P_DELETE:
        next_upstream(op);
        return;
    case P_CALL:
    case P_FORWARD: {
        sl_buf res = op->final;
        sl_buf_init(&op->final, 0);
        complete_result(op, &res, true);
        return;
    }
    }
}

static void on_up_done(void *ud, int status, sl_str sid, const char *err)
{
    pop *op = ud;
    mcp_x *x = op->x;
    op->up = NULL;
    char **slot = &x->sess.up_sid[op->ui];
    if (status == 404 && *slot && (*slot)[0] && !op->retried && op->kind != P_DELETE) {
        /* The upstream forgot our session: open a new one and send again. */
        *slot = NULL;
        x->sess_dirty = true;
        op->retried = true;
        op->step = S_START;
        step(op);
        return;
    }
    if (err || (status && (status < 200 || status >= 300))) {
        char st[48];
        snprintf(st, sizeof st, "HTTP status %d", status);
        upstream_failed(op, err ? err : st);
        return;
    }
    switch (op->step) {
    case S_INIT_SENT:
        if (!op->final.len) {
            upstream_failed(op, "no answer to initialize");
            return;
        }
        if (op->kind == P_INIT) merge_capabilities(op);
        *slot = sl_arena_strndup(x->a, sid.p ? sid.p : "", sid.n); /* "" = the upstream keeps no session */
        x->sess_dirty = true;
        op->step = S_NOTIFY_SENT;
        if (!up_send(op, "POST", SL_STR("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}"), SL_STR_NULL))
            upstream_failed(op, "cannot start the upstream request");
        return;
    case S_NOTIFY_SENT:
        op->step = S_NOTIFIED;
        step(op);
        return;
    default:
        if (!op->final.len && op->kind != P_DELETE && op->kind != P_INIT) {
            upstream_failed(op, "no answer from the upstream");
            return;
        }
        main_answered(op);
    }
}

/* ---------------------------------------------------------------- the driver */

static bool build_main(pop *op)
{
    switch (op->kind) {
    case P_LIST: {
        sl_buf_clear(&op->body);
        op->want = SL_STR(LIST_ID);
        sl_jw w;
        sl_jw_init(&w, &op->body);
        sl_jw_obj_begin(&w);
        sl_jw_key(&w, "jsonrpc"), sl_jw_cstr(&w, "2.0");
        sl_jw_key(&w, "id"), sl_jw_raw(&w, SL_STR(LIST_ID));
        sl_jw_key(&w, "method"), sl_jw_cstr(&w, "tools/list");
        sl_jw_key(&w, "params"), sl_jw_obj_begin(&w);
        if (op->cursor.len) sl_jw_key(&w, "cursor"), sl_jw_str(&w, sl_buf_str(&op->cursor));
        sl_jw_obj_end(&w);
        sl_jw_obj_end(&w);
        return w.err == SL_OK;
    }
    default: return true; /* P_CALL and P_FORWARD set body when they start */
    }
}

static void step(pop *op)
{
    mcp_x *x = op->x;
    if (op->kind == P_INIT || op->kind == P_LIST || op->kind == P_DELETE) {
        if (op->ui >= x->srv->nupstreams) {
            if (op->kind == P_INIT) finish_init(op);
            else if (op->kind == P_LIST) finish_list(op);
            else {
                mcp_call *c = op->c;
                op_free(op);
                c->op = NULL, c->cancel = NULL;
                sl_mcp_delete_local(x);
            }
            return;
        }
    }
    char *sid = x->sess.up_sid[op->ui];
    if (op->kind == P_DELETE) {
        if (is_legacy(op) || !sid || !sid[0]) {
            next_upstream(op);
            return;
        }
        op->step = S_MAIN_SENT;
        if (!up_send(op, "DELETE", SL_STR_NULL, SL_STR_NULL)) next_upstream(op);
        return;
    }
    if (!is_legacy(op) && !sid && op->step == S_START) {
        if (!send_initialize(op)) upstream_failed(op, "cannot start the upstream request");
        return;
    }
    if (op->kind == P_INIT) { /* legacy upstreams open their sessions per exchange */
        next_upstream(op);
        return;
    }
    if (!build_main(op)) {
        upstream_failed(op, "request too large");
        return;
    }
    op->step = S_MAIN_SENT;
    if (!up_send(op, "POST", sl_buf_str(&op->body), op->want)) upstream_failed(op, "cannot start the upstream request");
}

/* ---------------------------------------------------------------- entry points (host.c) */

void sl_mcp_proxy_initialize(mcp_x *x, mcp_call *c, sl_str client_version)
{
    pop *op = op_new(c, P_INIT);
    if (!op) {
        sl_mcp_call_error(c, SL_JSONRPC_INTERNAL_ERROR, "out of memory");
        return;
    }
    step(op);
}

void sl_mcp_proxy_tools_list(mcp_call *c)
{
    pop *op = op_new(c, P_LIST);
    if (!op) {
        sl_mcp_call_error(c, SL_JSONRPC_INTERNAL_ERROR, "out of memory");
        return;
    }
    step(op);
}

/* The upstream whose prefix starts the name (the longest such prefix). */
static int route(const sl_mcp_server_cfg *s, sl_str tool)
{
    int best = -1;
    size_t best_len = 0;
    for (size_t i = 0; i < s->nupstreams; i++) {
        sl_str p = prefix_of(&s->upstreams[i]);
        if (sl_str_starts_with(tool, p) && (best < 0 || p.n > best_len) && tool.n > p.n) best = (int)i, best_len = p.n;
    }
    return best;
}

void sl_mcp_proxy_tools_call(mcp_call *c, sl_str tool, int args_tok)
{
    const sl_mcp_server_cfg *s = c->x->srv;
    int ui = route(s, tool);
    if (ui < 0) {
        sl_mcp_call_error(c, SL_JSONRPC_INVALID_PARAMS, "Unknown tool: %.*s", (int)SL_MIN(tool.n, 200), tool.p);
        return;
    }
    pop *op = op_new(c, P_CALL);
    if (!op) {
        sl_mcp_call_error(c, SL_JSONRPC_INTERNAL_ERROR, "out of memory");
        return;
    }
    op->ui = (size_t)ui;
    op->want = c->m.id;
    /* The caller's message with the name as the upstream knows it. */
    const sl_json_doc *d = c->doc;
    int name = sl_json_obj_get(d, c->m.params, "name");
    sl_str msg = sl_json_raw(d, c->m.tok);
    sl_str prefix = prefix_of(&s->upstreams[ui]);
    sl_buf q;
    sl_buf_init(&q, 0);
    sl_buf_append(&q, "\"", 1);
    sl_json_escape(&q, (sl_str){tool.p + prefix.n, tool.n - prefix.n});
    sl_buf_append(&q, "\"", 1);
    sl_json_edit e = {d->toks[name].start - d->toks[c->m.tok].start, d->toks[name].end - d->toks[c->m.tok].start,
                      sl_buf_str(&q)};
    int rc = sl_json_splice(msg.p, msg.n, &e, 1, &op->body);
    sl_buf_free(&q);
    if (rc) {
        complete_error(op, SL_JSONRPC_INTERNAL_ERROR, "request too large");
        return;
    }
    step(op);
}

void sl_mcp_proxy_forward(mcp_call *c)
{
    pop *op = op_new(c, P_FORWARD);
    if (!op) {
        sl_mcp_call_error(c, SL_JSONRPC_INTERNAL_ERROR, "out of memory");
        return;
    }
    op->want = c->m.id;
    if (sl_buf_append_str(&op->body, sl_json_raw(c->doc, c->m.tok)) != SL_OK) {
        complete_error(op, SL_JSONRPC_INTERNAL_ERROR, "request too large");
        return;
    }
    step(op);
}

void sl_mcp_proxy_delete(mcp_x *x)
{
    /* A DELETE has no JSON-RPC call: a synthetic one carries the op. */
    mcp_call *c = sl_arena_calloc(x->a, sizeof *c);
    pop *op = c ? (c->x = x, op_new(c, P_DELETE)) : NULL;
    if (!op) {
        sl_mcp_delete_local(x);
        return;
    }
    x->calls = c, x->ncalls = 1; /* so that a client abort cancels it */
    step(op);
}
