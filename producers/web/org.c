/* raikoo-web: the organizations of the signed-in user and their Members tab. What a page offers follows the
 * permission table (docs/DESIGN.md): admins, owners and user managers invite; only owners and admins see the
 * owner toggle; the command worker still decides every action, and its message is shown. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "email.h"
#include "log.h"
#include "secret.h"
#include "text.h"
#include "web.h"

enum { ROLE_OUTSIDER = -1, ROLE_MEMBER = 0, ROLE_MANAGER = 1, ROLE_OWNER = 2, ROLE_ADMIN = 3 };

static const char SQL_ORGS[] =
    "SELECT o.id, o.name, coalesce(m.is_owner, false), coalesce(m.can_manage_users, false),"
    " m.user_id IS NOT NULL, (SELECT count(*) FROM org_members x WHERE x.org_id = o.id)"
    " FROM organizations o LEFT JOIN org_members m ON m.org_id = o.id AND m.user_id = $1::uuid"
    " WHERE $2::boolean OR m.user_id IS NOT NULL ORDER BY lower(o.name), o.id";
static const char SQL_ROLE[] =
    "SELECT o.name, m.user_id IS NOT NULL, coalesce(m.is_owner, false), coalesce(m.can_manage_users, false)"
    " FROM organizations o LEFT JOIN org_members m ON m.org_id = o.id AND m.user_id = $2::uuid"
    " WHERE o.id = $1::uuid";
static const char SQL_MEMBERS[] =
    "SELECT u.id, u.name, u.email, m.is_owner, m.can_manage_users,"
    " CASE WHEN u.enabled THEN 'active' WHEN u.activated_at IS NULL THEN 'pending activation' ELSE 'disabled'"
    " END FROM org_members m JOIN users u ON u.id = m.user_id WHERE m.org_id = $1::uuid"
    " ORDER BY m.created_at, lower(u.email)";
static const char SQL_INVITATIONS[] =
    "SELECT i.id, coalesce(u.name, ''), i.email, i.kind,"
    " CASE WHEN i.status = 'pending' AND i.expires_at <= now() THEN 'expired' ELSE i.status END,"
    " to_char(i.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI \"UTC\"'), i.grant_owner, i.mail_state,"
    " coalesce(i.mail_error, ''), i.grant_manage_users FROM invitations i LEFT JOIN users u ON u.id = "
    "i.user_id"
    " WHERE i.org_id = $1::uuid ORDER BY i.created_at DESC, i.id";

static void db_away(web_req_t *r) {
    page_message(r, 503, "Try again in a moment", "Raikoo's database cannot be reached right now.");
}

static int need_signin(web_req_t *r) {
    if (r->signed_in)
        return 0;
    signin_form(r, NULL, r->path, NULL);
    return 1;
}

void page_orgs(web_req_t *r) {
    if (need_signin(r))
        return;
    char err[512];
    PGconn *db = web_db(r->app);
    const char *p[2] = {r->user.id, r->user.is_admin ? "true" : "false"};
    PGresult *res = db ? db_exec(db, SQL_ORGS, 2, p, err, sizeof(err)) : NULL;
    if (!res) {
        db_away(r);
        return;
    }
    sb_t *b = &r->body;
    page_begin(r, "Organizations");
    int n = PQntuples(res);
    if (n == 0) {
        sb_add(b, "<p id=\"no-orgs\">You are not a member of any organization yet.</p>\n");
    } else {
        sb_add(b, "<ul id=\"orgs\">\n");
        for (int i = 0; i < n; i++) {
            const char *role = PQgetvalue(res, i, 2)[0] == 't'   ? "owner"
                               : PQgetvalue(res, i, 3)[0] == 't' ? "manages users"
                               : PQgetvalue(res, i, 4)[0] == 't' ? "member"
                                                                 : "admin (not a member)";
            sb_printf(b, "<li><a href=\"/orgs/%s/members\">", PQgetvalue(res, i, 0));
            html_esc(b, PQgetvalue(res, i, 1));
            sb_add(b, "</a> <span class=\"role\">(");
            html_esc(b, role);
            sb_printf(b, ", %s members)</span></li>\n", PQgetvalue(res, i, 5));
        }
        sb_add(b, "</ul>\n");
    }
    PQclear(res);
    page_end(r, 200);
}

/* The viewer's role in the organization; *name gets its name (owned). -2 when there is no such
 * organization, -3 when the database is away. */
