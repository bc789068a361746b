/*
 * mock_embed.c: OpenAI embeddings and the model list.
 *
 * Embeddings are unit vectors derived from a hash of each input's exact bytes
 * (token-array inputs: of their JSON text), so equal inputs always map to the
 * same vector. encoding_format "base64" (what the official Node SDK asks for
 * by default) carries the little-endian float32 array in base64.
 */
#include "mock.h"

#define MAX_INPUTS 2048

typedef struct embed_in {
    sl_str text;     /* hashed */
    uint64_t tokens; /* counted */
} embed_in;

/* One input: a string, or an array of token ids. */
static int embed_input(sl_mock_run *r, int t, embed_in *out)
{
    const sl_json_doc *d = &r->doc;
    if (sl_json_type_of(d, t) == SL_JSON_STRING) {
        int rc = sl_json_str(d, t, &r->hx->arena, &out->text);
        out->tokens = sl_mock_prompt_tokens(out->text.n, 0);
        return rc;
    }
    if (sl_json_type_of(d, t) != SL_JSON_ARRAY) return SL_EINVAL;
    for (int e = sl_json_first(d, t); e >= 0; e = sl_json_next(d, e))
        if (sl_json_type_of(d, e) != SL_JSON_NUMBER) return SL_EINVAL;
    out->text = sl_json_raw(d, t);
    out->tokens = d->toks[t].count;
    return SL_OK;
}

/* input: "s" | ["s", ...] | [1, 2, ...] | [[1, 2], ...]. */
static int embed_inputs(sl_mock_run *r, int in, embed_in **out, size_t *n)
{
    const sl_json_doc *d = &r->doc;
    bool one = sl_json_type_of(d, in) == SL_JSON_STRING ||
               (sl_json_type_of(d, in) == SL_JSON_ARRAY && sl_json_first(d, in) >= 0 &&
                sl_json_type_of(d, sl_json_first(d, in)) == SL_JSON_NUMBER);
    size_t count = one ? 1 : sl_json_type_of(d, in) == SL_JSON_ARRAY ? d->toks[in].count : 0;
    if (count == 0 || count > MAX_INPUTS) return SL_EINVAL;
    embed_in *v = sl_arena_calloc(&r->hx->arena, count * sizeof *v);
    if (!v) return SL_ENOMEM;
    if (one) {
        int rc = embed_input(r, in, &v[0]);
        if (rc) return rc;
    } else {
        size_t i = 0;
        for (int e = sl_json_first(d, in); e >= 0; e = sl_json_next(d, e)) {
            int rc = embed_input(r, e, &v[i++]);
            if (rc) return rc;
        }
    }
    *out = v;
    *n = count;
    return SL_OK;
}

static int embed_render(sl_mock_run *r, sl_str model, const embed_in *in, size_t n, uint32_t dim, bool b64)
{
    float *vec = sl_arena_alloc(&r->hx->arena, dim * sizeof *vec);
    if (!vec) return SL_ENOMEM;
    uint64_t tokens = 0;
    sl_buf tmp;
    sl_buf_init(&tmp, 0);
    sl_jw w;
    sl_jw_init(&w, &r->data);
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "object");
    sl_jw_cstr(&w, "list");
    sl_jw_key(&w, "data");
    sl_jw_arr_begin(&w);
    for (size_t i = 0; i < n; i++) {
        tokens += in[i].tokens;
        sl_mock_embedding(in[i].text, dim, vec);
        sl_jw_obj_begin(&w);
        sl_jw_key(&w, "object");
        sl_jw_cstr(&w, "embedding");
        sl_jw_key(&w, "index");
        sl_jw_int(&w, (int64_t)i);
        sl_jw_key(&w, "embedding");
        if (b64) {
            sl_buf_clear(&tmp);
            if (sl_mock_base64(&tmp, vec, dim * sizeof *vec)) w.err = SL_ENOMEM;
            sl_jw_str(&w, sl_buf_str(&tmp));
        } else {
            sl_jw_arr_begin(&w);
            for (uint32_t j = 0; j < dim; j++) sl_jw_double(&w, vec[j]);
            sl_jw_arr_end(&w);
        }
        sl_jw_obj_end(&w);
    }
    sl_jw_arr_end(&w);
    sl_jw_key(&w, "model");
    sl_jw_str(&w, model);
    sl_jw_key(&w, "usage");
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "prompt_tokens");
    sl_jw_int(&w, (int64_t)tokens);
    sl_jw_key(&w, "total_tokens");
    sl_jw_int(&w, (int64_t)tokens);
    sl_jw_obj_end(&w);
    sl_jw_obj_end(&w);
    sl_buf_free(&tmp);
    return w.err;
}

void sl_mock_openai_embeddings(sl_mock_run *r)
{
    if (sl_mock_parse_body(r)) return;
    const sl_json_doc *d = &r->doc;
    sl_str model, fmt = SL_STR("float");
    embed_in *in = NULL;
    size_t n = 0;
    uint64_t dim;
    int input = sl_json_obj_get(d, 0, "input");
    if (sl_mock_json_str(d, 0, "model", &r->hx->arena, &model)) {
        sl_mock_plan_error(r, 400, "you must provide a model parameter");
        return;
    }
    if (input < 0 || embed_inputs(r, input, &in, &n)) {
        sl_mock_plan_error(r, 400, "'input' must be a string, an array of strings or an array of token arrays");
        return;
    }
    if (sl_mock_json_u64(d, 0, "dimensions", SL_MOCK_MAX_EMBED_DIM, r->opts->embedding_dim, &dim) || dim == 0) {
        sl_mock_plan_error(r, 400, "'dimensions' must be a positive integer");
        return;
    }
    int ef = sl_json_obj_get(d, 0, "encoding_format");
    if (ef >= 0 && sl_json_type_of(d, ef) != SL_JSON_NULL) {
        if (sl_json_str_eq(d, ef, "base64")) fmt = SL_STR("base64");
        else if (!sl_json_str_eq(d, ef, "float")) {
            sl_mock_plan_error(r, 400, "'encoding_format' must be \"float\" or \"base64\"");
            return;
        }
    }
    if (embed_render(r, model, in, n, (uint32_t)dim, sl_str_eq_lit(fmt, "base64")))
        sl_mock_plan_error(r, 500, "mock: could not render the answer");
}

/* ---- models ---- */

static const char *const MODELS[] = {"demo-chat", "demo-fast", "demo-reasoner", "demo-embed"};

void sl_mock_openai_models(sl_mock_run *r)
{
    sl_jw w;
    sl_jw_init(&w, &r->data);
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "object");
    sl_jw_cstr(&w, "list");
    sl_jw_key(&w, "data");
    sl_jw_arr_begin(&w);
    for (size_t i = 0; i < SL_ARRAY_LEN(MODELS); i++) {
        sl_jw_obj_begin(&w);
        sl_jw_key(&w, "id");
        sl_jw_cstr(&w, MODELS[i]);
        sl_jw_key(&w, "object");
        sl_jw_cstr(&w, "model");
        sl_jw_key(&w, "created");
        sl_jw_int(&w, 1700000000);
        sl_jw_key(&w, "owned_by");
        sl_jw_cstr(&w, "sluice-mock");
        sl_jw_obj_end(&w);
    }
    sl_jw_arr_end(&w);
    sl_jw_obj_end(&w);
    if (w.err) sl_mock_plan_error(r, 500, "mock: could not render the answer");
}
