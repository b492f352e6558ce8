/* The consumer loop of every worker that reads a Kafka topic in a consumer group. */
#include "consumer.h"

#include <stdlib.h>

#include "kafka.h"
#include "log.h"
#include "text.h"
#include "worker.h"

struct consumer {
    rd_kafka_t *rk;
    rd_kafka_queue_t
        *commit_queue; /* the consumer's queue: commit outcomes come with rd_kafka_consumer_poll */
    long batch_max, batch_wait_ms;
    consumer_fill_t fill;
    rd_kafka_message_t **m; /* the batch gathered, not yet applied */
    size_t n, cap;
    int previous_full; /* the last batch gathered was full: the next one waits to fill */
    /* Offsets applied in PostgreSQL but not yet known to be committed to the group, per partition. A commit
     * that fails (a rebalance under way, the coordinator away) is made again, and at revoke the partitions'
     * offsets are committed synchronously: otherwise their next owner applies a whole backlog again
     * (recognised by the worker, but repeated work). */
    rd_kafka_topic_partition_list_t *pending;
    int commit_failing;      /* the last commit failed: commit again, and log only state changes */
    long commit_interval_ms; /* commit.interval.ms: the least time between two commits while running */
    int64_t commit_due_at;   /* worker_now_ms() from which the pending offsets are committed (again) */
    /* A batch the worker could not apply is held (co->m) and offered again with a backoff, while the
     * assignment is paused and the loop goes on polling: the member keeps its place in the group
     * (max.poll.interval.ms), and rebalances and commit outcomes are served meanwhile. */
    int held;             /* co->m was offered and not applied */
    int paused;           /* the assignment is paused (and each partition assigned meanwhile) */
    long retry_ms;        /* the current backoff: HOLD_FIRST_MS doubling up to HOLD_MAX_MS */
    int64_t retry_at;     /* worker_now_ms() of the next offer */
    int64_t held_since;   /* worker_now_ms() of the first failed offer */
    unsigned long offers; /* failed offers of the batch held */
    int64_t polled_at;    /* worker_now_ms() of the last consumer poll */
};

/* The backoff between two offers of a batch that was not applied, and the longest poll while waiting. */
#define HOLD_FIRST_MS 250
#define HOLD_MAX_MS 5000
#define HOLD_POLL_MS 100
/* While the worker has no room (the mailer's senders full), the loop still polls this often, paused. */
#define ROOM_POLL_MS 1000
/* The longest wait for the outcome of a synchronous commit (at revoke, at shutdown): a coordinator that is
 * away must not hold a rebalance or the shutdown up. */
#define COMMIT_WAIT_MS 5000

/* Records that partition (topic, part) is applied up to offset (exclusive). */
static void pending_set(consumer_t *co, const char *topic, int32_t part, int64_t offset) {
    rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find(co->pending, topic, part);
    if (!tp)
        tp = rd_kafka_topic_partition_list_add(co->pending, topic, part);
    if (offset > tp->offset)
        tp->offset = offset;
}

/* Forgets the pending offsets that a commit of offs confirmed. */
static void pending_confirmed(consumer_t *co, const rd_kafka_topic_partition_list_t *offs) {
    for (int i = 0; offs && i < offs->cnt; i++) {
        const rd_kafka_topic_partition_t *c = &offs->elems[i];
        rd_kafka_topic_partition_t *tp =
            rd_kafka_topic_partition_list_find(co->pending, c->topic, c->partition);
        if (tp && !c->err && tp->offset <= c->offset)
            rd_kafka_topic_partition_list_del(co->pending, c->topic, c->partition);
    }
}

static void commit_state(consumer_t *co, rd_kafka_resp_err_t err) {
    if (err && !co->commit_failing)
        log_warn(NULL,
                 "offset commit failed (%s): committing again until it succeeds (meanwhile a redelivery "
                 "is recognised by the worker and changes nothing)",
                 rd_kafka_err2str(err));
    else if (!err && co->commit_failing)
        log_info(NULL, "offset commits succeed again");
    co->commit_failing = err != RD_KAFKA_RESP_ERR_NO_ERROR;
    if (err)
        co->commit_due_at = worker_now_ms() + 1000;
}

