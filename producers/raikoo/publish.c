/* raikoo publishing commands: options to a command's data, published through the producer library. */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"
#include "email.h"
#include "producer.h"
#include "secret.h"
#include "text.h"

#define CLI_SOURCE "/raikoo/cli"
#define PASSWORD_MAX 4096

/* Every option a publishing command may take; a command's spec says which are allowed and required. */
enum {
    O_ACTOR = 1u << 0,
    O_WAIT = 1u << 1,
    O_JSON = 1u << 2,
    O_ORG = 1u << 3,
    O_EMAIL = 1u << 4,
    O_NAME = 1u << 5,
    O_OWNER_FLAG = 1u << 6,
    O_OWNER_ID = 1u << 7,
    O_INVITATION = 1u << 8,
    O_CODE = 1u << 9,
    O_USER = 1u << 10,
    O_MANAGE = 1u << 11,
    O_PASSWORD = 1u << 12,
    O_EXPIRES = 1u << 13,
    O_LOCALE = 1u << 14,
    O_DOMAINS = 1u << 15,
    O_SEATS = 1u << 16,
    O_DEF_EXPIRY = 1u << 17,
    O_DEF_LOCALE = 1u << 18,
    O_APP_URL = 1u << 19,
};

/* V_INT: a whole number (anything else goes as text, so that the worker's parser names the field's code);
 * V_LIST: comma-separated values; V_*_OR_NONE: "none" sends null (SetOrganizationPolicy: clear it). */
typedef enum {
    V_FLAG,
    V_UUID,
    V_EMAIL,
    V_TEXT,
    V_INT,
    V_INT_OR_NONE,
    V_TEXT_OR_NONE,
    V_LIST_OR_NONE
} value_kind_t;

typedef struct opt_desc {
    unsigned bit;
    const char *name; /* the long option */
    value_kind_t kind;
    const char *field; /* the data field it fills; NULL for --actor, --wait, --json */
    const char *metavar;
} opt_desc_t;

static const opt_desc_t opt_descs[] = {
    {O_ACTOR, "actor", V_UUID, NULL, "UUID"},
    {O_WAIT, "wait", V_FLAG, NULL, NULL},
    {O_JSON, "json", V_FLAG, NULL, NULL},
    {O_ORG, "org", V_UUID, "org_id", "UUID"},
    {O_EMAIL, "email", V_EMAIL, "email", "E"},
    {O_NAME, "name", V_TEXT, "name", "N"},
    {O_OWNER_FLAG, "owner", V_FLAG, "owner", NULL},
    {O_OWNER_ID, "owner", V_UUID, "owner_user_id", "UUID"},
    {O_INVITATION, "invitation", V_UUID, "invitation_id", "UUID"},
    /* Refused: a code on the command line is visible to every local user (ps). Read from stdin instead. */
    {O_CODE, "code", V_TEXT, "code", "C"},
    {O_USER, "user", V_UUID, "user_id", "UUID"},
    {O_MANAGE, "manage-users", V_FLAG, "can_manage_users", NULL},
    {O_PASSWORD, "password-stdin", V_FLAG, "password_hash", NULL},
    {O_EXPIRES, "expires-in-days", V_INT, "expires_in_days", "N"},
    {O_LOCALE, "locale", V_TEXT, "locale", "TAG"},
    {O_DOMAINS, "allowed-domains", V_LIST_OR_NONE, "allowed_domains", "D,D...|none"},
    {O_SEATS, "seat-limit", V_INT_OR_NONE, "seat_limit", "N|none"},
    {O_DEF_EXPIRY, "default-expiry-days", V_INT_OR_NONE, "default_expiry_days", "N|none"},
    {O_DEF_LOCALE, "default-locale", V_TEXT_OR_NONE, "default_locale", "TAG|none"},
    {O_APP_URL, "app-url", V_TEXT_OR_NONE, "app_url", "URL|none"},
};
enum { N_OPTS = sizeof(opt_descs) / sizeof(opt_descs[0]) };

