/* The service manager's notification protocol (systemd's sd_notify, libsystemd): READY=1 once a worker is
 * connected, STOPPING=1 when it begins to shut down, WATCHDOG=1 while its main loop turns, STATUS= lines for
 * `systemctl status`. Every call does nothing when the process was not started with a NOTIFY_SOCKET, so the
 * workers run the same under systemd, ops/run or a test. Safe to call from any thread. */
#ifndef RAIKOO_NOTIFY_H
#define RAIKOO_NOTIFY_H

/* The worker is connected to what it needs and at work: READY=1 (and STATUS=status when not NULL). Only the
 * first call sends anything. */
void notify_ready(const char *status);

/* The worker was asked to stop and is finishing its batch: STOPPING=1, once. */
void notify_stopping(void);

/* One turn of a main loop: WATCHDOG=1 when the service manager asked for a watchdog (WATCHDOG_USEC), at
 * most every third of that interval (a clock read otherwise). */
void notify_watchdog(void);

/* STATUS=status: what the worker is doing, for `systemctl status` (never a secret: anyone may read it). */
void notify_status(const char *status);

#endif