/* Served by rd_kafka_consumer_poll: the outcome of an asynchronous commit. */
static void commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *offs,
                      void *opaque) {
    (void)rk;
    consumer_t *co = opaque;
    if (err == RD_KAFKA_RESP_ERR__NO_OFFSET)
        err = RD_KAFKA_RESP_ERR_NO_ERROR;
    /* A commit refused as a whole (rebalance in progress, coordinator away) may carry no error on its
     * partitions: nothing of it is confirmed, and every offset stays pending for the next attempt. */
    if (!err)
        pending_confirmed(co, offs);
    for (int i = 0; !err && offs && i < offs->cnt; i++)
        err = offs->elems[i].err;
    commit_state(co, err);
}

/* Commits offs and waits at most COMMIT_WAIT_MS for the outcome (on a queue of its own: callable from
 * rebalance_cb, also while the consumer closes). The error of the commit or of its first partition that
 * failed; RD_KAFKA_RESP_ERR__TIMED_OUT when no outcome came in time (the commit may still land later). When
 * it succeeded and co is given, the pending offsets it confirmed are forgotten. */
static rd_kafka_resp_err_t commit_bounded(consumer_t *co, rd_kafka_t *rk,
                                          const rd_kafka_topic_partition_list_t *offs) {
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_resp_err_t err = rd_kafka_commit_queue(rk, offs, q, NULL, NULL);
    if (!err) {
        err = RD_KAFKA_RESP_ERR__TIMED_OUT;
        int64_t end = worker_now_ms() + COMMIT_WAIT_MS;
        for (int64_t left; (left = end - worker_now_ms()) > 0;) {
            rd_kafka_event_t *ev = rd_kafka_queue_poll(q, (int)left);
            if (!ev)
                continue;
            if (rd_kafka_event_type(ev) != RD_KAFKA_EVENT_OFFSET_COMMIT) {
                rd_kafka_event_destroy(ev);
                continue;
            }
            err = rd_kafka_event_error(ev);
            if (err == RD_KAFKA_RESP_ERR__NO_OFFSET)
                err = RD_KAFKA_RESP_ERR_NO_ERROR;
            const rd_kafka_topic_partition_list_t *res = rd_kafka_event_topic_partition_list(ev);
            for (int i = 0; !err && res && i < res->cnt; i++)
                err = res->elems[i].err;
            if (!err && co)
                pending_confirmed(co, res ? res : offs);
            rd_kafka_event_destroy(ev);
            break;
        }
    }
    rd_kafka_queue_destroy(q); /* an outcome that comes later is dropped with it */
    return err;
}

/* Commits every pending offset: asynchronously while running (the outcome arrives in commit_cb), or
 * synchronously with a bounded wait (shutdown). */
static void commit_pending(consumer_t *co, int async) {
    if (co->pending->cnt == 0)
        return;
    rd_kafka_topic_partition_list_t *offs = rd_kafka_topic_partition_list_copy(co->pending);
    rd_kafka_resp_err_t err;
    if (async) {
        err = rd_kafka_commit_queue(co->rk, offs, co->commit_queue, commit_cb, co);
        if (err)
            commit_state(co, err);
    } else {
        err = commit_bounded(co, co->rk, offs);
        if (err) {
            log_warn(NULL,
                     "offset commit at shutdown failed (%s): whoever reads %d partition(s) next sees their "
                     "last messages again and recognises them",
                     rd_kafka_err2str(err), offs->cnt);
            /* Not again at the revoke of the close that follows: one bounded wait at shutdown, not two. */
            for (int i = 0; i < offs->cnt; i++)
                rd_kafka_topic_partition_list_del(co->pending, offs->elems[i].topic,
                                                  offs->elems[i].partition);
        }
    }
    rd_kafka_topic_partition_list_destroy(offs);
}