typedef struct pub_spec {
    const char *name;
    raikoo_command_type_t type;
    unsigned allowed, required; /* besides --wait and --json, which all take */
} pub_spec_t;

static const pub_spec_t pub_specs[] = {
    {"create-org", RAIKOO_CMD_CREATE_ORGANIZATION, O_ACTOR | O_NAME | O_OWNER_ID,
     O_ACTOR | O_NAME | O_OWNER_ID},
    {"create-user", RAIKOO_CMD_CREATE_USER, O_ACTOR | O_EMAIL | O_NAME | O_PASSWORD,
     O_ACTOR | O_EMAIL | O_NAME | O_PASSWORD},
    {"add-existing", RAIKOO_CMD_ADD_EXISTING_USER,
     O_ACTOR | O_ORG | O_EMAIL | O_OWNER_FLAG | O_MANAGE | O_EXPIRES | O_LOCALE, O_ACTOR | O_ORG | O_EMAIL},
    {"invite-new", RAIKOO_CMD_INVITE_NEW_USER,
     O_ACTOR | O_ORG | O_EMAIL | O_NAME | O_OWNER_FLAG | O_MANAGE | O_EXPIRES | O_LOCALE,
     O_ACTOR | O_ORG | O_EMAIL},
    /* O_CODE: the code is read from standard input (first line), never from the command line. */
    {"accept", RAIKOO_CMD_ACCEPT_INVITATION, O_ACTOR | O_INVITATION | O_CODE, O_ACTOR | O_INVITATION},
    /* The activating user has no working account yet, so there is no actor. The code is the first line of
     * standard input, the password the second; --password-stdin is still taken (it changes nothing). */
    {"activate", RAIKOO_CMD_ACTIVATE_ACCOUNT, O_EMAIL | O_CODE | O_PASSWORD, O_EMAIL},
    {"resend", RAIKOO_CMD_RESEND_INVITATION, O_ACTOR | O_ORG | O_INVITATION | O_EXPIRES | O_LOCALE,
     O_ACTOR | O_ORG | O_INVITATION},
    {"remove-invitation", RAIKOO_CMD_REMOVE_INVITATION, O_ACTOR | O_ORG | O_INVITATION,
     O_ACTOR | O_ORG | O_INVITATION},
    {"remove-member", RAIKOO_CMD_REMOVE_MEMBER, O_ACTOR | O_ORG | O_USER, O_ACTOR | O_ORG | O_USER},
    {"set-role", RAIKOO_CMD_SET_MEMBER_ROLE, O_ACTOR | O_ORG | O_USER | O_OWNER_FLAG | O_MANAGE,
     O_ACTOR | O_ORG | O_USER},
    /* raikoo policy set (policy.c passes "policy" as argv[0]): an option left out keeps the setting. */
    {"policy", RAIKOO_CMD_SET_ORGANIZATION_POLICY,
     O_ACTOR | O_ORG | O_DOMAINS | O_SEATS | O_DEF_EXPIRY | O_DEF_LOCALE | O_APP_URL, O_ACTOR | O_ORG},
};

static const pub_spec_t *spec_find(const char *name) {
    for (size_t i = 0; i < sizeof(pub_specs) / sizeof(pub_specs[0]); i++)
        if (strcmp(pub_specs[i].name, name) == 0)
            return &pub_specs[i];
    return NULL;
}

/* Reads one secret line: when standard input is a terminal, after prompt (on stderr) with echo off;
 * else the next line of standard input. Returns a new buffer of *cap_out bytes, which the caller wipes
 * (all of them) and frees; NULL with errstr when there is none, it is empty or too long. what names the
 * value in errors ("the code", "the password"), how says how to pass it. */
