/* raikoo-domain-runner: applies the data-driven domain cases under tests/domain/<case>/ through the command
 * processor (lib/cmdproc) against PostgreSQL alone: no Kafka, no relay. For each case folder it creates
 * what setup.json names, applies commands.json one command per transaction, reads what each command wrote
 * to the outbox (its result, events and mail jobs) and runs the row queries of expected.json. It prints
 * one JSON line per case with what happened, every id and e-mail address written back as the case's
 * symbol ("$owner", "$inv.code"); tests/test_domain_cases.py compares that with expected.json.
 *
 * Give it a database of its own: it reads the outbox and empties it after each case (no relay may run
 * there). Ids and e-mail addresses are fresh on every run, so a case can run again on the same database.
 *
 * Symbols: "$name" is the id of what setup or a command's "as" named, "$name.email" its e-mail address,
 * "$name.code" an invitation's code (display form), "$name.org_id" / ".user_id" / ".invitation_id" the ids
 * of a command's result, "$argon2id" an Argon2id hash. A string that is exactly a symbol is replaced; in
 * the row queries every symbol becomes a query parameter. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <sodium.h>

#include "exitstatus.h"
#include "cmdproc.h"
#include "conf.h"
#include "db.h"
#include "email.h"
#include "log.h"
#include "secret.h"
#include "text.h"

#define SYM_MAX 512
#define SYM_NAME_MAX 96
#define SYM_VALUE_MAX 512

typedef struct sym {
    char name[SYM_NAME_MAX];   /* "owner", "owner.email", "inv.code" */
    char value[SYM_VALUE_MAX]; /* its value in this run */
} sym_t;

typedef struct runner {
    conf_t *conf;
    PGconn *db;
    secret_keys_t keys;
    cmdproc_t *proc;
    const char *topic_results, *topic_events, *topic_mail;
    char run[13];   /* this run's tag, in every e-mail address */
    char hash[256]; /* an Argon2id hash ($argon2id) */
    sym_t syms[SYM_MAX];
    int nsyms;
    char errstr[1024];
    int batch; /* --batch: each case's commands in one cmdproc_apply (one transaction) */
    /* --lose-prepared: the session's prepared statements dropped (DEALLOCATE ALL) before every command, as a
     * server restarted under the same backend pid would; a failed attempt is made again once, as the
     * worker's consumer loop offers a batch again. lost counts the first attempts that failed. */
    int lose_prepared;
    long lost;
} runner_t;

/* ---- symbols ---- */

static const char *sym_get(runner_t *r, const char *name) {
    if (strcmp(name, "argon2id") == 0)
        return r->hash;
    for (int i = 0; i < r->nsyms; i++)
        if (strcmp(r->syms[i].name, name) == 0)
            return r->syms[i].value;
    return NULL;
}

static int sym_set(runner_t *r, const char *name, const char *value) {
    for (int i = 0; i < r->nsyms; i++) {
        if (strcmp(r->syms[i].name, name) == 0) {
            text_printf(r->syms[i].value, SYM_VALUE_MAX, "%s", value);
            return 0;
        }
    }
    if (r->nsyms == SYM_MAX) {
        text_printf(r->errstr, sizeof(r->errstr), "more than %d symbols in one case", SYM_MAX);
        return -1;
    }
    text_printf(r->syms[r->nsyms].name, SYM_NAME_MAX, "%s", name);
    text_printf(r->syms[r->nsyms].value, SYM_VALUE_MAX, "%s", value);
    r->nsyms++;
    return 0;
}

static int sym_set2(runner_t *r, const char *name, const char *field, const char *value) {
    char full[SYM_NAME_MAX];
    text_printf(full, sizeof(full), "%s.%s", name, field);
    return sym_set(r, full, value);
}

/* The symbol whose value is s ("$owner"), or NULL. Ids and e-mail addresses only: short values like
 * "true" never match, since every symbol's value is an id, an address, a code or a hash. */
static const char *sym_of_value(runner_t *r, const char *s) {
    for (int i = 0; i < r->nsyms; i++)
        if (strcasecmp(r->syms[i].value, s) == 0)
            return r->syms[i].name;
    return NULL;
}