/* Commits the pending offsets once commit.interval.ms has passed since the last commit (a commit that
 * failed: once a second). A commit per batch would be one write to the group's offsets partition per
 * batch: at 200 commands/s, batches of one or two, the group coordinator of the stack's broker fell
 * behind and answered no heartbeat for 6 s, and the member lost its partitions (measured, docs/
 * BENCHMARKS.md). Offsets not yet committed cost only work: whoever reads them again recognises them. */
static void commit_due(consumer_t *co) {
    int64_t now = worker_now_ms();
    if (co->pending->cnt == 0 || now < co->commit_due_at)
        return;
    co->commit_due_at = now + co->commit_interval_ms;
    commit_pending(co, 1); /* on failure commit_state makes it due again in a second */
}

/* At revoke: commits the pending offsets of the partitions that go, waiting at most COMMIT_WAIT_MS, so that
 * their next owner starts after what this worker applied; then forgets them (they are no longer ours).
 * Without an answer in time (the coordinator away) the rebalance or the shutdown goes on: the next owner
 * reads from the last offset committed before, and recognises what it reads again. */
static void commit_revoked(consumer_t *co, rd_kafka_t *rk, const rd_kafka_topic_partition_list_t *parts) {
    rd_kafka_topic_partition_list_t *offs = rd_kafka_topic_partition_list_new(parts->cnt);
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *tp =
            rd_kafka_topic_partition_list_find(co->pending, parts->elems[i].topic, parts->elems[i].partition);
        if (tp)
            rd_kafka_topic_partition_list_add(offs, tp->topic, tp->partition)->offset = tp->offset;
    }
    if (offs->cnt > 0 && !rd_kafka_assignment_lost(rk)) {
        rd_kafka_resp_err_t err = commit_bounded(NULL, rk, offs);
        if (err)
            log_warn(NULL,
                     "offset commit at revoke failed (%s): the next owner of %d partition(s) sees some "
                     "messages again and recognises them",
                     rd_kafka_err2str(err), offs->cnt);
    }
    for (int i = 0; i < offs->cnt; i++)
        rd_kafka_topic_partition_list_del(co->pending, offs->elems[i].topic, offs->elems[i].partition);
    rd_kafka_topic_partition_list_destroy(offs);
}

/* Drops the gathered messages of partitions this worker no longer owns: they were not applied, and their
 * new owner reads them from the last committed offset. */
static void batch_drop_partitions(consumer_t *co, const rd_kafka_topic_partition_list_t *parts) {
    size_t j = 0;
    for (size_t i = 0; i < co->n; i++) {
        rd_kafka_message_t *m = co->m[i];
        if (rd_kafka_topic_partition_list_find(parts, rd_kafka_topic_name(m->rkt), m->partition))
            rd_kafka_message_destroy(m);
        else
            co->m[j++] = m;
    }
    co->n = j;
}

/* Served by rd_kafka_consumer_poll (and by rd_kafka_consumer_close), with the consumer as opaque. The
 * assignment is cooperative (kafka_group_consumer_new): partitions come and go a few at a time. */
static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
                         void *opaque) {
    consumer_t *co = opaque;
    rd_kafka_error_t *error = NULL;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        log_info(NULL, "assigned %d partition(s) of %s", parts->cnt, parts->cnt ? parts->elems[0].topic : "");
        error = rd_kafka_incremental_assign(rk, parts);
        /* While a batch is held, partitions that come are paused too: nothing is read past the batch.
         * Otherwise they are resumed explicitly: librdkafka keeps an application's pause on a partition
         * through its revoke and a later assign, so one paused here before would never be fetched again. */
        if (!error && parts->cnt > 0) {
            if (co->paused)
                rd_kafka_pause_partitions(rk, parts);
            else
                rd_kafka_resume_partitions(rk, parts);
        }
    } else {
        log_info(NULL, "revoked %d partition(s)", parts->cnt);
        batch_drop_partitions(co, parts);
        commit_revoked(co, rk, parts);
        rd_kafka_resume_partitions(rk, parts); /* no pause of ours outlives the assignment (see above) */
        error = rd_kafka_incremental_unassign(rk, parts);
    }
    if (error) {
        log_error(NULL, "rebalance: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
}

/* A message the consumer poll returned: an error is logged (not the end of a partition) and dropped; a
 * message joins the batch. 1 when it joined. */
static int batch_take(consumer_t *co, rd_kafka_message_t *m) {
    if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            log_warn(NULL, "consume: %s", rd_kafka_message_errstr(m));
        rd_kafka_message_destroy(m);
        return 0;
    }
    co->m = xgrow(co->m, co->n + 1, &co->cap, sizeof(*co->m), 256);
    co->m[co->n++] = m;
    return 1;
}

