"""The producer library as an upstream app gets it: `make install PREFIX=...`, then the example app of
producers/examples/ built in a directory of its own with `pkg-config raikoo-producer` alone (no -I into the
repository), linked without libpq, libesmtp or OpenSSL, and run against the test stack."""
import os
import re
import shutil
import subprocess
import uuid

from conftest import ROOT, unique_email

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# Symbols of the libraries an upstream app must not need: libpq, libesmtp, OpenSSL.
FOREIGN = re.compile(r"^(PQ|pq|lo_|smtp_|SSL_|SSL$|TLS_|EVP_|OPENSSL_|ERR_|X509_|BIO_|CRYPTO_)")


def sh(args, cwd=None, env=None, timeout=600):
    p = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{args} exited {p.returncode}\nstdout: {p.stdout[-3000:]}\nstderr: {p.stderr[-3000:]}"
    return p.stdout


def installed(tmp_path):
    """Installs into tmp_path/prefix; returns (prefix, environment whose pkg-config sees it)."""
    prefix = tmp_path / "prefix"
    sh(["make", "-s", "install", f"PREFIX={prefix}"], cwd=ROOT)
    env = dict(os.environ)
    env["PKG_CONFIG_PATH"] = str(prefix / "lib" / "pkgconfig")
    for var in ("CPATH", "C_INCLUDE_PATH", "LIBRARY_PATH"):
        env.pop(var, None)
    return prefix, env


def build_example(tmp_path, env):
    """Copies producers/examples/ into a directory outside the repository and builds it there."""
    app = tmp_path / "app"
    shutil.copytree(os.path.join(ROOT, "producers", "examples"), app)
    out = sh(["make", "-B", "invite"], cwd=app, env=env)
    assert ROOT not in out, f"the example's build looked into the repository: {out}"
    return app / "invite"


def test_install_puts_header_archive_and_pkg_config_file_under_the_prefix(tmp_path):
    prefix, env = installed(tmp_path)
    assert (prefix / "include" / "raikoo" / "producer.h").is_file()
    assert (prefix / "lib" / "libraikoo-producer.a").is_file()
    pc = (prefix / "lib" / "pkgconfig" / "raikoo-producer.pc").read_text()
    assert re.search(r"^Requires: rdkafka jansson libsodium$", pc, re.M), pc
    assert f"prefix={prefix}" in pc
    cflags = sh(["pkg-config", "--cflags", "raikoo-producer"], env=env)
    assert f"-I{prefix}/include" in cflags
    libs = sh(["pkg-config", "--libs", "raikoo-producer"], env=env)
    assert "-lraikoo-producer" in libs and "-lrdkafka" in libs
    for lib in ("-lpq", "-lesmtp", "-lssl", "-lcrypto"):
        assert lib not in libs.split(), libs


def test_the_public_header_compiles_on_its_own(tmp_path):
    prefix, env = installed(tmp_path)
    header = (prefix / "include" / "raikoo" / "producer.h").read_text()
    includes = re.findall(r"^\s*#\s*include\s*([<\"][^>\"]+[>\"])", header, re.M)
    assert sorted(includes) == ["<jansson.h>", "<stddef.h>"], includes
    src = tmp_path / "only.c"
    src.write_text("#include <raikoo/producer.h>\n"
                   "int main(void) { return RAIKOO_CMD_TYPE_COUNT > 0 && RAIKOO_ID_SIZE == 37 ? 0 : 1; }\n")
    cflags = sh(["pkg-config", "--cflags", "raikoo-producer"], env=env).split()
    for std in ("-std=c11", "-std=c99"):
        sh(["cc", std, "-Wall", "-Wextra", "-Werror", "-pedantic", "-fsyntax-only", *cflags, str(src)],
           cwd=tmp_path, env=env)


def test_the_archive_needs_no_libpq_libesmtp_or_openssl(tmp_path):
    prefix, _ = installed(tmp_path)
    archive = str(prefix / "lib" / "libraikoo-producer.a")
    members = sh(["ar", "t", archive]).split()
    assert "producer.o" in members
    for internal in ("db.o", "smtp.o", "mail.o", "mailer.o", "domain.o", "worker.o", "conf.o", "kafka.o",
                     "producer_conf.o"):
        assert internal not in members, members
    undefined = {l.split()[-1] for l in sh(["nm", "-u", archive]).splitlines() if l.strip() and ":" not in l}
    assert undefined, "nm -u listed nothing: the check would not see a foreign symbol"
    foreign = sorted(s for s in undefined if FOREIGN.match(s))
    assert not foreign, f"the producer archive needs symbols of libpq, libesmtp or OpenSSL: {foreign}"


def test_the_example_app_built_with_pkg_config_alone_invites_a_user(tmp_path, workers, client, admin, db):
    _, env = installed(tmp_path)
    invite = build_example(tmp_path, env)

    needed = sh(["readelf", "-d", str(invite)])
    direct = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", needed)
    assert any(n.startswith("librdkafka") for n in direct), direct
    for lib in ("libpq", "libesmtp", "libssl", "libcrypto"):
        assert not any(n.startswith(lib) for n in direct), f"the example links {lib} itself: {direct}"
    ldd = sh(["ldd", str(invite)])
    assert "libpq" not in ldd and "libesmtp" not in ldd, ldd

    org = client.send("CreateOrganization", admin, {"name": "Artifact Org", "owner_user_id": admin})
    assert org["status"] == "accepted", org
    email = unique_email("artifact")
    run = subprocess.run([str(invite), "-b", os.environ["RAIKOO_KAFKA_BOOTSTRAP_SERVERS"], "-a", admin,
                          "-o", org["org_id"], "-e", email, "-n", "Ada Example"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, f"stdout: {run.stdout}\nstderr: {run.stderr}"
    m = re.fullmatch(rf"accepted InviteNewUser command_id=({UUID}) invitation_id=({UUID}) user_id=({UUID})\n",
                     run.stdout)
    assert m, run.stdout
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM invitations WHERE id = %s AND org_id = %s", (m.group(2), org["org_id"]))
        assert cur.fetchone()[0] == 1

    # A rejected command: an actor nobody knows. Printed with its stable code, exit status 1.
    run = subprocess.run([str(invite), "-a", str(uuid.uuid4()), "-o", org["org_id"], "-e", unique_email()],
                         capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 1, f"stdout: {run.stdout}\nstderr: {run.stderr}"
    assert re.fullmatch(r"rejected [a-z_]+: .+\n", run.stdout), run.stdout