/* A symbol reference starts with '$' and a letter: "$owner.email". Returns its length, 0 when s is not. */
static size_t sym_ref_len(const char *s) {
    if (s[0] != '$' || !isalpha((unsigned char)s[1]))
        return 0;
    size_t n = 1;
    while (isalnum((unsigned char)s[n]) || s[n] == '_' || s[n] == '.' || s[n] == '-')
        n++;
    while (n > 1 && s[n - 1] == '.')
        n--;
    return n;
}

/* The value of x when it is a string that is exactly a symbol reference ("$name"): *out set to a new
 * string (NULL when x is not a reference). -1 on an unknown symbol. */
static int resolve(runner_t *r, json_t *x, json_t **out) {
    *out = NULL;
    const char *s = json_string_value(x);
    if (!s || !s[0] || sym_ref_len(s) != strlen(s))
        return 0;
    const char *val = sym_get(r, s + 1);
    if (!val) {
        text_printf(r->errstr, sizeof(r->errstr), "unknown symbol %s", s);
        return -1;
    }
    *out = json_string(val);
    return 0;
}

/* A symbol's value written back as "$symbol": *out a new string, NULL when x is no symbol's value. */
static int symbol_of(runner_t *r, json_t *x, json_t **out) {
    const char *name = sym_of_value(r, json_string_value(x));
    *out = NULL;
    if (name) {
        char ref[SYM_NAME_MAX + 1];
        text_printf(ref, sizeof(ref), "$%s", name);
        *out = json_string(ref);
    }
    return 0;
}

/* Replaces, in place throughout v, every string for which fn gives a new value; -1 when fn fails. */
static int map_strings(runner_t *r, json_t *v, int (*fn)(runner_t *, json_t *, json_t **)) {
    json_t *x, *repl;
    if (json_is_object(v)) {
        const char *k;
        json_object_foreach(v, k, x) {
            if (!json_is_string(x) ? map_strings(r, x, fn) != 0 : fn(r, x, &repl) != 0)
                return -1;
            if (json_is_string(x) && repl)
                json_object_set_new(v, k, repl);
        }
    } else if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            x = json_array_get(v, i);
            if (!json_is_string(x) ? map_strings(r, x, fn) != 0 : fn(r, x, &repl) != 0)
                return -1;
            if (json_is_string(x) && repl)
                json_array_set_new(v, i, repl);
        }
    }
    return 0;
}

/* Replaces, in place throughout v, every string that is exactly a symbol reference. -1 on an unknown one. */
static int substitute(runner_t *r, json_t *v) {
    return map_strings(r, v, resolve);
}

/* Writes every string of v that is a symbol's value back as "$symbol", in place. */
static void symbolize(runner_t *r, json_t *v) {
    map_strings(r, v, symbol_of);
}

/* ---- setup ---- */

static int exec_sql(runner_t *r, const char *sql, int n, const char *const *p) {
    PGresult *res = db_exec(r->db, sql, n, p, r->errstr, sizeof(r->errstr));
    if (!res)
        return -1;
    PQclear(res);
    return 0;
}

static const char *str_field(json_t *o, const char *key, const char *def) {
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : def;
}