static int role_in(web_req_t *r, const char *org_id, char **name) {
    char err[512];
    *name = NULL;
    if (!uuid_valid(org_id))
        return -2;
    PGconn *db = web_db(r->app);
    const char *p[2] = {org_id, r->user.id};
    PGresult *res = db ? db_exec(db, SQL_ROLE, 2, p, err, sizeof(err)) : NULL;
    if (!res)
        return -3;
    if (PQntuples(res) != 1) {
        PQclear(res);
        return -2;
    }
    *name = xstrdup(PQgetvalue(res, 0, 0));
    int member = PQgetvalue(res, 0, 1)[0] == 't', owner = PQgetvalue(res, 0, 2)[0] == 't',
        manager = PQgetvalue(res, 0, 3)[0] == 't';
    PQclear(res);
    return r->user.is_admin ? ROLE_ADMIN
           : !member        ? ROLE_OUTSIDER
           : owner          ? ROLE_OWNER
           : manager        ? ROLE_MANAGER
                            : ROLE_MEMBER;
}

/* Signs in, loads the role; renders the refusal and returns -1 unless the viewer's role is at least min. */
static int org_access(web_req_t *r, const char *org_id, int min, char **name) {
    *name = NULL;
    if (need_signin(r))
        return -1;
    int role = role_in(r, org_id, name);
    if (role == -3) {
        db_away(r);
        return -1;
    }
    if (role == -2) {
        page_message(r, 404, "No such organization",
                     "No organization has this id: go back to your organizations and pick one.");
        return -1;
    }
    if (role < min) {
        free(*name);
        *name = NULL;
        page_message(r, 403, "Not allowed",
                     role == ROLE_OUTSIDER
                         ? "You are not a member of this organization."
                         : "You do not have permission to do this in this organization: ask an organization "
                           "owner or a Raikoo admin.");
        return -1;
    }
    return role;
}

static void yes_no(sb_t *b, const char *v) {
    sb_add(b, v[0] == 't' ? "yes" : "no");
}

/* A small form with one button posting to /orgs/<org>/<what>. label is the button, aria the accessible name. */
static void button_form(web_req_t *r, const char *org_id, const char *what, const char *label,
                        const char *aria, const char *id) {
    sb_t *b = &r->body;
    sb_printf(b, "<form method=\"post\" action=\"/orgs/%s/%s\" class=\"inline\">", org_id, what);
    form_csrf(r, b);
    sb_printf(b, "<button type=\"submit\" id=\"%s\" aria-label=\"", id);
    html_esc(b, aria);
    sb_printf(b, "\">%s</button></form>\n", label);
}

