/* balance_fixture.c: see balance_fixture.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "balance_fixture.h"
#include "core/buf.h"

sl_config *sl_test_load_config(const char *text)
{
    sl_config *c = NULL;
    sl_buf e;
    sl_buf_init(&e, 0);
    int rc = sl_config_load_string("t", text, strlen(text), &c, &e);
    if (rc) fprintf(stderr, "%.*s", (int)e.len, e.p);
    sl_buf_free(&e);
    assert_int_equal(rc, SL_OK);
    return c;
}

int sl_test_bal_setup(void **state, const char *yaml, uint64_t seed)
{
    fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->cfg = sl_test_load_config(yaml);
    assert_int_equal(sl_balancer_init(&f->b, seed), SL_OK);
    assert_int_equal(sl_balancer_configure(&f->b, f->cfg), SL_OK);
    *state = f;
    return 0;
}

int sl_test_bal_teardown(void **state)
{
    fx *f = *state;
    sl_balancer_free(&f->b);
    sl_config_release(f->cfg);
    free(f);
    return 0;
}