static int bool_field(json_t *o, const char *key, int def) {
    json_t *v = json_object_get(o, key);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

/* The id of a name setup made, or an error naming it. */
static const char *need_id(runner_t *r, json_t *o, const char *key) {
    const char *name = str_field(o, key, NULL);
    const char *id = name ? sym_get(r, name) : NULL;
    if (!id)
        text_printf(r->errstr, sizeof(r->errstr), "setup: %s \"%s\" names nothing made before", key,
                    name ? name : "(missing)");
    return id;
}

static int new_name(runner_t *r, json_t *o, char id[UUID_BUF]) {
    const char *as = str_field(o, "as", NULL);
    if (!as || !isalpha((unsigned char)as[0])) {
        text_printf(r->errstr, sizeof(r->errstr),
                    "setup: every entry needs \"as\": a name starting with a letter");
        return -1;
    }
    uuid_generate(id);
    return sym_set(r, as, id);
}

static int setup_users(runner_t *r, json_t *users) {
    static const char sql[] =
        "INSERT INTO users (id, email, username, name, password_hash, enabled, is_admin, activated_at)"
        " VALUES ($1, $2, $2, $3, $4, $5, $6, CASE WHEN $4::text IS NULL THEN NULL ELSE now() END)";
    size_t i;
    json_t *u;
    json_array_foreach(users, i, u) {
        char id[UUID_BUF], email[EMAIL_MAX + 1];
        if (new_name(r, u, id) != 0)
            return -1;
        const char *as = str_field(u, "as", "");
        text_printf(email, sizeof(email), "%s-%s@example.test", as, r->run);
        for (char *s = email; *s; s++)
            *s = (char)tolower((unsigned char)*s);
        if (sym_set2(r, as, "email", email) != 0)
            return -1;
        int enabled = bool_field(u, "enabled", 1), admin = bool_field(u, "admin", 0);
        int activated = bool_field(u, "activated", 1);
        const char *p[6] = {id,
                            email,
                            str_field(u, "name", as),
                            activated ? r->hash : NULL,
                            enabled ? "true" : "false",
                            admin ? "true" : "false"};
        if (exec_sql(r, sql, 6, p) != 0)
            return -1;
    }
    return 0;
}

static int setup_orgs(runner_t *r, json_t *orgs) {
    size_t i;
    json_t *o;
    json_array_foreach(orgs, i, o) {
        char id[UUID_BUF];
        if (new_name(r, o, id) != 0)
            return -1;
        const char *p[2] = {id, str_field(o, "name", str_field(o, "as", ""))};
        if (exec_sql(r, "INSERT INTO organizations (id, name) VALUES ($1, $2)", 2, p) != 0)
            return -1;
    }
    return 0;
}

static int setup_members(runner_t *r, json_t *members) {
    size_t i;
    json_t *m;
    json_array_foreach(members, i, m) {
        const char *org = need_id(r, m, "org"), *user = org ? need_id(r, m, "user") : NULL;
        if (!user)
            return -1;
        const char *p[4] = {org, user, bool_field(m, "owner", 0) ? "true" : "false",
                            bool_field(m, "manage", 0) ? "true" : "false"};
        if (exec_sql(r,
                     "INSERT INTO org_members (org_id, user_id, is_owner, can_manage_users) VALUES ($1, $2, "
                     "$3, $4)",
                     4, p) != 0)
            return -1;
    }
    return 0;
}

/* Invitations with a code the case knows ($name.code): status, failed attempts and expiry as stated. */
static int setup_invitations(runner_t *r, json_t *invs) {
    static const char sql[] =
        "INSERT INTO invitations (id, org_id, email, user_id, kind, grant_owner, status, code_hash, "
        "failed_attempts,"
        "                         invited_by, created_at, expires_at, decided_at, grant_manage_users)"
        " SELECT $1, $2, u.email, u.id, $4, $5, $6, $7, $8, $9,"
        "        CASE WHEN $10 THEN now() - interval '2 days' ELSE now() END,"
        "        CASE WHEN $10 THEN now() - interval '1 day' ELSE now() + interval '1 day' END,"
        "        CASE WHEN $6 IN ('accepted', 'removed') THEN now() END, $11"
        "   FROM users u WHERE u.id = $3";
    size_t i;
    json_t *v;
    json_array_foreach(invs, i, v) {
        char id[UUID_BUF];
        if (new_name(r, v, id) != 0)
            return -1;
        const char *org = need_id(r, v, "org"), *user = org ? need_id(r, v, "user") : NULL;
        const char *by = user ? need_id(r, v, "by") : NULL;
        if (!by)
            return -1;
        char canon[CODE_LEN + 1], display[CODE_DISPLAY_LEN + 1], hex[2 * CODE_HASH_LEN + 3], attempts[24];
        unsigned char h[CODE_HASH_LEN];
        code_generate(canon);
        code_display(canon, display);
        code_hash(&r->keys, canon, h);
        hex[0] = '\\';
        hex[1] = 'x';
        sodium_bin2hex(hex + 2, sizeof(hex) - 2, h, sizeof(h));
        json_t *fa = json_object_get(v, "failed_attempts");
        snprintf(attempts, sizeof(attempts), "%lld",
                 json_is_integer(fa) ? (long long)json_integer_value(fa) : 0LL);
        const char *p[11] = {id,
                             org,
                             user,
                             str_field(v, "kind", "existing"),
                             bool_field(v, "owner", 0) ? "true" : "false",
                             str_field(v, "status", "pending"),
                             hex,
                             attempts,
                             by,
                             bool_field(v, "expired", 0) ? "true" : "false",
                             bool_field(v, "manage", 0) ? "true" : "false"};
        if (exec_sql(r, sql, 11, p) != 0 || sym_set2(r, str_field(v, "as", ""), "code", display) != 0)
            return -1;
    }
    return 0;
}

static int setup(runner_t *r, json_t *s) {
    json_t *ghosts = json_object_get(s, "ghosts"); /* names of ids nothing holds: an unknown actor */
    size_t i;
    json_t *g;
    json_array_foreach(ghosts, i, g) {
        char id[UUID_BUF], email[EMAIL_MAX + 1];
        uuid_generate(id);
        if (!json_is_string(g) || sym_set(r, json_string_value(g), id) != 0)
            return -1;
        text_printf(email, sizeof(email), "%s-%s@example.test", json_string_value(g), r->run);
        for (char *c = email; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        if (sym_set2(r, json_string_value(g), "email", email) != 0) /* an address nobody has */
            return -1;
    }
    if (setup_users(r, json_object_get(s, "users")) != 0 || setup_orgs(r, json_object_get(s, "orgs")) != 0 ||
        setup_members(r, json_object_get(s, "members")) != 0 ||
        setup_invitations(r, json_object_get(s, "invitations")) != 0)
        return -1;
    return 0;
}

/* ---- commands ---- */

/* The envelope of one entry of commands.json: {"type", "actor", "data", "id"} (compact) or {"raw": {...}}. */
static json_t *envelope(runner_t *r, json_t *entry) {
    json_t *raw = json_object_get(entry, "raw");
    if (raw)
        return json_deep_copy(raw);
    const char *type = str_field(entry, "type", NULL);
    if (!type) {
        text_printf(r->errstr, sizeof(r->errstr), "a command needs \"type\" (or \"raw\": a whole envelope)");
        return NULL;
    }
    char id[UUID_BUF], ctype[128];
    uuid_generate(id);
    text_printf(ctype, sizeof(ctype), "raikoo.command.%s.v1", type);
    json_t *data = json_object_get(entry, "data");
    json_t *ev = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:O}", "specversion", "1.0", "id",
                           str_field(entry, "id", id), "source", "/tests/domain", "type", ctype, "time",
                           "2026-11-27T00:00:00Z", "datacontenttype", "application/json", "data",
                           data ? data : json_object());
    if (!ev)
        abort(); /* out of memory: the strings come from jansson or are ours */
    const char *actor = str_field(entry, "actor", NULL);
    if (actor)
        json_object_set_new(ev, "actorid", json_string(actor));
    return ev;
}