static void members_table(web_req_t *r, const char *org_id, int role, PGresult *res) {
    sb_t *b = &r->body;
    sb_add(b,
           "<h2 id=\"members-heading\">Members</h2>\n<table id=\"members\" "
           "aria-labelledby=\"members-heading\">\n"
           "<thead><tr><th scope=\"col\">Name</th><th scope=\"col\">E-mail</th><th scope=\"col\">Owner</th>"
           "<th scope=\"col\">Manages users</th><th scope=\"col\">State</th>");
    if (role >= ROLE_MANAGER)
        sb_add(b, "<th scope=\"col\">Actions</th>");
    sb_add(b, "</tr></thead>\n<tbody>\n");
    for (int i = 0; i < PQntuples(res); i++) {
        const char *uid = PQgetvalue(res, i, 0), *name = PQgetvalue(res, i, 1),
                   *email = PQgetvalue(res, i, 2);
        int owner = PQgetvalue(res, i, 3)[0] == 't', manage = PQgetvalue(res, i, 4)[0] == 't';
        const char *who = *name ? name : email;
        sb_printf(b, "<tr id=\"member-%s\"><td>", uid);
        html_esc(b, name);
        sb_add(b, "</td><td class=\"email\">");
        html_esc(b, email);
        sb_add(b, "</td><td class=\"owner\">");
        yes_no(b, PQgetvalue(res, i, 3));
        sb_add(b, "</td><td class=\"manage\">");
        yes_no(b, PQgetvalue(res, i, 4));
        sb_add(b, "</td><td class=\"state\">");
        html_esc(b, PQgetvalue(res, i, 5));
        sb_add(b, "</td>");
        if (role >= ROLE_MANAGER) {
            sb_add(b, "<td>");
            /* Managers change only non-owners, and never owner capabilities. */
            if (role >= ROLE_OWNER || !owner) {
                sb_printf(b, "<form method=\"post\" action=\"/orgs/%s/members/%s/role\" class=\"inline\">",
                          org_id, uid);
                form_csrf(r, b);
                if (role >= ROLE_OWNER) {
                    sb_printf(
                        b,
                        "<input type=\"checkbox\" name=\"owner\" value=\"yes\" id=\"owner-%s\"%s> <label "
                        "for=\"owner-%s\">Owner<span class=\"sr\"> (",
                        uid, owner ? " checked" : "", uid);
                    html_esc(b, who);
                    sb_add(b, ")</span></label> ");
                }
                sb_printf(b,
                          "<input type=\"checkbox\" name=\"manage\" value=\"yes\" id=\"manage-%s\"%s> <label "
                          "for=\"manage-%s\">Manages users<span class=\"sr\"> (",
                          uid, manage ? " checked" : "", uid);
                html_esc(b, who);
                sb_printf(b,
                          ")</span></label> <button type=\"submit\" id=\"role-%s\">Save role<span "
                          "class=\"sr\"> of ",
                          uid);
                html_esc(b, who);
                sb_add(b, "</span></button></form>\n");
                char what[128], id[64], aria[512];
                snprintf(what, sizeof(what), "members/%s/remove", uid);
                snprintf(id, sizeof(id), "remove-member-%s", uid);
                text_printf(aria, sizeof(aria), "Remove %s from the organization", who);
                button_form(r, org_id, what, "Remove", aria, id);
            }
            sb_add(b, "</td>");
        }
        sb_add(b, "</tr>\n");
    }
    sb_add(b, "</tbody>\n</table>\n");
}

