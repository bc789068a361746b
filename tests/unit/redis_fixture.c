/* redis_fixture.c: see redis_fixture.h. */
#include "redis_fixture.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

pid_t sl_test_redis_pid;
int sl_test_redis_port;

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) || getsockname(fd, (struct sockaddr *)&a, &len)) {
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

static bool port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0) close(fd);
    return ok;
}

void sl_test_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

bool sl_test_redis_start(void)
{
    char port[16];
    snprintf(port, sizeof port, "%d", sl_test_redis_port);
    sl_test_redis_pid = fork();
    if (sl_test_redis_pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) dup2(devnull, 1), dup2(devnull, 2);
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) { /* up to 5 s for the server to listen */
        if (port_open(sl_test_redis_port)) return true;
        int st;
        if (waitpid(sl_test_redis_pid, &st, WNOHANG) == sl_test_redis_pid) break;
        sl_test_sleep_ms(10);
    }
    sl_test_redis_pid = 0;
    return false;
}

void sl_test_redis_stop(void)
{
    if (sl_test_redis_pid <= 0) return;
    kill(sl_test_redis_pid, SIGKILL);
    waitpid(sl_test_redis_pid, NULL, 0);
    sl_test_redis_pid = 0;
}

int sl_test_redis_setup(void **state)
{
    (void)state;
    if (system("command -v redis-server >/dev/null 2>&1") != 0) return 0;
    sl_test_redis_port = free_port();
    sl_test_redis_start();
    return 0;
}

int sl_test_redis_teardown(void **state)
{
    (void)state;
    sl_test_redis_stop();
    return 0;
}
