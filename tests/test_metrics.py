"""Metrics and health endpoints of the workers (docs/OPERATIONS.md), scraped from real workers on the test
stack and read with an independent parser (Debian's python3-prometheus-client), never with our own code.

The session's workers (conftest.workers) serve metrics on a port the system picks (metrics.listen
127.0.0.1:0); each says which in its log. Workers started here do the same."""
import os
import re
import socket
import subprocess
import urllib.error
import urllib.request
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import BIN, Relay, Worker, accepted, rejected, unique_email, wait_until

PORT_LINE = re.compile(r"metrics on http://\S+ \(port (\d+)\)")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)


def metrics_port(worker):
    """The port the worker serves metrics on, from its start-up log line."""
    def found():
        m = PORT_LINE.search(worker.output())
        return int(m.group(1)) if m else None
    return wait_until(found, 60, f"{worker.name} logs its metrics port ({worker.log_path})")


def get(port, path, method="GET"):
    """(status, content type, body) of one request to the worker's HTTP endpoint."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def scrape(port):
    """{family name: family} of one /metrics answer, as prometheus_client parses it."""
    status, ctype, body = get(port, "/metrics")
    assert status == 200, body
    assert ctype.startswith("text/plain; version=0.0.4"), ctype
    return {f.name: f for f in text_string_to_metric_families(body)}


def value(families, family, sample=None, **labels):
    """Sum of the samples of family named sample (family's name by default) with these labels; 0 when none."""
    f = families.get(family)
    if f is None:
        return 0
    name = sample or (family + "_total" if f.type == "counter" else family)
    return sum(s.value for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def test_exposition_escaping_reads_back_with_prometheus_parser(tmp_path):
    """Label values with a quote, backslashes and a line feed, and a HELP with both, survive the
    round trip through the text format as prometheus_client reads it (the C side checks its exact text)."""
    out = tmp_path / "exposition.txt"
    p = subprocess.run([os.path.join(BIN, "raikoo-unit-tests"), "metrics: escaping"], capture_output=True,
                       text=True, env=dict(os.environ, RAIKOO_UNIT_METRICS_OUT=str(out)), timeout=60)
    assert p.returncode == 0 and "ok   metrics: escaping" in p.stdout, p.stdout + p.stderr
    fams = {f.name: f for f in text_string_to_metric_families(out.read_text())}
    f = fams["raikoo_unit_escape"]
    assert f.type == "counter"
    assert f.documentation == "help with \\ backslash\nand a second line"
    got = {s.labels["value"]: s.value for s in f.samples if s.name == "raikoo_unit_escape_total"}
    assert got == {'quote " backslash \\ newline \n end': 2.0, "plain": 1.0, "été": 1.0, "": 0.5}


def test_every_worker_serves_health_readiness_and_metrics(workers):
    assert set(workers) == {"raikoo-command-worker", "raikoo-outbox-relay", "raikoo-mailer",
                            "raikoo-expiry-worker", "raikoo-audit-worker"}
    for name, w in workers.items():
        port = metrics_port(w)
        wait_until(lambda: get(port, "/readyz")[0] == 200, 90, f"{name} /readyz 200")
        status, _, body = get(port, "/healthz")
        assert status == 200 and body.startswith("ok"), (name, status, body)
        assert get(port, "/nothing-here")[0] == 404
        assert get(port, "/metrics", method="DELETE")[0] == 405
        fams = scrape(port)
        assert fams["raikoo_service_up"].type == "gauge"
        assert value(fams, "raikoo_service_up", service="PostgreSQL") == 1, name
        if name != "raikoo-expiry-worker":
            assert value(fams, "raikoo_service_up", service="Kafka") == 1, name
    # Group consumers: what they hold, and the lag of each partition held (librdkafka statistics).
    for name, topic in (("raikoo-command-worker", "raikoo.commands"), ("raikoo-mailer", "raikoo.mail"),
                        ("raikoo-audit-worker", "raikoo.events")):
        port = metrics_port(workers[name])

        def lag_of_every_partition_held():
            f = scrape(port)
            lag = [s for s in f.get("raikoo_kafka_consumer_lag", f_none).samples if s.labels.get("topic") == topic]
            held = value(f, "raikoo_kafka_assigned_partitions")
            return f if held >= 1 and len(lag) == held else None
        # (The statistics come every second; a partition's offsets are known a moment after it is assigned.)
        fams = wait_until(lag_of_every_partition_held, 90, f"{name} reports the lag of every partition it holds")
        assert fams["raikoo_kafka_consumer_lag"].type == "gauge"
        assert fams["raikoo_kafka_assigned_partitions"].type == "gauge"
        lag = [s for s in fams["raikoo_kafka_consumer_lag"].samples if s.labels["topic"] == topic]
        assert all(s.value >= 0 and s.labels["partition"].isdigit() for s in lag), lag
    # Counters are exported from the start, at zero before they first move.
    starts = {"raikoo-expiry-worker": [("raikoo_invitations_expired", {})],
              "raikoo-mailer": [("raikoo_mail_deliveries", {"state": s}) for s in ("sent", "retrying", "failed",
                                                                                   "held")],
              "raikoo-outbox-relay": [("raikoo_outbox_published", {"topic": t})
                                      for t in ("raikoo.events", "raikoo.results", "raikoo.mail")],
              "raikoo-command-worker": [("raikoo_commands", {"type": "unknown", "outcome": "dead_letter",
                                                             "code": ""})]}
    for name, counters in starts.items():
        fams = scrape(metrics_port(workers[name]))
        for fam, labels in counters:
            assert fams[fam].type == "counter", (name, fam)
            assert [s for s in fams[fam].samples if s.name == fam + "_total" and s.labels == labels], \
                (name, fam, labels)


class _NoFamily:
    samples = ()


f_none = _NoFamily()


def test_counters_move_after_commands(client, admin, workers):
    cw, relay, mailer = (metrics_port(workers[n]) for n in
                         ("raikoo-command-worker", "raikoo-outbox-relay", "raikoo-mailer"))
    before = {p: scrape(p) for p in (cw, relay, mailer)}

    org = accepted(client.send("CreateOrganization", admin, {"name": "Metrics " + uuid.uuid4().hex[:6],
                                                            "owner_user_id": admin}))["org_id"]
    email = unique_email("metrics")
    accepted(client.send("InviteNewUser", admin, {"org_id": org, "email": email, "name": "Mia"}))
    rejected(client.send("InviteNewUser", admin, {"org_id": org, "email": email}), "invitation_pending")
    rejected(client.send("NoSuchCommand", admin, {"org_id": org}), "unknown_command_type")
    client.publish_raw(b"not a command at all", key=org.encode())

    b = before[cw]
    expect = [({"type": "CreateOrganization", "outcome": "accepted", "code": ""}, 1),
              ({"type": "InviteNewUser", "outcome": "accepted", "code": ""}, 1),
              ({"type": "InviteNewUser", "outcome": "rejected", "code": "invitation_pending"}, 1),
              ({"type": "unknown", "outcome": "rejected", "code": "unknown_command_type"}, 1),
              ({"type": "unknown", "outcome": "dead_letter", "code": ""}, 1)]

    def commands_counted():
        a = scrape(cw)
        ok = all(value(a, "raikoo_commands", **lbl) - value(b, "raikoo_commands", **lbl) >= n for lbl, n in expect)
        return a if ok else None
    a = wait_until(commands_counted, 90, "raikoo_commands_total counts the five commands")
    assert a["raikoo_commands"].type == "counter"
    for fam in ("raikoo_command_batch_size", "raikoo_command_batch_duration_seconds"):
        assert a[fam].type == "histogram"
        count = value(a, fam, fam + "_count")
        assert count - value(b, fam, fam + "_count") >= 1, fam
        assert value(a, fam, fam + "_bucket", le="+Inf") == count
        buckets = [s.value for s in a[fam].samples if s.name == fam + "_bucket"]
        assert buckets == sorted(buckets), f"{fam}: buckets are cumulative"
    assert value(a, "raikoo_command_batch_size", "raikoo_command_batch_size_sum") - \
        value(b, "raikoo_command_batch_size", "raikoo_command_batch_size_sum") >= 5

    # The relay published the results, events and the mail job; its backlog gauges are there.
    def relay_published():
        a = scrape(relay)
        moved = all(value(a, "raikoo_outbox_published", topic=t) > value(before[relay], "raikoo_outbox_published",
                                                                            topic=t)
                    for t in ("raikoo.results", "raikoo.events", "raikoo.mail"))
        return a if moved else None
    a = wait_until(relay_published, 90, "raikoo_outbox_published_total moves for results, events and mail")
    assert a["raikoo_outbox_published"].type == "counter"
    assert a["raikoo_outbox_backlog_rows"].type == "gauge" and value(a, "raikoo_outbox_backlog_rows") >= 0
    assert a["raikoo_outbox_oldest_age_seconds"].type == "gauge"

    # The mailer sent the invitation over SMTP.
    def mail_sent():
        a = scrape(mailer)
        fam = "raikoo_smtp_session_duration_seconds"
        moved = value(a, "raikoo_mail_deliveries", state="sent") > \
            value(before[mailer], "raikoo_mail_deliveries", state="sent") and \
            value(a, fam, fam + "_count", result="ok") > value(before[mailer], fam, fam + "_count", result="ok")
        return a if moved else None
    a = wait_until(mail_sent, 90, "raikoo_mail_deliveries_total{state=sent} and the SMTP session histogram move")
    assert a["raikoo_mail_deliveries"].type == "counter"
    assert a["raikoo_smtp_session_duration_seconds"].type == "histogram"

    # Bounded labels: no address, no id in any label of any worker.
    for name, w in workers.items():
        for fam in scrape(metrics_port(w)).values():
            for s in fam.samples:
                for k, v in s.labels.items():
                    assert "@" not in v and not UUID.search(v), (name, s.name, k, v)


def test_readiness_waits_for_postgresql_and_partitions(workers):
    """A command worker started while PostgreSQL cannot be reached is alive (200) but not ready (503);
    once PostgreSQL answers and the group gave it partitions it is ready, and it counts the reconnect."""
    held = Relay(int(os.environ["RAIKOO_PG_PORT"]))  # refuses connections until started
    url = f"host=127.0.0.1 port={held.port} dbname=raikoo user=raikoo connect_timeout=5"
    w = Worker("raikoo-command-worker", env={"RAIKOO_METRICS_LISTEN": "127.0.0.1:0", "RAIKOO_DB_URL": url})
    try:
        port = metrics_port(w)
        wait_until(lambda: "PostgreSQL unavailable" in w.output(), 90, "the worker says it waits for PostgreSQL")
        status, _, body = get(port, "/readyz")
        assert status == 503 and "PostgreSQL" in body, (status, body)
        assert get(port, "/healthz")[0] == 200, "waiting for a service is alive, not stalled"
        fams = scrape(port)
        assert value(fams, "raikoo_service_up", service="PostgreSQL") == 0
        # Exported from the start, at zero: what the worker needs and what it holds.
        assert [s.value for s in fams["raikoo_reconnects"].samples
                if s.name == "raikoo_reconnects_total" and s.labels == {"service": "Kafka"}] == [0]
        assert [s.value for s in fams["raikoo_kafka_assigned_partitions"].samples] == [0]
        held.start()
        wait_until(lambda: get(port, "/readyz")[0] == 200, 90, "/readyz 200 once PostgreSQL answers")
        fams = scrape(port)
        assert value(fams, "raikoo_service_up", service="PostgreSQL") == 1
        assert value(fams, "raikoo_kafka_assigned_partitions") >= 1
        assert value(fams, "raikoo_reconnects", service="PostgreSQL") >= 1
    finally:
        rc = w.stop()
        held.close()
    assert rc == 0, w.output()[-3000:]


def test_metrics_listen_mistakes_stop_the_worker_with_status_2():
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        for listen, says in (("not-an-address", "is not HOST:PORT"),
                             (f"127.0.0.1:{taken.getsockname()[1]}", "cannot listen")):
            p = subprocess.run([os.path.join(BIN, "raikoo-expiry-worker")], capture_output=True, text=True,
                               env=dict(os.environ, RAIKOO_METRICS_LISTEN=listen), timeout=60)
            assert p.returncode == 2, (listen, p.returncode, p.stdout, p.stderr)
            assert "metrics.listen" in p.stderr + p.stdout and says in p.stderr + p.stdout, p.stderr
    finally:
        taken.close()


@pytest.mark.parametrize("path", ["/metrics", "/healthz", "/readyz"])
def test_endpoints_answer_head(workers, path):
    port = metrics_port(workers["raikoo-outbox-relay"])
    assert get(port, path, method="HEAD")[0] == 200