/* The type name of an event ("raikoo.event.MemberRemoved.v1" -> "MemberRemoved"). */
static json_t *event_name(const char *type) {
    const char *s = strncmp(type, "raikoo.event.", 13) == 0 ? type + 13 : type;
    size_t n = strlen(s);
    if (n > 3 && strcmp(s + n - 3, ".v1") == 0)
        n -= 3;
    return json_stringn(s, n);
}

/* What one command wrote to the outbox after mark: fills out and advances mark. */
static int read_outbox(runner_t *r, long long *mark, const char *as, json_t *out, int to_result) {
    char m[24];
    snprintf(m, sizeof(m), "%lld", *mark);
    const char *p[1] = {m};
    PGresult *res = db_exec(r->db, "SELECT id, topic, payload FROM outbox WHERE id > $1 ORDER BY id", 1, p,
                            r->errstr, sizeof(r->errstr));
    if (!res)
        return -1;
    json_t *events = json_array(), *mail = json_array();
    for (int i = 0; i < PQntuples(res); i++) {
        *mark = strtoll(PQgetvalue(res, i, 0), NULL, 10);
        const char *topic = PQgetvalue(res, i, 1);
        json_t *ev = json_loads(PQgetvalue(res, i, 2), 0, NULL);
        json_t *data = json_object_get(ev, "data");
        if (!ev || !data) {
            json_decref(ev);
            continue;
        }
        int is_result = strcmp(topic, r->topic_results) == 0;
        if (is_result) {
            json_object_set(out, "status", json_object_get(data, "status"));
            json_object_set(out, "code", json_object_get(data, "code"));
            json_object_set(out, "message", json_object_get(data, "message"));
            static const char *const ids[] = {"org_id", "user_id", "invitation_id"};
            for (int k = 0; k < 3; k++) {
                json_t *v = json_object_get(data, ids[k]);
                json_object_set(out, ids[k], v);
                /* A result's new ids get names of their own: "$as.invitation_id". */
                if (as && json_is_string(v) && !sym_of_value(r, json_string_value(v)) &&
                    sym_set2(r, as, ids[k], json_string_value(v)) != 0) {
                    json_decref(ev);
                    PQclear(res);
                    return -1;
                }
            }
        } else if (strcmp(topic, r->topic_events) == 0) {
            json_t *e = json_object();
            json_object_set_new(e, "type", event_name(json_string_value(json_object_get(ev, "type"))));
            json_object_set(e, "data", data);
            json_array_append_new(events, e);
        } else if (strcmp(topic, r->topic_mail) == 0) {
            /* The code travels sealed: opened here so that the case can use it ($as.code). */
            char canon[CODE_LEN + 1], display[CODE_DISPLAY_LEN + 1];
            const char *sealed = json_string_value(json_object_get(data, "sealed_code"));
            json_t *j = json_pack(
                "{s:O?, s:O?, s:O?, s:O?, s:O?, s:O?, s:O?}", "kind", json_object_get(data, "kind"), "email",
                json_object_get(data, "email"), "grant_owner", json_object_get(data, "grant_owner"),
                "invitation_id", json_object_get(data, "invitation_id"), "grant_manage_users",
                json_object_get(data, "grant_manage_users"), "locale", json_object_get(data, "locale"),
                "app_url", json_object_get(data, "app_url"));
            if (sealed && code_open(&r->keys, sealed, canon) == 0) {
                code_display(canon, display);
                sodium_memzero(canon, sizeof(canon));
                if (as && sym_set2(r, as, "code", display) != 0) {
                    json_decref(j);
                    json_decref(ev);
                    PQclear(res);
                    return -1;
                }
                json_object_set_new(j, "code_opens", json_true());
            } else {
                json_object_set_new(j, "code_opens", json_false());
            }
            json_array_append_new(mail, j);
        }
        json_decref(ev);
        if (to_result && is_result)
            break; /* a batch: the next command's rows follow */
    }
    PQclear(res);
    json_object_set_new(out, "events", events);
    json_object_set_new(out, "mail", mail);
    return 0;
}

