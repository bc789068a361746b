/*
 * budget.c: how many retries, and when. A retry budget per model and worker
 * (Finagle's idea): over the last 10 seconds, retries may be at most
 * budget_percent of requests, or budget_min, whichever is more. When a
 * provider is down every request would otherwise retry and double the load
 * on whatever is left; with the budget an outage costs at most a fifth more
 * traffic, while a lone failure is always retried. Backoff before a target
 * is tried again is exponential with "equal jitter" (half fixed, half
 * random) so that callers who failed together do not come back together.
 */
#include "balance/balance.h"

static bool state_for(const sl_balancer *b, const sl_config *cfg) { return b->cfg == cfg && cfg; }

/* The slot for second `sec`, emptied when it last held an older second. */
static size_t slot(sl_bal_model *bm, uint64_t sec)
{
    size_t i = (size_t)(sec % SL_BAL_BUDGET_SLOTS);
    if (bm->slot_sec[i] != sec) {
        bm->slot_sec[i] = sec;
        bm->requests[i] = 0;
        bm->retries[i] = 0;
    }
    return i;
}

void sl_bal_note_request(sl_balancer *b, const sl_config *cfg, const sl_model_cfg *m, uint64_t now_ms)
{
    if (!state_for(b, cfg)) return;
    sl_bal_model *bm = &b->models[m->index];
    size_t i = slot(bm, now_ms / 1000);
    if (bm->requests[i] < UINT32_MAX) bm->requests[i]++;
}

bool sl_bal_take_retry(sl_balancer *b, const sl_config *cfg, const sl_model_cfg *m, uint64_t now_ms)
{
    if (!state_for(b, cfg)) return true;
    sl_bal_model *bm = &b->models[m->index];
    uint64_t sec = now_ms / 1000;
    uint64_t req = 0, ret = 0;
    for (size_t i = 0; i < SL_BAL_BUDGET_SLOTS; i++) {
        if (bm->slot_sec[i] + SL_BAL_BUDGET_SLOTS <= sec || bm->slot_sec[i] > sec) continue; /* stale */
        req += bm->requests[i];
        ret += bm->retries[i];
    }
    uint64_t allowed = SL_MAX(m->retry.budget_min, req * m->retry.budget_percent / 100);
    if (ret >= allowed) return false;
    size_t i = slot(bm, sec);
    if (bm->retries[i] < UINT32_MAX) bm->retries[i]++;
    return true;
}

uint64_t sl_bal_backoff_ms(sl_balancer *b, const sl_retry_cfg *rc, uint32_t n)
{
    uint32_t shift = n > 1 ? SL_MIN(n - 1, 20u) : 0;
    uint64_t d = rc->backoff_ms << shift;
    if (d > rc->max_backoff_ms || (d >> shift) != rc->backoff_ms) d = rc->max_backoff_ms;
    if (d < 2) return d;
    return d / 2 + sl_bal_rand(b) % (d - d / 2 + 1);
}

/* ---- retry-after ---- */

#define DAY_MS 86400000ull

static int month_of(const char *p)
{
    static const char names[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    for (int i = 0; i < 12; i++)
        if (memcmp(p, names + 3 * i, 3) == 0) return i + 1;
    return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static bool digits(const char *p, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return false;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return true;
}

/* IMF-fixdate, the form HTTP senders must use: "Sun, 06 Nov 1994 08:49:37 GMT". */
static int parse_http_date(sl_str v, int64_t *unix_s)
{
    if (v.n != 29 || v.p[3] != ',' || v.p[4] != ' ' || v.p[7] != ' ' || v.p[11] != ' ' || v.p[16] != ' ' ||
        v.p[19] != ':' || v.p[22] != ':' || memcmp(v.p + 25, " GMT", 4) != 0)
        return SL_EINVAL;
    int d, y, hh, mm, ss, mon = month_of(v.p + 8);
    if (!mon || !digits(v.p + 5, 2, &d) || !digits(v.p + 12, 4, &y) || !digits(v.p + 17, 2, &hh) ||
        !digits(v.p + 20, 2, &mm) || !digits(v.p + 23, 2, &ss) || d < 1 || d > 31 || hh > 23 || mm > 59 || ss > 60)
        return SL_EINVAL;
    *unix_s = days_from_civil(y, mon, d) * 86400 + hh * 3600 + mm * 60 + ss;
    return SL_OK;
}

int sl_bal_parse_retry_after(sl_str v, int64_t now_unix_s, uint64_t *ms)
{
    v = sl_str_trim(v);
    uint64_t s;
    if (sl_str_to_u64(v, UINT64_MAX, &s) == SL_OK) {
        *ms = s >= DAY_MS / 1000 ? DAY_MS : s * 1000;
        return SL_OK;
    }
    int64_t at;
    if (parse_http_date(v, &at) != SL_OK) return SL_EINVAL;
    int64_t delta = at - now_unix_s;
    *ms = delta <= 0 ? 0 : (uint64_t)delta >= DAY_MS / 1000 ? DAY_MS : (uint64_t)delta * 1000;
    return SL_OK;
}
