"""raikoo invitations / members: --search, --status, --sort, --limit and keyset paging (--after), on the
test database; and the plan of a page for an organization with 100,000 invitations (an index range scan that
stops after the page: no timing asserted, the figures are in docs/AUDIT.md)."""
import json
import uuid

import pytest

from conftest import raikoo

BIG_ORG = "00000000-0000-4000-8000-000000100000"
BIG = 100000


def listing(*args):
    p = raikoo(*args, "--json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def all_pages(cmd, org, key, *args, limit=2):
    """Every row, page by page; checks each page's size and that the last one says so."""
    out, after, pages = [], [], 0
    while True:
        doc = listing(cmd, "--org", org, "--limit", str(limit), *args, *after)
        rows = doc[key]
        assert len(rows) <= limit
        out += rows
        pages += 1
        assert pages < 100
        if doc["next_cursor"] is None:
            return out
        assert len(rows) == limit
        after = ["--after", doc["next_cursor"]]


class Small:
    """An organization with invitations and members of known names, addresses, times and states."""

    def __init__(self, db):
        self.org = str(uuid.uuid4())
        cur = db.cursor()
        cur.execute("INSERT INTO organizations (id, name) VALUES (%s, 'Listing')", (self.org,))
        tag = uuid.uuid4().hex[:8]
        # (name, email, status, created minutes ago, expires in minutes, enabled, activated)
        people = [("Ann Lee", f"ann-{tag}@Example.org", "pending", 60, 600, True, True),
                  ("Bob Stone", f"BOB-{tag}@example.com", "accepted", 50, 100, True, True),
                  ("Carla Lee", f"carla-{tag}@example.com", "removed", 40, 300, False, False),
                  ("Dan 100%", f"dan-{tag}@example.net", "pending", 30, -5, False, False),
                  ("Eve", f"eve_x-{tag}@example.org", "pending", 20, 200, False, True)]
        self.inv, self.users = {}, {}
        for name, email, status, ago, exp, enabled, activated in people:
            uid, iid = str(uuid.uuid4()), str(uuid.uuid4())
            cur.execute("INSERT INTO users (id, email, username, name, enabled, is_admin, password_hash, activated_at)"
                        " VALUES (%s, %s, %s, %s, %s, false, %s, CASE WHEN %s THEN now() END)",
                        (uid, email, email, name, enabled, "$argon2id$v=19$m=65536,t=2,p=1$x$y" if enabled else None,
                         activated))
            cur.execute("INSERT INTO invitations (id, org_id, email, user_id, kind, status, code_hash, invited_by,"
                        " created_at, expires_at, decided_at)"
                        " VALUES (%s, %s, %s, %s, 'new', %s, %s, %s, now() - %s * interval '1 minute',"
                        " now() + %s * interval '1 minute', CASE WHEN %s <> 'pending' THEN now() END)",
                        (iid, self.org, email, uid, status, b"\0" * 32, uid, ago, exp, status))
            cur.execute("INSERT INTO org_members (org_id, user_id, is_owner, created_at)"
                        " VALUES (%s, %s, %s, now() - %s * interval '1 minute')", (self.org, uid, name == "Bob Stone", ago))
            self.inv[name], self.users[name] = iid, uid


@pytest.fixture(scope="module")
def small(db_url):
    import psycopg2
    conn = psycopg2.connect(db_url)
    conn.autocommit = True
    s = Small(conn)
    conn.close()
    return s


def names(rows):
    return [r["name"] for r in rows]


@pytest.mark.parametrize("sort, expected", [
    ("created", ["Ann Lee", "Bob Stone", "Carla Lee", "Dan 100%", "Eve"]),
    ("expires", ["Dan 100%", "Bob Stone", "Eve", "Carla Lee", "Ann Lee"]),
    ("email", ["Ann Lee", "Bob Stone", "Carla Lee", "Dan 100%", "Eve"]),
])
def test_invitations_pages_in_each_order_give_every_row_once(small, sort, expected):
    rows = all_pages("invitations", small.org, "invitations", "--sort", sort)
    assert names(rows) == expected
    assert names(listing("invitations", "--org", small.org, "--sort", sort)["invitations"]) == expected
    # Without --limit: every row, and no cursor.
    assert listing("invitations", "--org", small.org, "--sort", sort)["next_cursor"] is None


@pytest.mark.parametrize("args, expected", [
    (["--search", "LEE"], ["Ann Lee", "Carla Lee"]),
    (["--search", "EXAMPLE.ORG"], ["Ann Lee", "Eve"]),
    (["--search", "100%"], ["Dan 100%"]),
    (["--search", "_x-"], ["Eve"]),
    (["--search", "%"], ["Dan 100%"]),
    (["--status", "expired"], ["Dan 100%"]),
    (["--status", "pending"], ["Ann Lee", "Eve"]),
    (["--status", "pending", "--search", "eve"], ["Eve"]),
    (["--search", "nobody-at-all"], []),
])
def test_invitations_search_and_status(small, args, expected):
    assert names(all_pages("invitations", small.org, "invitations", *args, limit=1)) == expected


@pytest.mark.parametrize("args, expected", [
    ([], ["Ann Lee", "Bob Stone", "Carla Lee", "Dan 100%", "Eve"]),
    (["--sort", "email"], ["Ann Lee", "Bob Stone", "Carla Lee", "Dan 100%", "Eve"]),
    (["--status", "active"], ["Ann Lee", "Bob Stone"]),
    (["--status", "pending_activation"], ["Carla Lee", "Dan 100%"]),
    (["--status", "disabled"], ["Eve"]),
    (["--search", "stone"], ["Bob Stone"]),
])
def test_members_search_status_sort_and_pages(small, args, expected):
    assert names(all_pages("members", small.org, "members", *args)) == expected


def test_cursors_are_checked(small):
    doc = listing("invitations", "--org", small.org, "--limit", "1", "--sort", "email")
    cursor = doc["next_cursor"]
    p = raikoo("invitations", "--org", small.org, "--limit", "1", "--after", cursor)  # another --sort
    assert p.returncode == 2 and "--after: not a cursor" in p.stderr
    for bad in ("nonsense!", "Y3JlYXRlZDp4", ""):
        assert raikoo("invitations", "--org", small.org, "--after", bad).returncode == 2
    for args in (["--limit", "0"], ["--limit", "x"], ["--sort", "name"], ["--search", ""]):
        assert raikoo("invitations", "--org", small.org, *args).returncode == 2, args
    assert raikoo("members", "--org", small.org, "--sort", "expires").returncode == 2
    assert raikoo("members", "--org", small.org, "--status", "pending").returncode == 2
    # A table says where the next page starts, on standard error.
    p = raikoo("invitations", "--org", small.org, "--limit", "2")
    assert p.returncode == 0 and "--after " in p.stderr and len(p.stdout.splitlines()) == 3


@pytest.fixture(scope="module")
def big(db_url):
    """An organization with 100,000 invitations (made once; later runs find it)."""
    import psycopg2
    conn = psycopg2.connect(db_url)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("INSERT INTO organizations (id, name) VALUES (%s, 'Listing 100k') ON CONFLICT DO NOTHING", (BIG_ORG,))
    cur.execute("SELECT count(*) FROM invitations WHERE org_id = %s", (BIG_ORG,))
    if cur.fetchone()[0] < BIG:
        cur.execute("DELETE FROM invitations WHERE org_id = %s", (BIG_ORG,))
        cur.execute("INSERT INTO invitations (id, org_id, email, kind, status, code_hash, invited_by, created_at,"
                    " expires_at)"
                    " SELECT gen_random_uuid(), %s, 'person' || g || '@big' || (g %% 7) || '.test', 'new', 'pending',"
                    " %s, %s, now() - g * interval '1 second', now() + interval '7 days' + (g %% 1000) * interval '1 minute'"
                    " FROM generate_series(1, %s) AS g", (BIG_ORG, b"\0" * 32, BIG_ORG, BIG))
        cur.execute("ANALYZE invitations")
    conn.close()
    return BIG_ORG


def plan_nodes(plan):
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


@pytest.mark.parametrize("sort, index", [("created", "invitations_org_created_page"),
                                         ("expires", "invitations_org_expires_page"),
                                         ("email", "invitations_org_email_page")])
def test_a_page_of_100000_invitations_is_an_index_range_scan_that_stops_after_the_page(big, sort, index):
    first = listing("invitations", "--org", big, "--sort", sort, "--limit", "50")
    assert len(first["invitations"]) == 50 and first["next_cursor"]
    # Some pages on, then the plan of the next page, as the CLI runs it.
    after = first["next_cursor"]
    for _ in range(3):
        after = listing("invitations", "--org", big, "--sort", sort, "--limit", "50", "--after", after)["next_cursor"]
    for args in ([], ["--after", after]):
        p = raikoo("invitations", "--org", big, "--sort", sort, "--limit", "50", *args, "--explain")
        assert p.returncode == 0, p.stderr
        plan = json.loads(p.stdout)[0]["Plan"]
        nodes = list(plan_nodes(plan))
        scans = [n for n in nodes if n.get("Relation Name") == "invitations"]
        assert len(scans) == 1 and scans[0]["Node Type"] == "Index Scan", nodes
        assert scans[0]["Index Name"] == index
        assert "org_id" in scans[0]["Index Cond"]
        if args:
            assert ">" in scans[0]["Index Cond"], scans[0]  # the cursor is a bound of the range, not a filter
        assert not any(n["Node Type"] == "Sort" for n in nodes), "the rows come in index order"
        assert scans[0]["Actual Rows"] <= 51, "the scan stops after the page"