/* --batch: every command of the case in one call of cmdproc_apply (one transaction, the set path where it
 * applies); each command's rows are those up to and including its result (a dead letter writes none).
 * Symbols can name only what setup made. */
static json_t *apply_batch(runner_t *r, json_t *commands, long long mark) {
    size_t n = json_array_size(commands), i;
    json_t *results = json_array(), *entry, *es = json_array();
    cmdproc_msg_t *msgs = xcalloc(n ? n : 1, sizeof(*msgs));
    char **payloads = xcalloc(n ? n : 1, sizeof(*payloads));
    json_array_foreach(commands, i, entry) {
        json_t *e = json_deep_copy(entry);
        json_array_append_new(es, e);
        json_t *ev = substitute(r, e) == 0 ? envelope(r, e) : NULL;
        if (!ev)
            goto fail;
        payloads[i] = json_dumps(ev, JSON_COMPACT);
        json_decref(ev);
        msgs[i].payload = payloads[i];
        msgs[i].len = strlen(payloads[i]);
    }
    if (cmdproc_apply(r->proc, msgs, n, r->errstr, sizeof(r->errstr)) != 0)
        goto fail;
    json_array_foreach(es, i, entry) {
        json_t *out = json_pack("{s:s}", "outcome", msgs[i].outcome ? msgs[i].outcome : "none");
        json_array_append_new(results, out);
        if (msgs[i].dead_letter) {
            json_object_set_new(out, "status", json_string("dead_letter"));
            json_object_set_new(out, "code", json_null());
            json_object_set_new(out, "events", json_array());
            json_object_set_new(out, "mail", json_array());
            continue;
        }
        char autoname[32];
        snprintf(autoname, sizeof(autoname), "c%zu", i + 1);
        if (read_outbox(r, &mark, str_field(entry, "as", autoname), out, 1) != 0)
            goto fail;
    }
    goto done;
fail:
    json_decref(results);
    results = NULL;
done:
    for (i = 0; i < n; i++)
        free(payloads[i]);
    free(payloads);
    free(msgs);
    json_decref(es);
    return results;
}

