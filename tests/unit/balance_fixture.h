/*
 * balance_fixture.h: the fixture the balancer tests share (test_balance.c,
 * test_prefix.c, test_lbshare.c): a config loaded from YAML and a balancer
 * configured from it. Linked into every unit test binary (Makefile
 * TEST_HELPERS); cmocka must be included before this header.
 */
#ifndef SL_TEST_BALANCE_FIXTURE_H
#define SL_TEST_BALANCE_FIXTURE_H

#include "balance/balance.h"
#include "config/config.h"

typedef struct fx {
    sl_config *cfg;
    sl_balancer b;
} fx;

/* Loads YAML text as a config; fails the test (printing the errors) if it does not load. */
sl_config *sl_test_load_config(const char *text);
/* cmocka setup/teardown bodies: *state becomes an fx with the config loaded and a balancer seeded with seed. */
int sl_test_bal_setup(void **state, const char *yaml, uint64_t seed);
int sl_test_bal_teardown(void **state);

static inline const sl_model_cfg *model(fx *f, const char *name)
{
    return sl_config_find_model(f->cfg, sl_str_from_cstr(name));
}

#endif
