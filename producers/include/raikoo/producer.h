/* The Raikoo producer library: what an upstream app links to publish Raikoo commands and wait for their
 * results. This header is the whole public interface: it needs only the C library and jansson (commands
 * take their data as a json_t). Build flags: `pkg-config --cflags --libs raikoo-producer`.
 *
 * Ownership: every json_t passed in is stolen (released by the library, even on failure); every string
 * passed in is borrowed for the call; strings and json_t handed out are owned by the struct they are in
 * and freed by its *_clear function. */
#ifndef RAIKOO_PRODUCER_H
#define RAIKOO_PRODUCER_H

#include <stddef.h>
#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The commands an app can publish; the CloudEvents type is raikoo.command.<Name>.v1. */
typedef enum {
    RAIKOO_CMD_CREATE_ORGANIZATION,     /* CreateOrganization */
    RAIKOO_CMD_CREATE_USER,             /* CreateUser */
    RAIKOO_CMD_ADD_EXISTING_USER,       /* AddExistingUser */
    RAIKOO_CMD_INVITE_NEW_USER,         /* InviteNewUser */
    RAIKOO_CMD_ACCEPT_INVITATION,       /* AcceptInvitation */
    RAIKOO_CMD_ACTIVATE_ACCOUNT,        /* ActivateAccount */
    RAIKOO_CMD_RESEND_INVITATION,       /* ResendInvitation */
    RAIKOO_CMD_REMOVE_INVITATION,       /* RemoveInvitation */
    RAIKOO_CMD_REMOVE_MEMBER,           /* RemoveMember */
    RAIKOO_CMD_SET_MEMBER_ROLE,         /* SetMemberRole */
    RAIKOO_CMD_SET_ORGANIZATION_POLICY, /* SetOrganizationPolicy */
    RAIKOO_CMD_TYPE_COUNT,
    RAIKOO_CMD_TYPE_UNKNOWN = -1
} raikoo_command_type_t;

/* Sizes of the buffers the functions below fill, terminating NUL included. */
#define RAIKOO_ID_SIZE 37             /* a uuid in text: command ids, user, org and invitation ids */
#define RAIKOO_KEY_SIZE 255           /* a partitioning key: a uuid or an e-mail address (254 at most) */
#define RAIKOO_PASSWORD_HASH_SIZE 128 /* an Argon2id hash string (libsodium's crypto_pwhash_STRBYTES) */

/* The name of a command type ("InviteNewUser"), or NULL when type is out of range. */
const char *raikoo_command_type_name(raikoo_command_type_t type);

/* The command type of a name ("InviteNewUser"), or RAIKOO_CMD_TYPE_UNKNOWN. */
raikoo_command_type_t raikoo_command_type_from_name(const char *name);

/* What the functions below return besides 0. RAIKOO_ERR_INVALID means nothing was sent: the command would
 * be refused with invalid_command (or a field's own code, such as invalid_expiry, which then starts errstr:
 * "invalid_expiry: ..."), and errstr holds the same reason the worker would give. */
typedef enum {
    RAIKOO_OK = 0,
    RAIKOO_ERR_INVALID = -1, /* a command the worker would refuse; not sent */
    RAIKOO_ERR_KAFKA = -2,   /* broker unreachable, topic missing, delivery failed */
    RAIKOO_ERR_TIMEOUT = -3, /* no delivery report or no result in time */
    RAIKOO_ERR_STATE = -4    /* used the wrong way (e.g. waiting without raikoo_results_follow) */
} raikoo_err_t;

/* One command, built and validated, ready to produce (see raikoo_command_build). */
typedef struct raikoo_command_msg {
    char id[RAIKOO_ID_SIZE];   /* the command id, also its idempotency key and the result's key */
    char key[RAIKOO_KEY_SIZE]; /* the partitioning key (see raikoo_command_build) */
    char *payload;             /* the CloudEvent as compact JSON; owned, freed by raikoo_command_msg_clear */
    size_t len;
} raikoo_command_msg_t;