static json_t *apply_commands(runner_t *r, json_t *commands) {
    json_t *results = json_array();
    long long mark = 0;
    PGresult *res =
        db_exec(r->db, "SELECT coalesce(max(id), 0) FROM outbox", 0, NULL, r->errstr, sizeof(r->errstr));
    if (!res)
        goto fail;
    mark = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    if (r->batch) {
        json_decref(results);
        return apply_batch(r, commands, mark);
    }
    size_t i;
    json_t *entry;
    json_array_foreach(commands, i, entry) {
        json_t *e = json_deep_copy(entry);
        if (substitute(r, e) != 0) {
            json_decref(e);
            goto fail;
        }
        json_t *ev = envelope(r, e);
        if (!ev) {
            json_decref(e);
            goto fail;
        }
        char *payload = json_dumps(ev, JSON_COMPACT);
        json_decref(ev);
        cmdproc_msg_t msg = {.payload = payload, .len = strlen(payload)};
        if (r->lose_prepared && db_cmd(r->db, "DEALLOCATE ALL", r->errstr, sizeof(r->errstr)) != 0) {
            free(payload);
            json_decref(e);
            goto fail;
        }
        int rc = cmdproc_apply(r->proc, &msg, 1, r->errstr, sizeof(r->errstr));
        if (rc != 0 && r->lose_prepared) {
            r->lost++;
            rc = cmdproc_apply(r->proc, &msg, 1, r->errstr, sizeof(r->errstr));
        }
        free(payload);
        if (rc != 0) {
            json_decref(e);
            goto fail;
        }
        json_t *out = json_pack("{s:s}", "outcome", msg.outcome ? msg.outcome : "none");
        if (msg.dead_letter) {
            json_object_set_new(out, "status", json_string("dead_letter"));
            json_object_set_new(out, "code", json_null());
        }
        char autoname[32]; /* a command without "as" is "c1", "c2" ...: its new ids read "$c1.user_id" */
        snprintf(autoname, sizeof(autoname), "c%zu", i + 1);
        if (read_outbox(r, &mark, str_field(e, "as", autoname), out, 0) != 0) {
            json_decref(out);
            json_decref(e);
            goto fail;
        }
        json_decref(e);
        json_array_append_new(results, out);
    }
    return results;
fail:
    json_decref(results);
    return NULL;
}

/* ---- row queries: {"sql": "... $inv ...", "rows": [...]} of expected.json ---- */