static void invitations_table(web_req_t *r, const char *org_id, PGresult *res) {
    sb_t *b = &r->body;
    sb_add(b, "<h2 id=\"invitations-heading\">Invitations</h2>\n");
    if (PQntuples(res) == 0) {
        sb_add(b, "<p id=\"no-invitations\">No invitations yet.</p>\n");
        return;
    }
    sb_add(b, "<table id=\"invitations\" aria-labelledby=\"invitations-heading\">\n<thead><tr>"
              "<th scope=\"col\">E-mail</th><th scope=\"col\">Name</th><th scope=\"col\">Kind</th>"
              "<th scope=\"col\">Status</th><th scope=\"col\">Expires</th><th scope=\"col\">Grants</th>"
              "<th scope=\"col\">E-mail delivery</th><th scope=\"col\">Delivery error</th>"
              "<th scope=\"col\">Actions</th></tr></thead>\n<tbody>\n");
    for (int i = 0; i < PQntuples(res); i++) {
        const char *iid = PQgetvalue(res, i, 0), *email = PQgetvalue(res, i, 2),
                   *status = PQgetvalue(res, i, 4);
        sb_printf(b, "<tr id=\"invitation-%s\"><td class=\"email\">", iid);
        html_esc(b, email);
        sb_add(b, "</td><td>");
        html_esc(b, PQgetvalue(res, i, 1));
        sb_add(b, "</td><td>");
        sb_add(b, strcmp(PQgetvalue(res, i, 3), "new") == 0 ? "new user" : "existing user");
        sb_add(b, "</td><td class=\"status\">");
        html_esc(b, status);
        sb_add(b, "</td><td>");
        html_esc(b, PQgetvalue(res, i, 5));
        int grant_owner = PQgetvalue(res, i, 6)[0] == 't', grant_manage = PQgetvalue(res, i, 9)[0] == 't';
        sb_add(b, "</td><td class=\"grants\">");
        sb_add(b, grant_owner && grant_manage ? "owner, user manager"
                  : grant_owner               ? "owner"
                  : grant_manage              ? "user manager"
                                              : "member");
        sb_add(b, "</td><td class=\"mail-state\">");
        html_esc(b, PQgetvalue(res, i, 7));
        sb_add(b, "</td><td class=\"mail-error\">");
        html_esc(b, PQgetvalue(res, i, 8));
        sb_add(b, "</td><td>");
        if (strcmp(status, "pending") == 0 || strcmp(status, "expired") == 0) {
            char what[128], id[64], aria[512];
            snprintf(what, sizeof(what), "invitations/%s/resend", iid);
            snprintf(id, sizeof(id), "resend-%s", iid);
            text_printf(aria, sizeof(aria), "Resend the invitation of %s", email);
            button_form(r, org_id, what, "Resend", aria, id);
            snprintf(what, sizeof(what), "invitations/%s/remove", iid);
            snprintf(id, sizeof(id), "remove-invitation-%s", iid);
            text_printf(aria, sizeof(aria), "Remove the invitation of %s", email);
            button_form(r, org_id, what, "Remove", aria, id);
        }
        sb_add(b, "</td></tr>\n");
    }
    sb_add(b, "</tbody>\n</table>\n");
}

void page_members(web_req_t *r, const char *org_id) {
    char *name, err[512];
    int role = org_access(r, org_id, ROLE_MEMBER, &name);
    if (role < 0)
        return;
    const char *p[1] = {org_id};
    PGresult *members = db_exec(r->app->db, SQL_MEMBERS, 1, p, err, sizeof(err));
    PGresult *invs =
        role >= ROLE_MANAGER && members ? db_exec(r->app->db, SQL_INVITATIONS, 1, p, err, sizeof(err)) : NULL;
    if (!members || (role >= ROLE_MANAGER && !invs)) {
        PQclear(members);
        free(name);
        db_away(r);
        return;
    }
    sb_t *b = &r->body;
    page_begin(r, name);
    sb_printf(b,
              "<nav aria-label=\"Organization\" class=\"tabs\"><a href=\"/orgs/%s/members\" "
              "aria-current=\"page\" id=\"members-tab\">Members</a></nav>\n",
              org_id);
    if (role >= ROLE_MANAGER)
        sb_printf(
            b,
            "<p class=\"actions\"><a class=\"button\" id=\"add-existing\" href=\"/orgs/%s/add-existing\">Add "
            "Existing User</a> <a class=\"button\" id=\"invite-new\" href=\"/orgs/%s/invite-new\">Invite "
            "New User</a></p>\n",
            org_id, org_id);
    members_table(r, org_id, role, members);
    if (invs)
        invitations_table(r, org_id, invs);
    PQclear(members);
    PQclear(invs);
    free(name);
    page_end(r, 200);
}

