"""The benchmark runs end to end at a tiny size, so that it cannot rot. No figure is asserted: timings
belong to `make bench`, not to tests."""
import glob
import json
import os
import subprocess

from conftest import BIN, ROOT


def test_bench_runs_at_a_tiny_size_and_writes_its_figures():
    out_dir = os.path.join(ROOT, "var", "bench", "results")
    before = set(glob.glob(os.path.join(out_dir, "bench-*.json")))
    # The bench brings up a stack of its own: none of the test stack's settings may leak into it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAIKOO_") or k.startswith("RAIKOO_BENCH_")}
    env["RAIKOO_BIN_DIR"] = BIN
    p = subprocess.run([os.path.join(ROOT, "ops", "bench"), "--commands", "300", "--orgs", "10",
                        "--rates", "50,200", "--rate-seconds", "1"],
                       capture_output=True, text=True, env=env, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    for phase in ("PostgreSQL floor", "Kafka floor", "pipeline throughput", "latency at 50", "latency at 200",
                  "mail throughput", "SMTP floor"):
        assert f"phase: {phase}" in p.stderr
    assert "ratio pipeline / PostgreSQL floor" in p.stdout
    new = set(glob.glob(os.path.join(out_dir, "bench-*.json"))) - before
    assert len(new) == 1
    doc = json.load(open(new.pop()))
    assert doc["sizes"]["commands"] == 300
    assert doc["pipeline"]["rejected"] == 0
    assert [l["offered_per_s"] for l in doc["latency"]] == [50, 200]
    assert all(l["commands"] == l["offered_per_s"] for l in doc["latency"])
    assert doc["mail"]["messages"] == 300 + 10 + 50 + 200
    for name in ("raikoo-command-worker", "raikoo-outbox-relay", "raikoo-mailer"):
        assert doc["workers"][name]["peak_rss_mib"] > 0
    for key in ("pipeline_to_postgresql", "pipeline_to_kafka", "mailer_to_smtp"):
        assert doc["ratios"][key] > 0