static char *secret_read(const char *prompt, const char *what, const char *how, size_t *cap_out, char *errstr,
                         size_t errstr_size) {
    int tty = isatty(STDIN_FILENO);
    struct termios saved;
    int echo_off = 0;
    if (tty) {
        /* Echo off before the prompt shows, so that nothing typed after the prompt is ever echoed. */
        if (tcgetattr(STDIN_FILENO, &saved) == 0) {
            struct termios quiet = saved;
            quiet.c_lflag &= ~(tcflag_t)ECHO;
            quiet.c_lflag |= ECHONL;
            echo_off = tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) == 0;
        }
        fprintf(stderr, "%s", prompt);
        fflush(stderr);
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);
    if (echo_off)
        tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    if (n < 0) {
        free(line);
        snprintf(errstr, errstr_size, "%s: nothing to read on standard input (%s)", what, how);
        return NULL;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    if (n == 0 || n > PASSWORD_MAX || strlen(line) != (size_t)n) {
        snprintf(errstr, errstr_size, "%s must be 1 to %d bytes on one line of standard input%s (%s)", what,
                 PASSWORD_MAX, n == 0 ? " (it is empty)" : "", how);
        sodium_memzero(line, cap);
        free(line);
        return NULL;
    }
    *cap_out = cap;
    return line;
}

static void secret_free(char *s, size_t cap) {
    if (s) {
        sodium_memzero(s, cap);
        free(s);
    }
}

/* Prints a result: one JSON object (the result's data) with as_json, else one human line. */
static void result_print(const raikoo_result_t *r, int as_json) {
    if (as_json) {
        char *s = json_dumps(r->data, JSON_COMPACT);
        printf("%s\n", s ? s : "{}");
        free(s);
        return;
    }
    if (!r->accepted) {
        printf("rejected: %s: %s\n", r->code ? r->code : "unknown", r->message);
        return;
    }
    const char *names[3] = {"invitation", "user", "org"};
    const char *ids[3] = {r->invitation_id, r->user_id, r->org_id};
    printf("accepted: %s", r->command_type);
    const char *sep = " (";
    for (int i = 0; i < 3; i++) {
        if (!ids[i])
            continue;
        printf("%s%s %s", sep, names[i], ids[i]);
        sep = ", ";
    }
    printf("%s\n", strcmp(sep, ", ") == 0 ? ")" : "");
}

/* An infrastructure failure: the reason on stderr and, with --json, one object on stdout too, so a script
 * reading stdout always gets exactly one object. */
static int infra_fail(const char *cmd, const char *command_id, const char *code, const char *why,
                      int as_json) {
    fprintf(stderr, "raikoo %s: %s\n", cmd, why);
    if (as_json) {
        json_t *o =
            json_pack("{s:s?, s:s, s:s, s:s}", "command_id", command_id && *command_id ? command_id : NULL,
                      "status", "error", "code", code, "message", why);
        char *s = json_dumps(o, JSON_COMPACT);
        printf("%s\n", s ? s : "{}");
        free(s);
        json_decref(o);
    }
    return EXIT_INFRA;
}

/* Prints what is wrong, then the usage line, on stderr; returns the usage exit status. */
static int usage_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_fail(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "raikoo %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return cli_usage(cli_find(cmd), 1);
}

/* What the command line gave: which options were seen and their values (in opt_descs order). */
typedef struct parsed {
    unsigned seen;
    const char *values[N_OPTS];
} parsed_t;

/* The code on the command line is refused, saying how to give it instead. */
static int refuse_code_option(const char *cmd, const pub_spec_t *spec) {
    return usage_fail(cmd, "--code is not taken on the command line, where every local user sees it (ps): %s",
                      spec->type == RAIKOO_CMD_ACTIVATE_ACCOUNT
                          ? "give the code on the first line of standard input and the new password on the "
                            "second, or type them when asked (e.g. printf '%s\\n%s\\n' \"$CODE\" "
                            "'new password' | raikoo activate ...)"
                          : "give the code on the first line of standard input, or type it when asked "
                            "(e.g. printf '%s\\n' \"$CODE\" | raikoo accept ...)");
}

/* Reads the options the spec allows (plus --wait and --json) into out. EXIT_OK, or the usage status after
 * saying what is wrong. */