static void batch_clear(consumer_t *co) {
    for (size_t i = 0; i < co->n; i++)
        rd_kafka_message_destroy(co->m[i]);
    co->n = 0;
}

/* Polls for up to max messages: first_wait_ms for the first one (none: back to the round), then as co->fill
 * says: CONSUMER_FILL_AFTER_FULL takes more only while they are there at once (a poll of 0 ms), unless the
 * previous batch was full (a backlog: then it waits up to batch_wait_ms after the first one for the batch to
 * fill, and past that takes what is there at once); CONSUMER_FILL_ALWAYS waits up to batch_wait_ms after the
 * first one, and no longer. */
static void batch_gather(consumer_t *co, size_t max, int first_wait_ms) {
    int64_t deadline = 0;
    int always = co->fill == CONSUMER_FILL_ALWAYS;
    while (worker_running() && co->n < max) {
        int timeout = first_wait_ms;
        if (co->n > 0) {
            int64_t left = always || co->previous_full ? deadline - worker_now_ms() : 0;
            if (always && left <= 0)
                break; /* the wait is over */
            timeout = left > 0 ? (int)left : 0;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(co->rk, timeout);
        if (!m) {
            if (co->n == 0 || timeout == 0)
                break; /* nothing came (the round goes on), or nothing more at once (or the wait is over) */
            continue;
        }
        if (batch_take(co, m) && co->n == 1)
            deadline = worker_now_ms() + co->batch_wait_ms;
    }
    if (co->n > 0)
        co->previous_full = co->n >= max;
    co->polled_at = worker_now_ms();
}

consumer_t *consumer_new(const conf_t *c, const char *group, const char *topic, long batch_max,
                         long batch_wait_ms, consumer_fill_t fill, char *errstr, size_t errstr_size) {
    consumer_t *co = xcalloc(1, sizeof(*co));
    co->fill = fill;
    co->batch_max = batch_max > 0 ? batch_max : 1;
    co->batch_wait_ms = batch_wait_ms > 0 ? batch_wait_ms : 0;
    co->pending = rd_kafka_topic_partition_list_new(16);
    if (conf_get_long(c, "commit.interval.ms", 0, 60000, &co->commit_interval_ms, errstr, errstr_size) != 0) {
        consumer_free(co);
        return NULL;
    }
    co->rk = kafka_group_consumer_new(c, group, topic, rebalance_cb, co, errstr, errstr_size);
    if (!co->rk) {
        consumer_free(co);
        return NULL;
    }
    co->commit_queue = rd_kafka_queue_get_consumer(co->rk);
    return co;
}

/* Pauses (pause 1) or resumes every partition assigned now. */
static void assignment_pause(consumer_t *co, int pause) {
    rd_kafka_topic_partition_list_t *parts = NULL;
    rd_kafka_resp_err_t err = rd_kafka_assignment(co->rk, &parts);
    if (!err && parts->cnt > 0)
        err = pause ? rd_kafka_pause_partitions(co->rk, parts) : rd_kafka_resume_partitions(co->rk, parts);
    if (err)
        log_warn(NULL, "%s the assigned partitions: %s", pause ? "pausing" : "resuming",
                 rd_kafka_err2str(err));
    if (parts)
        rd_kafka_topic_partition_list_destroy(parts);
    co->paused = pause;
}

/* The batch was offered and not applied: it is held, the assignment paused (once), and the next offer is
 * due after the backoff. One line when the hold starts, not one per offer. */
static void hold_failed(consumer_t *co) {
    int64_t now = worker_now_ms();
    if (!co->held) {
        co->held = 1;
        co->held_since = now;
        co->offers = 0;
        co->retry_ms = HOLD_FIRST_MS;
        log_info(NULL,
                 "a batch of %zu message(s) was not applied: partitions paused, the batch is offered again "
                 "(backoff up to %d s) while the consumer keeps polling",
                 co->n, HOLD_MAX_MS / 1000);
    } else {
        co->retry_ms = co->retry_ms * 2 < HOLD_MAX_MS ? co->retry_ms * 2 : HOLD_MAX_MS;
    }
    co->offers++;
    co->retry_at = now + co->retry_ms;
    if (!co->paused)
        assignment_pause(co, 1);
}

/* The hold is over (the batch applied, or every message of it dropped at revoke): the partitions go on. */
static void hold_end(consumer_t *co, int applied) {
    if (co->held)
        log_info(NULL, "%s after %lu offer(s) in %.1f s: partitions resumed",
                 applied ? "the batch held was applied" : "the batch held went with its partitions",
                 co->offers + applied, (double)(worker_now_ms() - co->held_since) / 1000.0);
    co->held = 0;
    if (co->paused)
        assignment_pause(co, 0);
}

/* A poll of at most timeout_ms while the partitions are paused (a batch held, or no room): serves
 * rebalances, commit outcomes and the poll interval. A message that still comes (a partition paused too
 * late) joins the batch, after the held ones of its partition. */
static void poll_paused(consumer_t *co, int timeout_ms) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(co->rk, timeout_ms);
    co->polled_at = worker_now_ms();
    if (m)
        batch_take(co, m);
}

