/* The mail job contracts (schemas/mail/InvitationEmail.schema.json, built by the command worker;
 * schemas/mail/InvitationReminder.schema.json, built by the expiry worker): parsed by the mailer, all here. */
#include "mailjob.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "rfc3339.h"
#include "secret.h"

/* The job's CloudEvent: the fields both kinds of job carry, then the one that is the kind's own (the sealed
 * code of an invitation e-mail, the invitation job a reminder refers to), then the optional ones. NULL when a
 * string is not valid UTF-8 (jansson refuses it). */
static char *job_build(const mail_job_t *m, const char *type, const char *source, const char *actorid,
                       const char *own_key, const char *own_value) {
    json_t *data = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:s, s:s}", "job_id",
                             m->job_id, "invitation_id", m->invitation_id, "org_id", m->org_id, "org_name",
                             m->org_name, "kind", m->kind, "email", m->email, "name", m->name, "inviter_name",
                             m->inviter_name, "inviter_email", m->inviter_email, "grant_owner",
                             m->grant_owner, "expires_at", m->expires_at, own_key, own_value);
    if (!data)
        return NULL;
    if ((m->locale && json_object_set_new(data, "locale", json_string(m->locale)) != 0) ||
        (m->app_url && json_object_set_new(data, "app_url", json_string(m->app_url)) != 0) ||
        (m->grant_manage_users && json_object_set_new(data, "grant_manage_users", json_true()) != 0)) {
        json_decref(data);
        return NULL;
    }
    json_t *ev = event_new(type, m->job_id, source, actorid, m->correlationid, data);
    char *text = event_dump(ev);
    json_decref(ev);
    return text;
}

char *mail_job_build(const mail_job_t *m) {
    return job_build(m, MAIL_JOB_TYPE, EVENT_SOURCE_WORKER, m->actorid, "sealed_code", m->sealed_code);
}

char *mail_reminder_build(const mail_job_t *m) {
    return job_build(m, MAIL_REMINDER_TYPE, MAIL_REMINDER_SOURCE, NULL, "invitation_job_id",
                     m->invitation_job_id);
}

static const char *get_str(json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* The envelope and data keys the schema (schemas/mail/InvitationEmail.schema.json) allows: any other key
 * makes the job malformed there, and so here. */
static const char *const envelope_keys[] = {"specversion",     "id",      "source",        "type", "time",
                                            "datacontenttype", "actorid", "correlationid", "data", NULL};
static const char *const data_keys[] = {
    "job_id",     "invitation_id", "org_id",       "org_name",      "kind",
    "email",      "name",          "inviter_name", "inviter_email", "grant_owner",
    "expires_at", "sealed_code",   "locale",       "app_url",       "grant_manage_users",
    NULL};
/* A reminder's (schemas/mail/InvitationReminder.schema.json): no sealed_code, the invitation's job. */
static const char *const reminder_keys[] = {"job_id",      "invitation_id", "org_id",
                                            "org_name",    "kind",          "email",
                                            "name",        "inviter_name",  "inviter_email",
                                            "grant_owner", "expires_at",    "invitation_job_id",
                                            "locale",      "app_url",       "grant_manage_users",
                                            NULL};

/* The first key of obj not in allowed, or NULL. */
static const char *unknown_key(json_t *obj, const char *const *allowed) {
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        (void)v;
        const char *const *a = allowed;
        while (*a && strcmp(*a, key) != 0)
            a++;
        if (!*a)
            return key;
    }
    return NULL;
}

int locale_tag_valid(const char *s) {
    if (!s)
        return 0;
    size_t lang = strspn(s, "abcdefghijklmnopqrstuvwxyz");
    if (lang < 2 || lang > 3)
        return 0;
    const char *r = s + lang;
    if (*r == '\0')
        return 1;
    if (*r++ != '-')
        return 0;
    size_t up = strspn(r, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"), dig = strspn(r, "0123456789");
    return (up == 2 && r[2] == '\0') || (dig == 3 && r[3] == '\0');
}

int app_url_valid(const char *s) {
    if (!s)
        return 0;
    size_t n = strlen(s);
    const char *rest = strncmp(s, "https://", 8) == 0 ? s + 8 : strncmp(s, "http://", 7) == 0 ? s + 7 : NULL;
    if (!rest || !*rest || *rest == '/' || n > APP_URL_MAX || s[n - 1] == '/')
        return 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f || strchr("\"'<>\\`{}|^", *p))
            return 0;
    return 1;
}