static int parse_options(int argc, char **argv, const pub_spec_t *spec, parsed_t *out) {
    const char *cmd = argv[0];
    unsigned allowed = spec->allowed | O_WAIT | O_JSON;
    struct option opts[N_OPTS + 1];
    int nopts = 0, o;
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < N_OPTS; i++) {
        if (!(opt_descs[i].bit & allowed))
            continue;
        opts[nopts].name = opt_descs[i].name;
        opts[nopts].has_arg = opt_descs[i].bit == O_CODE    ? optional_argument
                              : opt_descs[i].kind == V_FLAG ? no_argument
                                                            : required_argument;
        opts[nopts].flag = NULL;
        opts[nopts].val = 1000 + i;
        nopts++;
    }
    memset(&opts[nopts], 0, sizeof(opts[nopts]));
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (o == ':')
            return usage_fail(cmd, "option %s needs a value", argv[optind - 1]);
        if (o < 1000)
            return usage_fail(cmd, "unknown option %s", argv[optind - 1]);
        const opt_desc_t *d = &opt_descs[o - 1000];
        if (d->bit == O_CODE)
            return refuse_code_option(cmd, spec);
        out->seen |= d->bit;
        out->values[o - 1000] = d->kind == V_FLAG ? "true" : optarg;
    }
    if (optind != argc)
        return usage_fail(cmd, "unexpected argument \"%s\"", argv[optind]);
    for (int i = 0; i < N_OPTS; i++) {
        const opt_desc_t *d = &opt_descs[i];
        if ((spec->required & d->bit) && !(out->seen & d->bit))
            return usage_fail(cmd, "--%s%s%s is required", d->name, d->metavar ? " " : "",
                              d->metavar ? d->metavar : "");
    }
    return EXIT_OK;
}

/* The command's data from the options (not the code or password, read later); *actor set from --actor.
 * Everything a user can get wrong is caught here, before any connection, with the option's name. */
static int build_data(const char *cmd, const pub_spec_t *spec, const parsed_t *in, json_t *data,
                      const char **actor) {
    char email[EMAIL_MAX + 1];
    for (int i = 0; i < N_OPTS; i++) {
        const opt_desc_t *d = &opt_descs[i];
        if (!(d->bit & spec->allowed))
            continue;
        const char *v = in->values[i];
        /* Text that is not UTF-8 cannot go into JSON: refused here, never dropped (a list's items are
         * checked one by one below, to say which). */
        if (v && d->kind != V_LIST_OR_NONE && !utf8_valid(v, strlen(v)))
            return usage_fail(cmd, "--%s: not UTF-8 text (check the encoding of the terminal or script)",
                              d->name);
        if (d->kind == V_UUID && v && !uuid_valid(v))
            return usage_fail(cmd, "--%s: \"%s\" is not a UUID", d->name, v);
        if (d->bit == O_ACTOR) {
            *actor = v;
        } else if (d->bit == O_PASSWORD || d->bit == O_CODE) {
            continue; /* read from stdin last, once everything else is known to be right */
        } else if (d->kind == V_FLAG) {
            /* An invitation's can_manage_users only when asked for (set-role sends both flags). */
            if (v || d->bit != O_MANAGE || spec->type == RAIKOO_CMD_SET_MEMBER_ROLE)
                json_object_set_new(data, d->field, json_boolean(v != NULL));
        } else if (v && d->kind != V_TEXT && d->kind != V_INT && strcmp(v, "none") == 0) {
            json_object_set_new(data, d->field, json_null());
        } else if (v && (d->kind == V_INT || d->kind == V_INT_OR_NONE)) {
            char *end = NULL;
            long n = strtol(v, &end, 10);
            json_object_set_new(data, d->field, *v && !*end ? json_integer(n) : json_string(v));
        } else if (v && d->kind == V_LIST_OR_NONE) {
            json_t *list = json_array();
            const char *start = v;
            int item = 0;
            for (const char *q = v;; q++) {
                if (*q == ',' || *q == '\0') {
                    item++;
                    if (q > start) {
                        json_t *s = utf8_valid(start, (size_t)(q - start))
                                        ? json_stringn(start, (size_t)(q - start))
                                        : NULL;
                        if (!s) { /* never sent without it: the command would say less than was asked */
                            json_decref(list);
                            return usage_fail(cmd,
                                              "--%s: item %d is not UTF-8 text (check the encoding of the "
                                              "terminal or script); nothing was sent",
                                              d->name, item);
                        }
                        json_array_append_new(list, s);
                    }
                    start = q + 1;
                }
                if (!*q)
                    break;
            }
            json_object_set_new(data, d->field, list);
        } else if (d->kind == V_EMAIL && v) {
            char why[256];
            if (email_normalize(v, email, why, sizeof(why)) != 0)
                return usage_fail(cmd, "--email: %s", why);
            json_object_set_new(data, d->field, json_string(email));
        } else if (v) {
            json_object_set_new(data, d->field, json_string(v));
        }
    }
    return EXIT_OK;
}