void page_invite_form(web_req_t *r, const char *org_id, int new_user) {
    char *name;
    int role = org_access(r, org_id, ROLE_MANAGER, &name);
    if (role < 0)
        return;
    sb_t *b = &r->body;
    page_begin(r, new_user ? "Invite New User" : "Add Existing User");
    sb_add(b, "<p>Organization: ");
    html_esc(b, name);
    sb_add(b, new_user ? ". The person gets an e-mail with a one-time password and a link to activate a new "
                         "account.</p>\n"
                       : ". The person, who already has a Raikoo account, gets an e-mail with a confirmation "
                         "code and joins when they confirm it.</p>\n");
    sb_printf(b, "<form method=\"post\" action=\"/orgs/%s/%s\">\n", org_id,
              new_user ? "invite-new" : "add-existing");
    form_csrf(r, b);
    sb_add(
        b,
        "<p><label for=\"email\">E-mail address</label>\n<input id=\"email\" name=\"email\" type=\"email\" "
        "required autofocus></p>\n");
    if (new_user)
        sb_add(b, "<p><label for=\"name\">Name</label>\n<input id=\"name\" name=\"name\"></p>\n");
    if (role >= ROLE_OWNER)
        sb_add(b, "<p><input type=\"checkbox\" id=\"owner\" name=\"owner\" value=\"yes\"> <label "
                  "for=\"owner\">Grant "
                  "owner capabilities</label></p>\n"
                  "<p><input type=\"checkbox\" id=\"manage\" name=\"manage\" value=\"yes\"> <label "
                  "for=\"manage\">Grant user-manager capabilities</label></p>\n");
    /* Blank fields leave the choice to the organization's policy, then to the configuration. */
    sb_add(b,
           "<p><label for=\"expires\">Valid for (days, 1 to 30; blank: the organization's default)</label>\n"
           "<input id=\"expires\" name=\"expires_in_days\" type=\"number\" min=\"1\" max=\"30\" "
           "step=\"1\"></p>\n"
           "<p><label for=\"locale\">Language of the e-mail</label>\n<select id=\"locale\" "
           "name=\"locale\"><option value=\"\">The organization's default</option>"
           "<option value=\"en\">English</option><option value=\"de\">Deutsch</option></select></p>\n");
    sb_printf(
        b,
        "<p><button type=\"submit\" id=\"send\">%s</button> <a href=\"/orgs/%s/members\">Cancel</a></p>\n"
        "</form>\n",
        new_user ? "Send invitation" : "Add user", org_id);
    free(name);
    page_end(r, 200);
}

/* The message of an accepted action. */
static void done_message(raikoo_command_type_t type, const char *email, char *out, size_t size) {
    switch (type) {
        case RAIKOO_CMD_INVITE_NEW_USER:
            text_printf(out, size,
                        "Invitation sent to %s: they activate their account from the e-mail's link.", email);
            break;
        case RAIKOO_CMD_ADD_EXISTING_USER:
            text_printf(out, size,
                        "Invitation sent to %s: they join when they confirm the code of the e-mail.", email);
            break;
        case RAIKOO_CMD_RESEND_INVITATION:
            text_printf(out, size, "The invitation was sent again, with a new code and a new expiry.");
            break;
        case RAIKOO_CMD_REMOVE_INVITATION: text_printf(out, size, "The invitation was removed."); break;
        case RAIKOO_CMD_REMOVE_MEMBER:
            text_printf(out, size, "The member was removed from the organization.");
            break;
        default: text_printf(out, size, "The role was changed.");
    }
}

static int checked(const web_req_t *r, const char *name) {
    const char *v = form_get(r, name);
    return v && strcmp(v, "yes") == 0;
}

/* The invitation options of the invite form into data: the roles an owner or admin may grant, the days it
 * stays valid and the e-mail's language (blank: the organization's defaults). 0, or -1 with msg set when the
 * days are not a whole number (range and language are the command worker's to judge, with its codes). */
