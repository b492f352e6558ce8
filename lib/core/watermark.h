/* A partition's high watermark, asked again while the cluster settles. Needs only librdkafka (the producer
 * library links it too). */
#ifndef RAIKOO_WATERMARK_H
#define RAIKOO_WATERMARK_H

#include <librdkafka/rdkafka.h>
#include <stdint.h>

/* The high watermark of one partition into *high, asking again within timeout_ms while the broker answers
 * with a passing error (a leader not yet elected, a stale leader cache: the metadata is refreshed between
 * two asks). RD_KAFKA_RESP_ERR_NO_ERROR, RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION, or the last error. */
rd_kafka_resp_err_t kafka_high_watermark(rd_kafka_t *rk, const char *topic, int partition, int timeout_ms,
                                         int64_t *high);

#endif
