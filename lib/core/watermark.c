/* A partition's high watermark, asked again while the cluster settles (watermark.h). */
#include "watermark.h"

#include "clock.h"

rd_kafka_resp_err_t kafka_high_watermark(rd_kafka_t *rk, const char *topic, int partition, int timeout_ms,
                                         int64_t *high) {
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__TIMED_OUT;
    int64_t deadline = clock_ms() + timeout_ms;
    for (int64_t left = timeout_ms; left > 0; left = deadline - clock_ms()) {
        int64_t low = 0;
        err = rd_kafka_query_watermark_offsets(rk, topic, partition, &low, high,
                                               left < 5000 ? (int)left : 5000);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION)
            return err;
        if (err != RD_KAFKA_RESP_ERR__TIMED_OUT) {
            /* A passing answer (not leader, leader not available, coordinator loading: a broker that is
             * settling, or a stale leader cache): refresh the metadata so that the next query asks the
             * partition's present leader, and give the broker a moment. */
            const struct rd_kafka_metadata *md = NULL;
            if (rd_kafka_metadata(rk, 0, NULL, &md, 2000) == RD_KAFKA_RESP_ERR_NO_ERROR && md)
                rd_kafka_metadata_destroy(md);
            rd_kafka_poll(rk, 200);
        }
    }
    return err;
}
