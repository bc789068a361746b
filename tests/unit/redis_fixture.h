/*
 * redis_fixture.h: a real redis-server on a free loopback port for the unit
 * tests that need one (test_state.c, test_lbshare.c). Linked into every unit
 * test binary (Makefile TEST_HELPERS). Tests skip themselves when
 * sl_test_redis_pid is 0 (redis-server missing or not starting).
 */
#ifndef SL_TEST_REDIS_FIXTURE_H
#define SL_TEST_REDIS_FIXTURE_H

#include <stdbool.h>
#include <sys/types.h>

extern pid_t sl_test_redis_pid;
extern int sl_test_redis_port;

void sl_test_sleep_ms(long ms);
/* Starts redis-server on sl_test_redis_port and waits (up to 5 s) until it listens. */
bool sl_test_redis_start(void);
void sl_test_redis_stop(void);
/* cmocka group setup/teardown: pick a free port and start the server (if redis-server is installed). */
int sl_test_redis_setup(void **state);
int sl_test_redis_teardown(void **state);

#endif