void consumer_run(consumer_t *co, const consumer_hooks_t *hooks) {
    while (worker_running()) {
        if (co->n == 0 && co->held)
            hold_end(co, 0); /* a rebalance took every message of the held batch */
        if (co->n == 0) {
            size_t room = (size_t)co->batch_max;
            int first_wait_ms = 100;
            if (hooks->room) {
                size_t r = hooks->room(hooks->arg, &first_wait_ms);
                room = r < room ? r : room;
            }
            if (room > 0) {
                if (co->paused)
                    assignment_pause(co, 0);
                batch_gather(co, room, first_wait_ms);
            } else if (worker_now_ms() - co->polled_at >= ROOM_POLL_MS) {
                /* No room for a while: the group still sees a poll, with nothing read meanwhile. */
                if (!co->paused)
                    assignment_pause(co, 1);
                poll_paused(co, 0);
            }
        }
        if (co->n > 0) {
            int64_t wait = co->held ? co->retry_at - worker_now_ms() : 0;
            if (wait > 0) {
                poll_paused(co, wait < HOLD_POLL_MS ? (int)wait : HOLD_POLL_MS); /* the round hook turns */
            } else if (hooks->apply(hooks->arg, co->m, co->n) == 0) {
                /* Offsets move only past a batch whose effect the worker committed in the database. */
                for (size_t i = 0; i < co->n; i++)
                    pending_set(co, rd_kafka_topic_name(co->m[i]->rkt), co->m[i]->partition,
                                co->m[i]->offset + 1);
                batch_clear(co);
                hold_end(co, 1);
            } else if (worker_running()) { /* else shutdown: left uncommitted for the next owner */
                hold_failed(co);
            }
        }
        commit_due(co);
        if (hooks->round)
            hooks->round(hooks->arg);
    }
    commit_pending(co, 0);
}

void consumer_free(consumer_t *co) {
    if (!co)
        return;
    batch_clear(co);
    if (co->commit_queue)
        rd_kafka_queue_destroy(co->commit_queue);
    kafka_consumer_close(
        co->rk); /* leaves the group: partitions move on at once; may revoke (rebalance_cb) */
    batch_clear(co);
    free(co->m);
    rd_kafka_topic_partition_list_destroy(co->pending);
    free(co);
}