/* A command's result, as the command worker published it on topic.results. */
typedef struct raikoo_result {
    json_t *data;             /* the result's data object; a reference owned by this struct */
    const char *command_id;   /* the strings below are borrowed from data */
    const char *command_type; /* "InviteNewUser" */
    const char *status;       /* "accepted" or "rejected" */
    int accepted;             /* 1 when status is "accepted" */
    const char *code;         /* stable code ("user_already_exists"); NULL when accepted */
    const char *message;      /* human text, with the fix where there is one; never NULL ("" at worst) */
    const char *org_id, *user_id, *invitation_id; /* the ids the command touched; NULL when not applicable */
    long long published_ms; /* when the outbox relay published the result: its Kafka timestamp (CreateTime),
                           * milliseconds since the epoch; 0 when unknown (raikoo_result_parse alone) */
} raikoo_result_t;

/* Reads the text of a results-topic message (a raikoo.result.v1 CloudEvent) into r, taking a reference to
 * its data: what raikoo_results_poll and raikoo_command_wait do with each message. -1 (r zeroed) when it
 * is not a result: not JSON, another type, no data object or no command_id string. */
int raikoo_result_parse(const void *buf, size_t len, raikoo_result_t *r);

/* Releases what a result holds and zeroes it; harmless on a zeroed struct. */
void raikoo_result_clear(raikoo_result_t *r);

/* Builds the CloudEvents envelope of a command and validates it with the worker's own parser,
 * so that what the worker would refuse is refused here with the same message. Pure: no Kafka.
 *   type    the command type; source: the CloudEvents source ("/raikoo/cli"); actor: the acting user's
 *           uuid, or NULL (only ActivateAccount may go without one).
 *   data    the command's data object; stolen (released even on failure). May be NULL for an empty one.
 *   max_bytes the size limit of a command (command.max.bytes).
 * On success out holds a fresh id (a v4 uuid), the payload (owned by out: raikoo_command_msg_clear) and
 * the key: data.org_id; for CreateOrganization data.owner_user_id; for AcceptInvitation
 * data.invitation_id; for CreateUser and ActivateAccount the e-mail in normal form, lower-cased (so that
 * commands about one address keep their order whatever its case).
 * Returns 0, or RAIKOO_ERR_INVALID with the reason in errstr (and out zeroed). */
int raikoo_command_build(raikoo_command_type_t type, const char *source, const char *actor, json_t *data,
                         size_t max_bytes, raikoo_command_msg_t *out, char *errstr, size_t errstr_size);

/* Frees the payload of a built command and zeroes it; harmless on a zeroed struct. */
void raikoo_command_msg_clear(raikoo_command_msg_t *m);

/* Hashes a password for CreateUser or ActivateAccount: libsodium crypto_pwhash_str (Argon2id) at the
 * interactive limits, about 70 ms. password is borrowed and left untouched (the caller wipes it, e.g.
 * with sodium_memzero). out receives the NUL-terminated "$argon2id$..." string. -1 with errstr when
 * libsodium cannot start or runs out of memory. */
int raikoo_password_hash(const char *password, char out[RAIKOO_PASSWORD_HASH_SIZE], char *errstr,
                         size_t errstr_size);

typedef struct raikoo_producer raikoo_producer_t;

/* One setting of a producer: the keys are those of Raikoo's configuration (docs/CONFIGURATION.md).
 *   kafka.<property>   any librdkafka property, passed on without "kafka." (kafka.bootstrap.servers,
 *                      kafka.security.protocol, kafka.sasl.*, kafka.message.timeout.ms, ...);
 *                      kafka.bootstrap.servers defaults to 127.0.0.1:19092 (the local stack)
 *   topic.commands     the commands topic (default raikoo.commands)
 *   topic.results      the results topic (default raikoo.results)
 *   command.max.bytes  the size limit of a command, 256 .. 67108864 (default 65536)
 * A later setting of the same key wins. */
typedef struct raikoo_setting {
    const char *key;
    const char *value;
} raikoo_setting_t;

