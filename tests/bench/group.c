/* raikoo-bench: consumer groups. Waiting for the command workers' group to settle, so that a phase does not
 * time a rebalance (a worker started or stopped just before it); and leaving mail jobs unsent. */
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "db.h"
#include "kafka.h"

static int32_t be32(const unsigned char *p) {
    return (int32_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3]);
}

/* Partitions of `topic` in a consumer protocol assignment (version, [topic, [partition]], user data);
 * -1 when it cannot be read. */
static int assigned_partitions(const unsigned char *a, size_t n, const char *topic) {
    size_t off = 2, tlen = strlen(topic);
    if (n < off + 4)
        return n == 0 ? 0 : -1;
    int32_t topics = be32(a + off);
    off += 4;
    int count = 0;
    for (int32_t t = 0; t < topics; t++) {
        if (off + 2 > n)
            return -1;
        size_t len = (size_t)(a[off] << 8 | a[off + 1]);
        off += 2;
        if (off + len + 4 > n)
            return -1;
        int mine = len == tlen && memcmp(a + off, topic, len) == 0;
        off += len;
        int32_t parts = be32(a + off);
        off += 4;
        if (parts < 0 || off + 4 * (size_t)parts > n)
            return -1;
        off += 4 * (size_t)parts;
        if (mine)
            count += parts;
    }
    return count;
}

/* Partitions of topic, from the broker's metadata; -1 when unknown. */
static int topic_partitions(rd_kafka_t *rk, const char *topic) {
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    if (!t)
        return -1;
    const struct rd_kafka_metadata *md = NULL;
    int n = -1;
    if (rd_kafka_metadata(rk, 0, t, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR)
            n = md->topics[0].partition_cnt;
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(t);
    return n;
}

int bench_group_wait(const conf_t *c, const char *group, const char *topic, int members, int timeout_ms,
                     char *errstr, size_t errstr_size) {
    rd_kafka_conf_t *kc = kafka_conf_new(c, errstr, errstr_size);
    if (!kc)
        return -1;
    rd_kafka_t *rk = kafka_client_new(c, RD_KAFKA_PRODUCER, kc, 10000, errstr, errstr_size);
    if (!rk)
        return -1;
    int rc = -1;
    char seen[256] = "no answer";
    int partitions = topic_partitions(rk, topic);
    if (partitions < 1) {
        snprintf(errstr, errstr_size, "%s: no metadata (run `raikoo topics create`)", topic);
        rd_kafka_destroy(rk);
        return -1;
    }
    double t0 = bench_now();
    while ((bench_now() - t0) * 1000.0 < timeout_ms) {
        const struct rd_kafka_group_list *gl = NULL;
        if (rd_kafka_list_groups(rk, group, &gl, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR && gl) {
            for (int g = 0; g < gl->group_cnt; g++) {
                const struct rd_kafka_group_info *gi = &gl->groups[g];
                if (strcmp(gi->group, group) != 0)
                    continue;
                int total = 0, each = 1;
                for (int m = 0; m < gi->member_cnt; m++) {
                    int k = assigned_partitions(gi->members[m].member_assignment,
                                                (size_t)gi->members[m].member_assignment_size, topic);
                    if (k <= 0)
                        each = 0;
                    else
                        total += k;
                }
                snprintf(seen, sizeof(seen), "state %s, %d members, %d of %d partitions assigned", gi->state,
                         gi->member_cnt, total, partitions);
                /* Each member has work, unless there are fewer partitions than members. */
                if (strcmp(gi->state, "Stable") == 0 && gi->member_cnt == members &&
                    (each || partitions < members) && total == partitions)
                    rc = 0;
            }
            rd_kafka_group_list_destroy(gl);
        }
        if (rc == 0)
            break;
        bench_progress("group %s: %s, waiting for %d members", group, seen, members);
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (rc != 0)
        snprintf(errstr, errstr_size, "consumer group %s did not settle with %d members in %d ms (%s)", group,
                 members, timeout_ms, seen);
    rd_kafka_destroy(rk);
    return rc;
}

int bench_mail_skip(const conf_t *c, PGconn *db, char *errstr, size_t errstr_size) {
    const char *topic = conf_get(c, "topic.mail"), *group = conf_get(c, "group.mail");
    /* Every mail job queued so far is on the topic once the relay has emptied the outbox. */
    double t0 = bench_now();
    while (1) {
        PGresult *r = db_exec(db, "SELECT count(*) FROM outbox", 0, NULL, errstr, errstr_size);
        if (!r)
            return -1;
        long left = strtol(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
        if (left == 0)
            break;
        if (bench_now() - t0 > 120) {
            snprintf(errstr, errstr_size, "the relay left %ld outbox rows unpublished for 120 s", left);
            return -1;
        }
        bench_progress("waiting for the relay: %ld outbox rows", left);
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    rd_kafka_conf_t *kc = kafka_conf_new(c, errstr, errstr_size);
    if (!kc || kafka_conf_set(kc, "group.id", group, errstr, errstr_size) != 0 ||
        kafka_conf_set(kc, "enable.auto.commit", "false", errstr, errstr_size) != 0) {
        if (kc)
            rd_kafka_conf_destroy(kc);
        return -1;
    }
    rd_kafka_t *rk = kafka_client_new(c, RD_KAFKA_CONSUMER, kc, 10000, errstr, errstr_size);
    if (!rk)
        return -1;
    int rc = -1;
    int partitions = topic_partitions(rk, topic);
    rd_kafka_topic_partition_list_t *offs =
        rd_kafka_topic_partition_list_new(partitions > 0 ? partitions : 1);
    if (partitions < 1) {
        snprintf(errstr, errstr_size, "%s: no metadata (run `raikoo topics create`)", topic);
        goto done;
    }
    for (int p = 0; p < partitions; p++) {
        int64_t hi;
        if (kafka_high_watermark(rk, topic, p, 30000, &hi) != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(errstr, errstr_size, "watermarks of %s/%d unavailable", topic, p);
            goto done;
        }
        rd_kafka_topic_partition_list_add(offs, topic, p)->offset = hi;
    }
    /* The stopped mailer's group may take a moment to be empty: retry until the commit is taken. */
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
    for (t0 = bench_now(); bench_now() - t0 < 60;) {
        e = rd_kafka_commit(rk, offs, 0);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
            rc = 0;
            break;
        }
        bench_progress("committing %s offsets: %s", group, rd_kafka_err2str(e));
        struct timespec ts = {0, 500 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (rc != 0)
        snprintf(errstr, errstr_size, "cannot commit the offsets of group %s: %s", group,
                 rd_kafka_err2str(e));
done:
    rd_kafka_topic_partition_list_destroy(offs);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rc;
}