static json_t *row_query(runner_t *r, const char *sql) {
    size_t cap = strlen(sql) * 2 + 16, n = 0;
    char *text = xmalloc(cap);
    const char *params[32];
    int np = 0;
    json_t *out = NULL;
    for (const char *s = sql; *s;) {
        size_t len = sym_ref_len(s);
        if (!len) {
            text[n++] = *s++;
            continue;
        }
        char name[SYM_NAME_MAX];
        text_printf(name, sizeof(name), "%.*s", (int)len - 1, s + 1);
        const char *val = sym_get(r, name);
        if (!val || np == 32) {
            text_printf(r->errstr, sizeof(r->errstr), "row query: %s %s",
                        val ? "more than 32 symbols at" : "unknown symbol", name);
            goto done;
        }
        params[np++] = val;
        n += (size_t)snprintf(text + n, cap - n, "$%d", np);
        s += len;
    }
    text[n] = '\0';
    PGresult *res = db_exec(r->db, text, np, params, r->errstr, sizeof(r->errstr));
    if (!res)
        goto done;
    out = json_array();
    for (int i = 0; i < PQntuples(res); i++) {
        json_t *row = json_array();
        for (int k = 0; k < PQnfields(res); k++) {
            if (PQgetisnull(res, i, k))
                json_array_append_new(row, json_null());
            else if (PQftype(res, k) == 16) /* bool */
                json_array_append_new(row, json_boolean(PQgetvalue(res, i, k)[0] == 't'));
            else if (PQftype(res, k) == 20 || PQftype(res, k) == 23 || PQftype(res, k) == 21)
                json_array_append_new(row, json_integer(strtoll(PQgetvalue(res, i, k), NULL, 10)));
            else
                json_array_append_new(row, json_string(PQgetvalue(res, i, k)));
        }
        json_array_append_new(out, row);
    }
    PQclear(res);
done:
    free(text);
    return out;
}

/* ---- one case ---- */

static json_t *load(runner_t *r, const char *dir, const char *file, int required) {
    char path[4096];
    text_printf(path, sizeof(path), "%s/%s", dir, file);
    json_error_t je;
    FILE *f = fopen(path, "r");
    if (!f) {
        if (!required)
            return json_object();
        text_printf(r->errstr, sizeof(r->errstr), "%s: cannot be opened", path);
        return NULL;
    }
    json_t *v = json_loadf(f, 0, &je);
    fclose(f);
    if (!v)
        text_printf(r->errstr, sizeof(r->errstr), "%s:%d: %s", path, je.line, je.text);
    return v;
}

static json_t *run_case(runner_t *r, const char *dir) {
    json_t *s = NULL, *commands = NULL, *expected = NULL, *out = NULL;
    r->nsyms = 0;
    r->errstr[0] = '\0';
    if (!(s = load(r, dir, "setup.json", 0)) || !(commands = load(r, dir, "commands.json", 1)) ||
        !(expected = load(r, dir, "expected.json", 1)))
        goto done;
    if (!json_is_array(commands)) {
        text_printf(r->errstr, sizeof(r->errstr), "%s/commands.json: not an array", dir);
        goto done;
    }
    if (setup(r, s) != 0)
        goto done;
    unsigned long set_based_before = cmdproc_set_based_decided(r->proc);
    json_t *results = apply_commands(r, commands);
    if (!results)
        goto done;
    json_t *rows = json_array();
    size_t i;
    json_t *q;
    json_array_foreach(json_object_get(expected, "rows"), i, q) {
        json_t *got = row_query(r, str_field(q, "sql", ""));
        if (!got) {
            json_decref(rows);
            json_decref(results);
            goto done;
        }
        json_array_append_new(rows, json_pack("{s:s, s:o}", "sql", str_field(q, "sql", ""), "rows", got));
    }
    out = json_pack("{s:s, s:o, s:o}", "case", dir, "results", results, "rows", rows);
    if (r->batch) /* how many commands of this case the set path decided */
        json_object_set_new(
            out, "set_based",
            json_integer((json_int_t)(cmdproc_set_based_decided(r->proc) - set_based_before)));
    symbolize(r, json_object_get(out, "results"));
    symbolize(r, json_object_get(out, "rows"));
    /* Nobody publishes this database's outbox. */
    if (db_cmd(r->db, "DELETE FROM outbox", r->errstr, sizeof(r->errstr)) != 0) {
        json_decref(out);
        out = NULL;
    }
done:
    json_decref(s);
    json_decref(commands);
    json_decref(expected);
    return out;
}