/* The code from standard input into data's "code" (spaces around a pasted code are not part of it). */
static int read_code(const char *cmd, const pub_spec_t *spec, json_t *data) {
    int activate = spec->type == RAIKOO_CMD_ACTIVATE_ACCOUNT;
    const char *how =
        activate ? "the one-time password from the e-mail on the first line, the new password "
                   "on the second: printf '%s\\n%s\\n' \"$CODE\" 'new password' | raikoo activate ..."
                 : "the confirmation code from the e-mail on the first line: "
                   "printf '%s\\n' \"$CODE\" | raikoo accept ...";
    char err[512];
    size_t cap = 0;
    char *code = secret_read(
        activate ? "One-time password from the e-mail: " : "Confirmation code from the e-mail: ", "the code",
        how, &cap, err, sizeof(err));
    if (!code)
        return usage_fail(cmd, "%s", err);
    char *start = code, *end = code + strlen(code);
    while (*start == ' ' || *start == '\t')
        start++;
    while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
        *--end = '\0';
    json_object_set_new(data, "code", json_string(start));
    secret_free(code, cap);
    return EXIT_OK;
}

/* The new password from standard input (twice on a terminal), hashed with Argon2id into data's
 * "password_hash"; the password itself is wiped before returning. */
static int read_password(const char *cmd, const pub_spec_t *spec, json_t *data, int as_json) {
    const char *how = spec->type == RAIKOO_CMD_ACTIVATE_ACCOUNT
                          ? "the new password goes on the second line: printf '%s\\n%s\\n' \"$CODE\" 'new "
                            "password' | raikoo activate ..."
                          : "--password-stdin: one line on standard input";
    char err[512], hash[RAIKOO_PASSWORD_HASH_SIZE];
    size_t cap = 0;
    char *password = secret_read("New password: ", "the password", how, &cap, err, sizeof(err));
    if (password && isatty(STDIN_FILENO)) {
        size_t again_cap = 0;
        char *again = secret_read("New password again: ", "the password", how, &again_cap, err, sizeof(err));
        int same = again && strcmp(again, password) == 0;
        secret_free(again, again_cap);
        if (!same) {
            snprintf(err, sizeof(err), "the two passwords typed differ");
            secret_free(password, cap);
            password = NULL;
        }
    }
    if (!password)
        return usage_fail(cmd, "%s", err);
    int hashed = raikoo_password_hash(password, hash, err, sizeof(err));
    secret_free(password, cap);
    if (hashed != 0)
        return infra_fail(cmd, NULL, "internal", err, as_json);
    json_object_set_new(data, "password_hash", json_string(hash));
    sodium_memzero(hash, sizeof(hash));
    return EXIT_OK;
}

