"""The build on a newcomer's machine: `make build` (like `make run` and `make test`) installs what is missing
first and reads pkg-config only afterwards, and a missing library is named with its Debian package.

A fake toolchain stands in for the real one: a pkg-config that knows the libraries only once a marker file
exists (the marker is made by the set-up step, as ops/setup installs the packages), and a cc/ar that record
their command lines. A Makefile that expands the link flags while it is read, before set-up, links without
the libraries and fails here."""
import os
import stat
import subprocess

from conftest import ROOT

FAKE_PKG_CONFIG = """#!/bin/sh
# Knows every library only once the marker exists.
[ -f "{marker}" ] || exit 1
for a in "$@"; do
  case $a in
    --libs) echo "-lraikoo_fake_marker"; exit 0 ;;
    --cflags) echo "-DRAIKOO_FAKE_MARKER"; exit 0 ;;
  esac
done
exit 0
"""

FAKE_CC = """#!/bin/sh
# Records the command line, makes the output file.
echo "$*" >> "{log}"
out=
while [ $# -gt 0 ]; do [ "$1" = -o ] && out=$2; shift; done
[ -n "$out" ] && : > "$out"
exit 0
"""

FAKE_AR = """#!/bin/sh
# ar rcs ARCHIVE FILES...
: > "$2"
"""


def fake_toolchain(tmp_path):
    tools = tmp_path / "tools"
    tools.mkdir()
    marker = tmp_path / "installed"
    log = tmp_path / "cc.log"
    for name, text in (("pkg-config", FAKE_PKG_CONFIG), ("cc", FAKE_CC), ("ar", FAKE_AR)):
        f = tools / name
        f.write_text(text.format(marker=marker, log=log))
        f.chmod(f.stat().st_mode | stat.S_IXUSR)
    env = dict(os.environ, PATH=f"{tools}:{os.environ['PATH']}")
    args = ["make", "-C", ROOT, f"OBJ={tmp_path}/obj", f"BIN={tmp_path}/bin", f"CC={tools}/cc",
            f"AR={tools}/ar"]
    return args, env, marker, log


def test_libraries_installed_by_setup_reach_every_link_line(tmp_path):
    args, env, marker, log = fake_toolchain(tmp_path)
    p = subprocess.run(args + [f"SETUP=touch {marker}", "build"], env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    links = [l for l in log.read_text().splitlines() if f" -o {tmp_path}/bin/" in " " + l]
    assert len(links) >= 5, links
    for l in links:
        assert "-lraikoo_fake_marker" in l, f"link line without the libraries set-up installed: {l}"
    compiles = [l for l in log.read_text().splitlines() if " -c " in f" {l} "]
    assert compiles and all("-DRAIKOO_FAKE_MARKER" in l for l in compiles)


def test_a_missing_library_is_named_with_its_package(tmp_path):
    args, env, marker, log = fake_toolchain(tmp_path)
    p = subprocess.run(args + ["SETUP=true", "build"], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode != 0
    assert "library jansson" in p.stderr and "libjansson-dev" in p.stderr, p.stderr
    assert "library libesmtp-1.0" in p.stderr and "libesmtp-dev" in p.stderr, p.stderr
    assert "ops/setup" in p.stderr
    assert "undefined reference" not in p.stdout + p.stderr
    assert not log.exists() or not log.read_text().strip(), "compiled although libraries were missing"