static int invite_options(const web_req_t *r, int role, json_t *data, char *msg, size_t msg_size) {
    json_object_set_new(data, "owner", json_boolean(checked(r, "owner")));
    if (role >= ROLE_OWNER && checked(r, "manage"))
        json_object_set_new(data, "can_manage_users", json_true());
    const char *days = form_get(r, "expires_in_days"), *locale = form_get(r, "locale");
    if (days && *days) {
        char *end;
        errno = 0;
        long n = strtol(days, &end, 10);
        if (errno || *end || end == days || n < -1000000 || n > 1000000) {
            text_printf(msg, msg_size, "The number of days is not a whole number.");
            return -1;
        }
        json_object_set_new(data, "expires_in_days", json_integer(n));
    }
    if (locale && *locale) {
        json_t *v = json_string(locale); /* NULL when not UTF-8: refused here, not dropped */
        if (!v) {
            text_printf(msg, msg_size, "The language is not valid text.");
            return -1;
        }
        json_object_set_new(data, "locale", v);
    }
    return 0;
}

void action_org(web_req_t *r, const char *org_id, const char *rest) {
    if (!session_check_csrf(r))
        return;
    char *name;
    int role = org_access(r, org_id, ROLE_MANAGER, &name);
    if (role < 0)
        return;
    free(name);
    char back[128], msg[1024], id[RAIKOO_ID_SIZE] = "", verb[32] = "", email[EMAIL_MAX + 1] = "";
    snprintf(back, sizeof(back), "/orgs/%s/members", org_id);
    raikoo_command_type_t type = RAIKOO_CMD_TYPE_UNKNOWN;
    json_t *data = json_pack("{s:s}", "org_id", org_id);
    if (strcmp(rest, "invite-new") == 0 || strcmp(rest, "add-existing") == 0) {
        int new_user = rest[0] == 'i';
        const char *in = form_get(r, "email"), *nm = form_get(r, "name");
        char why[256];
        if (!in || email_normalize(in, email, why, sizeof(why)) != 0) {
            text_printf(msg, sizeof(msg), "The e-mail address is not valid: %s.", in ? why : "it is missing");
            web_flash(r, msg);
            web_redirect(r, back);
            json_decref(data);
            return;
        }
        type = new_user ? RAIKOO_CMD_INVITE_NEW_USER : RAIKOO_CMD_ADD_EXISTING_USER;
        json_object_set_new(data, "email", json_string(email));
        if (new_user && nm && *nm)
            json_object_set_new(data, "name", json_string(nm));
        if (invite_options(r, role, data, msg, sizeof(msg)) != 0) {
            web_flash(r, msg);
            web_redirect(r, back);
            json_decref(data);
            return;
        }
    } else if (sscanf(rest, "invitations/%36[0-9a-fA-F-]/%31s", id, verb) == 2 && uuid_valid(id) &&
               (strcmp(verb, "resend") == 0 || strcmp(verb, "remove") == 0)) {
        type = verb[2] == 's' ? RAIKOO_CMD_RESEND_INVITATION : RAIKOO_CMD_REMOVE_INVITATION;
        json_object_set_new(data, "invitation_id", json_string(id));
    } else if (sscanf(rest, "members/%36[0-9a-fA-F-]/%31s", id, verb) == 2 && uuid_valid(id) &&
               (strcmp(verb, "remove") == 0 || strcmp(verb, "role") == 0)) {
        json_object_set_new(data, "user_id", json_string(id));
        if (strcmp(verb, "remove") == 0) {
            type = RAIKOO_CMD_REMOVE_MEMBER;
        } else {
            type = RAIKOO_CMD_SET_MEMBER_ROLE;
            json_object_set_new(data, "owner", json_boolean(checked(r, "owner")));
            json_object_set_new(data, "can_manage_users", json_boolean(checked(r, "manage")));
        }
    } else {
        json_decref(data);
        page_message(r, 404, "Not found", "This page does not exist.");
        return;
    }
    raikoo_result_t res;
    if (web_command(r->app, type, r->user.id, data, &res, msg, sizeof(msg))) {
        if (res.accepted)
            done_message(type, email, msg, sizeof(msg));
        else
            text_printf(msg, sizeof(msg), "%s", res.message);
        raikoo_result_clear(&res);
    }
    web_flash(r, msg);
    web_redirect(r, back);
}
