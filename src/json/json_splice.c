/*
 * json_splice.c: applying byte-range edits to an original JSON text.
 *
 * This is how the gateway changes a request it passes through (SPEC §3):
 * rather than re-serializing a 260 KB body to change "model", it copies the
 * untouched ranges around a few replacements in one pass with one
 * allocation. The helpers build edits that keep the document valid JSON
 * (commas included), measured against a parsed sl_json_doc.
 */
#include "json/json_internal.h"

#include <stdlib.h>

static int edit_cmp(const void *a, const void *b)
{
    const sl_json_edit *x = a, *y = b;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1; /* an insert goes before a replace at the same spot */
    return 0;
}

/* Few edits is the norm: insertion sort is stable (same-spot inserts keep their order) and cheap. */
static void sort_edits(sl_json_edit *e, size_t n)
{
    if (n > 64) {
        qsort(e, n, sizeof *e, edit_cmp);
        return;
    }
    for (size_t i = 1; i < n; i++) {
        sl_json_edit x = e[i];
        size_t j = i;
        while (j > 0 && edit_cmp(&e[j - 1], &x) > 0) {
            e[j] = e[j - 1];
            j--;
        }
        e[j] = x;
    }
}

/* Sorts and checks the edits; *total is the length of the result. */
static int splice_size(size_t len, sl_json_edit *edits, size_t nedits, size_t *total_out)
{
    if (nedits && !edits) return SL_EINVAL;
    sort_edits(edits, nedits);
    size_t total = len, prev_end = 0;
    for (size_t i = 0; i < nedits; i++) {
        const sl_json_edit *e = &edits[i];
        if (e->start > e->end || e->end > len || e->start < prev_end) return SL_EINVAL; /* overlap */
        if (e->text.n && !e->text.p) return SL_EINVAL;
        total = total - (e->end - e->start);
        if (e->text.n > SIZE_MAX - total) return SL_ELIMIT;
        total += e->text.n;
        prev_end = e->end;
    }
    *total_out = total;
    return SL_OK;
}

/* Writes the result (room for it checked by the caller) to o. */
static void splice_write(char *o, const char *src, size_t len, const sl_json_edit *edits, size_t nedits)
{
    size_t at = 0;
    for (size_t i = 0; i < nedits; i++) {
        const sl_json_edit *e = &edits[i];
        memcpy(o, src + at, e->start - at);
        o += e->start - at;
        if (e->text.n) memcpy(o, e->text.p, e->text.n);
        o += e->text.n;
        at = e->end;
    }
    if (len > at) memcpy(o, src + at, len - at);
}

int sl_json_splice(const char *src, size_t len, sl_json_edit *edits, size_t nedits, sl_buf *out)
{
    size_t total;
    int rc = splice_size(len, edits, nedits, &total);
    if (!rc) rc = sl_buf_reserve(out, total);
    if (rc) return rc;
    splice_write(out->p + out->len, src, len, edits, nedits);
    out->len += total;
    out->p[out->len] = '\0';
    return SL_OK;
}

int sl_json_splice_arena(const char *src, size_t len, sl_json_edit *edits, size_t nedits, sl_arena *a, sl_str *out)
{
    size_t total;
    int rc = splice_size(len, edits, nedits, &total);
    if (rc) return rc;
    if (total == SIZE_MAX) return SL_ELIMIT;
    char *o = sl_arena_alloc(a, total + 1);
    if (!o) return SL_ENOMEM;
    splice_write(o, src, len, edits, nedits);
    o[total] = '\0';
    *out = (sl_str){o, total};
    return SL_OK;
}

int sl_json_edit_add_member(const sl_json_doc *d, int obj, sl_str key, sl_str raw_value, sl_arena *a,
                            sl_json_edit *out)
{
    if (obj < 0 || (uint32_t)obj >= d->ntoks || d->toks[obj].type != SL_JSON_OBJECT) return SL_EINVAL;
    if (!raw_value.p || !raw_value.n) return SL_EINVAL;
    bool comma = d->toks[obj].count > 0;
    sl_buf b;
    sl_buf_init(&b, 0);
    int rc = sl_buf_append(&b, "\"", 1);
    if (!rc) rc = sl_json_escape(&b, key);
    if (!rc) rc = sl_buf_append(&b, "\":", 2);
    if (!rc) rc = sl_buf_append_str(&b, raw_value);
    if (!rc && comma) rc = sl_buf_append(&b, ",", 1);
    sl_str text = SL_STR_NULL;
    if (!rc) {
        text = sl_arena_str(a, sl_buf_str(&b));
        if (!text.p) rc = SL_ENOMEM;
    }
    sl_buf_free(&b);
    if (rc) return rc;
    uint32_t at = d->toks[obj].start + 1; /* right after '{' */
    *out = (sl_json_edit){at, at, text};
    return SL_OK;
}

/*
 * Removes key+value and exactly one comma: the one after the member when
 * another member follows (up to that member's key, so the gap's blanks go
 * too), otherwise the one before it. An only member leaves "{}" (blanks kept).
 */
int sl_json_edit_remove_member(const sl_json_doc *d, int obj, int key, sl_json_edit *out)
{
    if (obj < 0 || (uint32_t)obj >= d->ntoks || d->toks[obj].type != SL_JSON_OBJECT) return SL_EINVAL;
    const sl_json_tok *o = &d->toks[obj];
    uint32_t k = (uint32_t)obj + 1, prev = 0;
    bool have_prev = false;
    for (uint32_t i = 0; i < o->count; i++) {
        uint32_t next_key = d->toks[k + 1].next;
        if ((int)k == key) {
            uint32_t vend = d->toks[k + 1].end;
            if (i + 1 < o->count)
                *out = (sl_json_edit){d->toks[k].start, d->toks[next_key].start, SL_STR_NULL};
            else if (have_prev)
                *out = (sl_json_edit){d->toks[prev + 1].end, vend, SL_STR_NULL};
            else
                *out = (sl_json_edit){d->toks[k].start, vend, SL_STR_NULL};
            return SL_OK;
        }
        prev = k;
        have_prev = true;
        k = next_key;
    }
    return SL_EINVAL; /* not a key of this object */
}
