/* The service manager's notification protocol, through libsystemd's sd_notify. */
#include "notify.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "clock.h"
#include "text.h"

static atomic_int ready_sent, stopping_sent;
static atomic_llong watchdog_every_ms = -1; /* -1: not asked yet; 0: no watchdog */
static atomic_llong watchdog_last_ms;

void notify_ready(const char *status) {
    if (atomic_exchange(&ready_sent, 1))
        return;
    if (status) {
        char msg[256];
        text_printf(msg, sizeof(msg), "READY=1\nSTATUS=%s", status);
        sd_notify(0, msg);
    } else {
        sd_notify(0, "READY=1");
    }
}

void notify_stopping(void) {
    if (!atomic_exchange(&stopping_sent, 1))
        sd_notify(0, "STOPPING=1\nSTATUS=stopping: finishing the batch in hand");
}

void notify_watchdog(void) {
    long long every = atomic_load(&watchdog_every_ms);
    if (every < 0) {
        uint64_t usec = 0;
        /* > 0 when WATCHDOG_USEC is set (and WATCHDOG_PID, if set, is this process). */
        every = sd_watchdog_enabled(0, &usec) > 0 ? (long long)(usec / 3000) : 0;
        if (every == 0 && usec > 0)
            every = 1;
        atomic_store(&watchdog_every_ms, every);
    }
    if (every == 0)
        return;
    long long now = clock_ms(), last = atomic_load(&watchdog_last_ms);
    if (last != 0 && now - last < every)
        return;
    if (atomic_compare_exchange_strong(&watchdog_last_ms, &last, now))
        sd_notify(0, "WATCHDOG=1");
}

void notify_status(const char *status) {
    char msg[256];
    text_printf(msg, sizeof(msg), "STATUS=%s", status ? status : "");
    sd_notify(0, msg);
}