/* A new producer for the count settings (borrowed: read now, so they may be freed afterwards; settings may
 * be NULL when count is 0). An unknown key, a bad value or a property librdkafka refuses is an error. The
 * Kafka producer is idempotent with acks=all; kafka.message.timeout.ms defaults to 30 s, kafka.linger.ms
 * to 0 (a command is sent at once; librdkafka's own default waits 5 ms for more). The result consumer
 * prefetches at most kafka.queued.max.messages.kbytes, 4096 by default, and, with librdkafka 2.2 and later,
 * looks again kafka.fetch.queue.backoff.ms, 10 by default (librdkafka's: 1 s), after reaching it. Fails (NULL,
 * errstr) when the broker does not answer within 10 s or the commands topic does not exist. Free with
 * raikoo_producer_free. Not thread-safe: use one producer from one thread at a time. librdkafka's own
 * warnings and errors go to stderr, prefixed "raikoo producer: kafka"; its connection attempts are quiet
 * (a broker that stays unreachable shows as RAIKOO_ERR_KAFKA or RAIKOO_ERR_TIMEOUT). */
raikoo_producer_t *raikoo_producer_new(const raikoo_setting_t *settings, size_t count, char *errstr,
                                       size_t errstr_size);

/* Flushes what is still queued (up to 10 s), then frees the producer and every result it still holds.
 * NULL is harmless. */
void raikoo_producer_free(raikoo_producer_t *p);

/* Sets the CloudEvents source of the commands published from now on (copied; default "/raikoo/producer"). */
void raikoo_producer_set_source(raikoo_producer_t *p, const char *source);

/* Called from raikoo_producer_poll, raikoo_producer_flush, raikoo_results_poll and raikoo_command_wait
 * with each command's delivery report: error is NULL when the broker has acknowledged the command,
 * else why it was not delivered. command_id and error are borrowed for the call. */
typedef void raikoo_delivery_cb_t(void *opaque, const char *command_id, const char *error);

/* Sets (or, with NULL, removes) the delivery callback; opaque is passed back untouched. */
void raikoo_producer_set_delivery_cb(raikoo_producer_t *p, raikoo_delivery_cb_t *cb, void *opaque);

/* Starts following topic.results: assigns every partition of it at its current high watermark (no
 * consumer group membership, no commits), so that the result of any command published afterwards is
 * seen however fast it comes. Call it once, before publishing the commands whose results you want;
 * calling it again does nothing. From then on every command published is remembered as pending until its
 * result is returned. -1 (RAIKOO_ERR_KAFKA) with errstr when the results topic cannot be read. */
int raikoo_results_follow(raikoo_producer_t *p, char *errstr, size_t errstr_size);

/* Publishes one command and waits for the broker's acknowledgement (the delivery report).
 *   type, actor, data: as for raikoo_command_build (data is stolen, even on failure).
 *   id_out receives the command id (also on RAIKOO_ERR_KAFKA and RAIKOO_ERR_TIMEOUT, when the command may
 *   or may not have gone out; "" on RAIKOO_ERR_INVALID). May be NULL.
 * Returns 0, RAIKOO_ERR_INVALID (nothing sent), RAIKOO_ERR_KAFKA (delivery failed) or RAIKOO_ERR_TIMEOUT,
 * with errstr. */
int raikoo_command_publish(raikoo_producer_t *p, raikoo_command_type_t type, const char *actor, json_t *data,
                           char id_out[RAIKOO_ID_SIZE], char *errstr, size_t errstr_size);

/* Like raikoo_command_publish but returns as soon as the command is queued in the client: the way to send
 * many commands quickly. Its delivery is reported later through the delivery callback and counted by
 * raikoo_producer_flush. Waits (serving delivery reports) while the client's queue is full. */
int raikoo_command_send(raikoo_producer_t *p, raikoo_command_type_t type, const char *actor, json_t *data,
                        char id_out[RAIKOO_ID_SIZE], char *errstr, size_t errstr_size);

/* Serves pending delivery reports, waiting up to timeout_ms for one. Returns how many were served. */
int raikoo_producer_poll(raikoo_producer_t *p, int timeout_ms);