static void usage(void) {
    fprintf(stderr,
            "usage: raikoo-domain-runner [--config FILE] [--batch] [--per-command] [--lose-prepared] "
            "CASE_DIR...\n"
            "Applies each tests/domain/<case>/ through the command processor against PostgreSQL alone\n"
            "(db.url: a database of its own, migrated, where no relay runs) and prints one JSON line per\n"
            "case: each command's result, events and mail jobs, and the rows of expected.json's queries.\n"
            "--batch applies each case's commands as one batch (one transaction); --per-command turns the\n"
            "command processor's set path off (every command through the per-command rules); "
            "--lose-prepared\n"
            "drops the session's prepared statements before every command and tries a failed one again once\n"
            "(each case's line then says how many first attempts failed: \"lost\").\n");
}

/* Reads the options into r, *config and *per_command; returns the index of the first case. */
static int options(runner_t *r, int argc, char **argv, const char **config, int *per_command) {
    int argi = 1;
    for (;;) {
        if (argc > argi + 1 && strcmp(argv[argi], "--config") == 0) {
            *config = argv[argi + 1];
            argi += 2;
        } else if (argi < argc && strcmp(argv[argi], "--batch") == 0) {
            r->batch = 1;
            argi++;
        } else if (argi < argc && strcmp(argv[argi], "--per-command") == 0) {
            *per_command = 1;
            argi++;
        } else if (argi < argc && strcmp(argv[argi], "--lose-prepared") == 0) {
            r->lose_prepared = 1;
            argi++;
        } else {
            return argi;
        }
    }
}

int main(int argc, char **argv) {
    runner_t *r = xcalloc(1, sizeof(*r));
    int rc = EXIT_USAGE, per_command = 0;
    const char *config = NULL;
    int argi = options(r, argc, argv, &config, &per_command);
    if (argi >= argc || strcmp(argv[argi], "--help") == 0 || strcmp(argv[argi], "-h") == 0) {
        usage();
        free(r);
        return argi >= argc ? EXIT_USAGE : EXIT_OK;
    }
    r->conf = conf_new();
    log_init("domain-runner", "warn");
    if (conf_load(r->conf, config, r->errstr, sizeof(r->errstr)) != 0 ||
        secret_init(r->errstr, sizeof(r->errstr)) != 0 ||
        secret_load(conf_get(r->conf, "keys.dir"), 1, &r->keys, r->errstr, sizeof(r->errstr)) != 0)
        goto done;
    if (crypto_pwhash_str(r->hash, "domain-runner", 13, crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0) {
        text_printf(r->errstr, sizeof(r->errstr), "out of memory hashing a password");
        goto done;
    }
    r->db = db_connect_migrated(r->conf, r->errstr, sizeof(r->errstr));
    if (!r->db)
        goto done;
    r->proc = cmdproc_new(r->conf, r->db, &r->keys, r->errstr, sizeof(r->errstr));
    if (!r->proc)
        goto done;
    cmdproc_set_set_based(r->proc, !per_command);
    r->topic_results = conf_get(r->conf, "topic.results");
    r->topic_events = conf_get(r->conf, "topic.events");
    r->topic_mail = conf_get(r->conf, "topic.mail");
    rc = EXIT_OK;
    for (int i = argi; i < argc; i++) {
        unsigned char tag[6];
        randombytes_buf(tag, sizeof(tag));
        sodium_bin2hex(r->run, sizeof(r->run), tag, sizeof(tag));
        r->lost = 0;
        json_t *out = run_case(r, argv[i]);
        if (out && r->lose_prepared)
            json_object_set_new(out, "lost", json_integer(r->lost));
        if (!out) {
            out = json_pack("{s:s, s:s}", "case", argv[i], "error", r->errstr[0] ? r->errstr : "failed");
            rc = EXIT_REJECTED;
        }
        char *line = json_dumps(out, JSON_COMPACT);
        printf("%s\n", line ? line : "{}");
        free(line);
        json_decref(out);
    }
    r->errstr[0] = '\0';
done:
    if (r->errstr[0])
        fprintf(stderr, "raikoo-domain-runner: %s\n", r->errstr);
    cmdproc_free(r->proc);
    if (r->db)
        PQfinish(r->db);
    conf_free(r->conf);
    sodium_memzero(&r->keys, sizeof(r->keys));
    free(r);
    return rc;
}