/* Publishes data as the spec's command (data stolen), then with wait prints its result; else its id. */
static int publish_and_report(const char *cmd, const pub_spec_t *spec, conf_t *c, const char *actor,
                              json_t *data, long timeout_ms, int wait, int as_json) {
    char err[1024], id[UUID_BUF] = "";
    raikoo_result_t result = {0};
    int rc;
    raikoo_producer_t *p = raikoo_producer_new_conf(c, err, sizeof(err));
    if (!p) {
        json_decref(data);
        return infra_fail(cmd, NULL, "unreachable", err, as_json);
    }
    raikoo_producer_set_source(p, CLI_SOURCE);
    /* Follow the results before publishing, so that a fast result cannot slip past. */
    if (wait && raikoo_results_follow(p, err, sizeof(err)) != 0) {
        json_decref(data);
        rc = infra_fail(cmd, NULL, "unreachable", err, as_json);
        goto done;
    }
    int prc = raikoo_command_publish(p, spec->type, actor, data, id, err, sizeof(err)); /* steals data */
    if (prc == RAIKOO_ERR_INVALID) {
        rc = usage_fail(cmd, "invalid command: %s", err);
    } else if (prc != 0) {
        rc = infra_fail(cmd, id, prc == RAIKOO_ERR_TIMEOUT ? "timeout" : "unreachable", err, as_json);
    } else if (!wait) {
        if (as_json)
            printf("{\"command_id\":\"%s\"}\n", id);
        else
            printf("%s\n", id);
        rc = EXIT_ACCEPTED;
    } else {
        int wrc = raikoo_command_wait(p, id, (int)timeout_ms, &result, err, sizeof(err));
        if (wrc == 0) {
            snprintf(err, sizeof(err),
                     "no result for command %s within %ld ms (result.timeout.ms); the command was published: "
                     "is raikoo-command-worker (and raikoo-outbox-relay) running?",
                     id, timeout_ms);
            rc = infra_fail(cmd, id, "timeout", err, as_json);
        } else if (wrc < 0) {
            rc = infra_fail(cmd, id, "unreachable", err, as_json);
        } else {
            result_print(&result, as_json);
            rc = result.accepted ? EXIT_ACCEPTED : EXIT_REJECTED;
        }
    }
done:
    fflush(stdout);
    raikoo_result_clear(&result);
    raikoo_producer_free(p);
    return rc;
}

int cmd_publish(int argc, char **argv, conf_t *c) {
    const char *cmd = argv[0];
    const pub_spec_t *spec = spec_find(cmd);
    if (!spec)
        return EXIT_USAGE;
    parsed_t in;
    int rc = parse_options(argc, argv, spec, &in);
    if (rc != EXIT_OK)
        return rc;
    int wait = (in.seen & O_WAIT) != 0, as_json = (in.seen & O_JSON) != 0;
    const char *actor = NULL;
    char err[1024];
    json_t *data = json_object();
    if ((rc = build_data(cmd, spec, &in, data, &actor)) != EXIT_OK ||
        ((spec->allowed & O_CODE) && (rc = read_code(cmd, spec, data)) != EXIT_OK) ||
        ((spec->allowed & O_PASSWORD) && (rc = read_password(cmd, spec, data, as_json)) != EXIT_OK))
        goto fail;
    /* The same checks the worker makes (lengths, ...), still before connecting. */
    long max_bytes, timeout_ms;
    if (conf_get_long(c, "command.max.bytes", 256, 64L * 1024 * 1024, &max_bytes, err, sizeof(err)) != 0 ||
        conf_get_long(c, "result.timeout.ms", 0, 24L * 3600 * 1000, &timeout_ms, err, sizeof(err)) != 0) {
        fprintf(stderr, "raikoo %s: %s\n", cmd, err);
        rc = EXIT_USAGE;
        goto fail;
    }
    raikoo_command_msg_t probe;
    if (raikoo_command_build(spec->type, CLI_SOURCE, actor, json_deep_copy(data), (size_t)max_bytes, &probe,
                             err, sizeof(err)) != 0) {
        rc = usage_fail(cmd, "invalid command: %s", err);
        goto fail;
    }
    raikoo_command_msg_clear(&probe);
    return publish_and_report(cmd, spec, c, actor, data, timeout_ms, wait, as_json);
fail:
    fflush(stdout);
    json_decref(data);
    return rc;
}