/* Waits up to timeout_ms until every queued command is delivered. Returns 0 when all were delivered;
 * RAIKOO_ERR_TIMEOUT when some are still queued; RAIKOO_ERR_KAFKA when any delivery failed since the
 * previous flush (errstr holds how many and the last error; the callback named each). */
int raikoo_producer_flush(raikoo_producer_t *p, int timeout_ms, char *errstr, size_t errstr_size);

/* Waits up to timeout_ms for the result of any pending command of this producer (results of other
 * producers' commands are skipped). On 1, *out holds the result (clear it with raikoo_result_clear) and
 * the command is no longer pending; a duplicate result of the same command is never returned twice.
 * Returns 1, 0 when none came in time, or RAIKOO_ERR_STATE without raikoo_results_follow /
 * RAIKOO_ERR_KAFKA when the consumer fails, with errstr. Also serves delivery reports. */
int raikoo_results_poll(raikoo_producer_t *p, int timeout_ms, raikoo_result_t *out, char *errstr,
                        size_t errstr_size);

/* Waits up to timeout_ms for the result of one command (published by this producer after
 * raikoo_results_follow). Results of other pending commands that arrive meanwhile are kept for
 * raikoo_results_poll and later waits. Returns 1 with *out filled (clear it with raikoo_result_clear),
 * 0 on timeout (the command stays pending), or a negative raikoo_err_t with errstr. */
int raikoo_command_wait(raikoo_producer_t *p, const char *command_id, int timeout_ms, raikoo_result_t *out,
                        char *errstr, size_t errstr_size);

/* How many commands published since raikoo_results_follow still await their result. */
size_t raikoo_results_pending(const raikoo_producer_t *p);

/* ---- Many commands at once ---- */

/* What became of one command of raikoo_commands_run. */
typedef enum {
    RAIKOO_ITEM_RESULT = 0,   /* its result came: see result (accepted or rejected) */
    RAIKOO_ITEM_INVALID = 1,  /* not sent: the worker would refuse it (invalid_command); error says why */
    RAIKOO_ITEM_UNSENT = 2,   /* Kafka did not take it (error says why): it will have no result */
    RAIKOO_ITEM_NO_RESULT = 3 /* sent, but no result within the timeout: it may still be applied */
} raikoo_item_status_t;

/* One command of raikoo_commands_run: type, actor and data in; the rest out. */
typedef struct raikoo_batch_item {
    raikoo_command_type_t type;
    const char *actor;       /* borrowed */
    json_t *data;            /* stolen by raikoo_commands_run (NULL afterwards); NULL for an empty object */
    char id[RAIKOO_ID_SIZE]; /* out: the command id ("" when not sent) */
    raikoo_item_status_t status;
    raikoo_result_t result; /* out, when status is RAIKOO_ITEM_RESULT: clear it with raikoo_result_clear */
    char error[256];        /* out: why there is no result, "" when there is one */
} raikoo_batch_item_t;

/* Called now and then by raikoo_commands_run: how many commands were queued, how many have their outcome
 * (a result, or none to come), of total. */
typedef void raikoo_batch_progress_cb_t(void *opaque, size_t sent, size_t done, size_t total);

/* Sends n commands and collects their results: every command is queued without waiting for it (the
 * client batches them; delivery reports are served as they come), then the results are read as they
 * arrive, in any order, each matched to its item, until every sent command has one or timeout_ms passed
 * without any new result (then the rest are RAIKOO_ITEM_NO_RESULT). Calls raikoo_results_follow itself
 * when it was not called. progress (may be NULL) is called at most every 100 ms and once at the end.
 * Returns 0 when every item has its outcome in its status (rejected results included), or a negative
 * raikoo_err_t with errstr when the results topic cannot be read (nothing sent). */
int raikoo_commands_run(raikoo_producer_t *p, raikoo_batch_item_t *items, size_t n, int timeout_ms,
                        raikoo_batch_progress_cb_t *progress, void *opaque, char *errstr, size_t errstr_size);

#ifdef __cplusplus
}
#endif

#endif
