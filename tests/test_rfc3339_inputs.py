"""Date-times from outside go through the one parser (lib/core/rfc3339.c, docs/HARDENING.md), which takes only
real instants: a command's time, `raikoo audit --since` and a listing's --after cursor. On the real stack."""
import base64
import json
import uuid

import pytest

from conftest import accepted, raikoo

IMPOSSIBLE = ["2026-02-31T00:00:00Z", "2025-02-29T12:00:00Z", "2100-02-29T12:00:00Z", "2026-04-31T08:00:00+02:00",
              "2016-12-31T12:00:60Z", "2026-01-31T24:00:00Z"]


def send_with_time(client, admin, when):
    ev = client.envelope("CreateOrganization", admin, {"name": "Time " + uuid.uuid4().hex[:6], "owner_user_id": admin})
    ev["time"] = when
    client.publish_raw(json.dumps(ev).encode(), key=admin.encode())
    return client.result(ev["id"])


@pytest.mark.parametrize("when", IMPOSSIBLE)
def test_a_command_whose_time_is_no_real_instant_is_rejected(client, admin, when):
    r = send_with_time(client, admin, when)
    assert r["status"] == "rejected" and r["code"] == "invalid_command", r
    assert "time" in r["message"], r


@pytest.mark.parametrize("when", ["2024-02-29T12:00:00Z", "2016-12-31T23:59:60Z", "2017-01-01T00:59:60+01:00",
                                  "2026-01-31T12:00:00.1234567-23:59"])
def test_a_command_at_a_real_instant_is_taken(client, admin, when):
    accepted(send_with_time(client, admin, when))


def test_audit_since_and_listing_cursors_refuse_impossible_times(client, admin):
    org = accepted(client.send("CreateOrganization", admin, {"name": "Since", "owner_user_id": admin}))["org_id"]
    for when in IMPOSSIBLE:
        # Before, the parser let it through and PostgreSQL refused it: exit 3, an infrastructure failure.
        p = raikoo("audit", "--org", org, "--since", when)
        assert p.returncode == 2 and "--since: not an RFC 3339 time" in p.stderr, (when, p.returncode, p.stderr)
        key = when.replace("Z", ".000000Z") if when.endswith("Z") else when
        cursor = base64.urlsafe_b64encode(f"created:{key}:{uuid.uuid4()}".encode()).decode().rstrip("=")
        p = raikoo("invitations", "--org", org, "--after", cursor)
        assert p.returncode == 2 and "--after: not a cursor" in p.stderr, (when, p.returncode, p.stderr)
    # Real instants in any form PostgreSQL would read otherwise (a seventh digit, an offset) are taken.
    p = raikoo("audit", "--org", org, "--since", "2000-01-01T00:30:00.1234567+01:00", "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["org_id"] == org, p.stderr
    cursor = base64.urlsafe_b64encode(f"created:2000-01-01T00:00:00.000000Z:{uuid.uuid4()}".encode()).decode()
    p = raikoo("invitations", "--org", org, "--after", cursor.rstrip("="), "--json")
    assert p.returncode == 0, p.stderr