/* The schema's sealed_code: 112 characters of the original base64 alphabet, or 80 (crypto_box_seal's form,
 * which jobs written before carry: secret.h). */
static int sealed_code_valid(const char *s) {
    size_t n = strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/");
    return (n == SEALED_CODE_B64_LEN || n == SEALED_CODE_ANON_B64_LEN) && s[n] == '\0';
}

/* The envelope's rules: the keys, type, id, specversion, source, datacontenttype, time, correlation and
 * actor ids. */
static int check_envelope(mail_job_t *job, json_t *data, char *errstr, size_t errstr_size) {
    job->correlationid = get_str(job->root, "correlationid");
    job->actorid = get_str(job->root, "actorid");
    const char *type = get_str(job->root, "type");
    if (!type || (strcmp(type, MAIL_JOB_TYPE) != 0 && strcmp(type, MAIL_REMINDER_TYPE) != 0)) {
        snprintf(errstr, errstr_size, "type is neither %s nor %s", MAIL_JOB_TYPE, MAIL_REMINDER_TYPE);
        return -1;
    }
    job->is_reminder = strcmp(type, MAIL_REMINDER_TYPE) == 0;
    int in_envelope = unknown_key(job->root, envelope_keys) != NULL;
    if (in_envelope || unknown_key(data, job->is_reminder ? reminder_keys : data_keys)) {
        snprintf(errstr, errstr_size, "a key the mail job schema does not allow (in %s)",
                 in_envelope ? "the envelope" : "data");
        return -1;
    }
    const char *id = get_str(job->root, "id");
    if (!id || strcmp(id, job->job_id) != 0) {
        snprintf(errstr, errstr_size, "id and data.job_id differ");
        return -1;
    }
    const char *spec = get_str(job->root, "specversion"), *source = get_str(job->root, "source"),
               *time_s = get_str(job->root, "time"), *ctype = get_str(job->root, "datacontenttype");
    const char *want_source = job->is_reminder ? MAIL_REMINDER_SOURCE : "/raikoo/command-worker";
    if (!spec || strcmp(spec, "1.0") != 0 || !source || strcmp(source, want_source) != 0 || !ctype ||
        strcmp(ctype, "application/json") != 0) {
        snprintf(errstr, errstr_size, "specversion must be 1.0, source %s, datacontenttype application/json",
                 want_source);
        return -1;
    }
    if (!event_time_valid(time_s)) {
        snprintf(errstr, errstr_size, "time is not an RFC 3339 time");
        return -1;
    }
    if (job->is_reminder) {
        /* No command caused it: no actor; a correlation id only when given. */
        if (json_object_get(job->root, "actorid") ||
            (json_object_get(job->root, "correlationid") && !uuid_valid(job->correlationid))) {
            snprintf(errstr, errstr_size, "a reminder has no actorid, and its correlationid is a UUID");
            return -1;
        }
    } else if (!uuid_valid(job->correlationid) ||
               (json_object_get(job->root, "actorid") && !uuid_valid(job->actorid))) {
        snprintf(errstr, errstr_size, "correlationid (required) and actorid (optional) must be UUIDs");
        return -1;
    }
    return 0;
}

/* The data's rules past the three ids: every field present with its type, then each field's form. */
static int check_data(mail_job_t *job, json_t *data, char *errstr, size_t errstr_size) {
    job->org_name = get_str(data, "org_name");
    job->kind = get_str(data, "kind");
    job->name = get_str(data, "name");
    job->inviter_name = get_str(data, "inviter_name");
    job->inviter_email = get_str(data, "inviter_email");
    job->expires_at = get_str(data, "expires_at");
    job->sealed_code = get_str(data, "sealed_code");
    job->invitation_job_id = get_str(data, "invitation_job_id");
    job->locale = get_str(data, "locale");
    job->app_url = get_str(data, "app_url");
    json_t *manage = json_object_get(data, "grant_manage_users");
    const char *email = get_str(data, "email");
    json_t *owner = json_object_get(data, "grant_owner");
    if (!job->org_name || !job->kind || !email || !job->expires_at ||
        !(job->is_reminder ? job->invitation_job_id : job->sealed_code) || !job->name || !job->inviter_name ||
        !job->inviter_email || !json_is_boolean(owner)) {
        snprintf(errstr, errstr_size,
                 "data lacks one of org_name, kind, email, name, inviter_name, inviter_email, "
                 "expires_at, %s (strings) or grant_owner (a boolean)",
                 job->is_reminder ? "invitation_job_id" : "sealed_code");
        return -1;
    }
    const char *why_not = NULL;
    char why[256];
    if (!*job->org_name)
        why_not = "data.org_name is empty";
    else if (json_object_get(data, "locale") && !locale_tag_valid(job->locale))
        why_not = "data.locale is not a language tag such as de or de-AT";
    else if (json_object_get(data, "app_url") && !app_url_valid(job->app_url))
        why_not = "data.app_url is not an http(s) address without a trailing slash";
    else if (manage && !json_is_boolean(manage))
        why_not = "data.grant_manage_users is not a boolean";
    else if (strcmp(job->kind, "new") != 0 && strcmp(job->kind, "existing") != 0)
        why_not = "data.kind must be new or existing";
    if (why_not) {
        snprintf(errstr, errstr_size, "%s", why_not);
        return -1;
    }
    job->is_new = strcmp(job->kind, "new") == 0;
    job->grant_owner = json_is_true(owner);
    job->grant_manage_users = json_is_true(manage);
    if (email_normalize(email, job->email, why, sizeof(why)) != 0) {
        snprintf(errstr, errstr_size, "data.email: %s", why);
        return -1;
    }
    if (strcmp(email, job->email) != 0)
        why_not = "data.email is not in normal form (trimmed, domain in lower case)";
    else if (rfc3339_parse(job->expires_at, &job->expires) != 0)
        why_not = "data.expires_at is not an RFC 3339 time";
    else if (!job->is_reminder && !sealed_code_valid(job->sealed_code))
        why_not = "data.sealed_code is not 112 (or, in the form written before, 80) characters of base64";
    else if (job->is_reminder && !uuid_valid(job->invitation_job_id))
        why_not = "data.invitation_job_id is not a UUID";
    if (why_not) {
        snprintf(errstr, errstr_size, "%s", why_not);
        return -1;
    }
    return 0;
}

int mail_job_parse(const char *buf, size_t len, mail_job_t *job, int *identified, char *errstr,
                   size_t errstr_size) {
    memset(job, 0, sizeof(*job));
    *identified = 0;
    json_error_t jerr;
    job->root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!job->root || !json_is_object(job->root)) {
        snprintf(errstr, errstr_size, "not a JSON object");
        return -1;
    }
    json_t *data = json_object_get(job->root, "data");
    if (!json_is_object(data)) {
        snprintf(errstr, errstr_size, "no data object");
        return -1;
    }
    job->job_id = get_str(data, "job_id");
    job->invitation_id = get_str(data, "invitation_id");
    job->org_id = get_str(data, "org_id");
    if (!uuid_valid(job->job_id) || !uuid_valid(job->invitation_id) || !uuid_valid(job->org_id)) {
        snprintf(errstr, errstr_size, "data.job_id, data.invitation_id and data.org_id must be UUIDs");
        return -1;
    }
    *identified = 1;
    /* From here on every rule of the JSON Schema holds here too (tests/unit/test_mail.c checks them, the
     * mail fuzz target feeds the parser anything): the job names its invitation, so a failure is recorded
     * against it. Keys are named in errstr, never their values (a value may be anything a producer wrote). */
    if (check_envelope(job, data, errstr, errstr_size) != 0)
        return -1;
    return check_data(job, data, errstr, errstr_size);
}

void mail_job_free(mail_job_t *job) {
    json_decref(job->root);
    memset(job, 0, sizeof(*job));
}
