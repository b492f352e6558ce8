"""The repository's own documentation stays true to the code, without a stack:

1. every result code the C sources can return is documented in docs/RESULT_CODES.md, and every code
   documented there exists in the code (and in the JSON Schema's list, for the worker's codes);
2. every relative link of README.md and docs/*.md points at a file (and heading) that exists;
3. no file of the repository refers to a place outside it;
4. the producer library's public header states the consumer defaults the library sets.
"""
import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CODES_DOC = os.path.join(ROOT, "docs", "RESULT_CODES.md")

# ---- 1. result codes ----

# Where a result code is written in C. A code is a snake_case string literal ("last_owner"), found:
#  - as the argument given to a parameter declared `const char *code` (or `*result_code`, ...: any name
#    ending in "code"; parameters that take one-time codes are never given snake_case literals) (domain_reject(res, "last_owner",
#    ...), infra_fail(cmd, id, "timeout", ...), read_fail(..., "permission_denied", ...)), including the
#    arms of a conditional there (cond ? "timeout" : "unreachable");
#  - as the first member of a {"code", "Message ..."} table row (lib/svc/domain.c's messages);
#  - as the value given to a "code" or "result_code" key in a call that builds JSON (json_pack(..., "code",
#    code ? code : "unavailable"), json_object_set_new(o, "code", json_string("..."))).
SNAKE = r'[a-z][a-z0-9]*(?:_[a-z0-9]+)*'
PARAM_LIST = re.compile(r'\b(\w+)\s*\(([^;{}()]*\bconst\s+char\s*\*\s*\w*code\b[^;{}()]*)\)')
JSON_CALL = re.compile(r'\b(json_pack\w*|json_object_set\w*)\s*\(')
TABLE_ROW = re.compile(r'\{\s*"(' + SNAKE + r')"\s*,\s*"[A-Z]')
CODE_VALUE = re.compile(r'"(?:result_)?code"\s*,\s*(?:json_string\s*\(\s*)?(?:[^,;"]*?\?[^,;"]*?:\s*)?"(' + SNAKE + r')"')
LITERAL = re.compile(r'"((?:[^"\\\n]|\\.)*)"')
FULL_SNAKE = re.compile(r'^' + SNAKE + r'$')


def _strip_comments(src):
    """C source without comments (string literals kept, so that "//" or "/*" inside them survive); line
    numbers stay."""
    return re.sub(r'"(?:[^"\\\n]|\\.)*"|/\*.*?\*/|//[^\n]*',
                  lambda m: m.group(0) if m.group(0).startswith('"') else "\n" * m.group(0).count("\n"),
                  src, flags=re.S)


def _call_arguments(src, open_paren):
    """[(offset, text)] of the top-level arguments of the call whose parenthesis is at open_paren."""
    depth, i, start, args = 0, open_paren, open_paren + 1, []
    while i < len(src):
        c = src[i]
        if c == '"':
            m = LITERAL.match(src, i)
            i = m.end() if m else i + 1
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                args.append((start, src[start:i]))
                return args
        elif c == "," and depth == 1:
            args.append((start, src[start:i]))
            start = i + 1
        i += 1
    return args


def code_parameters(src):
    """{function: index} of the functions of a C text that take a result code as `const char *code`."""
    out = {}
    for m in PARAM_LIST.finditer(_strip_comments(src)):
        params = [p.strip() for p in m.group(2).split(",")]
        for i, p in enumerate(params):
            if re.fullmatch(r'const\s+char\s*\*\s*\w*code', p):
                out[m.group(1)] = i
    return out


def extract_codes(src, code_params):
    """The result codes written in one C source text: {code: [line numbers]}. code_params: see
    code_parameters(), over every source (a function is often declared in a header, called elsewhere)."""
    src = _strip_comments(src)
    found = {}

    def add(code, pos):
        found.setdefault(code, []).append(src.count("\n", 0, pos) + 1)

    def literals_of(offset, text):
        """The snake_case literals an argument evaluates to: itself, or the arms of a conditional."""
        t = text.strip()
        lead = len(text) - len(text.lstrip())
        if LITERAL.fullmatch(t):
            return [(offset + lead, t[1:-1])]
        m = re.fullmatch(r'[^?"]*\?\s*("(?:[^"\\]|\\.)*")\s*:\s*("(?:[^"\\]|\\.)*")', t, flags=re.S)
        if m:
            return [(offset + lead + m.start(1), m.group(1)[1:-1]), (offset + lead + m.start(2), m.group(2)[1:-1])]
        m = re.fullmatch(r'[^?"]*\?[^:"]*:\s*("(?:[^"\\]|\\.)*")', t, flags=re.S)
        if m:
            return [(offset + lead + m.start(1), m.group(1)[1:-1])]
        return []

    for name, index in code_params.items():
        for m in re.finditer(r'\b' + re.escape(name) + r'\s*\(', src):
            args = _call_arguments(src, m.end() - 1)
            if index < len(args):
                for pos, lit in literals_of(*args[index]):
                    if FULL_SNAKE.match(lit):
                        add(lit, pos)
    for m in JSON_CALL.finditer(src):
        args = _call_arguments(src, m.end() - 1)
        if args:
            for v in CODE_VALUE.finditer(src, args[0][0], args[-1][0] + len(args[-1][1])):
                add(v.group(1), v.start(1))
    for m in TABLE_ROW.finditer(src):
        add(m.group(1), m.start(1))
    return found


def c_sources(exts=(".c",)):
    out = []
    for top in ("lib", "producers", "workers"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
            out += [os.path.join(dirpath, f) for f in files if f.endswith(exts)]
    return sorted(out)


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def codes_in_code():
    """{code: ["lib/svc/domain.c:123", ...]} over every C source of lib/, producers/ and workers/ (any depth)."""
    params = {}
    for path in c_sources((".c", ".h")):
        params.update(code_parameters(_read(path)))
    where = {}
    for path in c_sources():
        for code, lines in extract_codes(_read(path), params).items():
            rel = os.path.relpath(path, ROOT)
            where.setdefault(code, []).extend(f"{rel}:{n}" for n in lines)
    return where


def codes_documented():
    """The codes of docs/RESULT_CODES.md: each has a heading of its own, ### `code`."""
    with open(CODES_DOC, encoding="utf-8") as f:
        text = f.read()
    return re.findall(r'^###\s+`(' + SNAKE + r')`\s*$', text, flags=re.M)


def schema_result_codes():
    import json
    with open(os.path.join(ROOT, "schemas", "cloudevent.schema.json"), encoding="utf-8") as f:
        return json.load(f)["$defs"]["result_code"]["enum"]


def test_the_code_extractor_finds_codes_however_they_are_written():
    """A new code written any of the ways the sources write codes is found, so that it cannot go
    undocumented; literals that are not codes are not taken for codes."""
    sample = r'''
        void domain_reject(domain_result_t *res, const char *code, const char *detail);
        static int infra_fail(const char *cmd, const char *command_id, const char *code, const char *why, int j);
        static void reject2(result_t *r, const char *result_code);
        int code_hash(const secret_keys_t *keys, const char *code, unsigned char out[32]);
        static int read_fail(const char *cmd, int as_json, const char *org, int rc, const char *code, const char *fmt, ...)
            __attribute__((format(printf, 6, 7)));
        static const code_message_t messages[] = {
            {"brand_new_code", "Something the user should do"},
            {NULL, NULL},
        };
        domain_reject(res, "second_code", NULL);
        domain_reject(&res, st == X ? "third_code" : "fourth_code", why);
        domain_reject(res, "last_owner", "members who manage users can remove non-owners only");
        rc = infra_fail(cmd, id, prc == T ? "fifth_code" : "sixth_code", err, as_json);
        rc = read_fail(cmd, as_json, org, EXIT_REJECTED,
                       "seventh_code", "no organization with id %s", org);
        json_pack("{s:s, s:s}", "status", "error", "code", code ? code : "eighth_code");
        json_pack("{s:s}", "result_code", "ninth_code");
        json_object_set_new(o, "code", json_string("tenth_code"));
        static const char *variables[] = {"email", "code", "code_label", NULL};
        /* domain_reject(res, "commented_out", NULL); */
        usage_fail(cmd, "option %s needs a value", argv[optind - 1]);
        const char *names[3] = {"invitation", "user", "org"};
        {"OWNER", "grant_owner", 'b'},
        log_info(NULL, "assigned %d partition(s)", n);
        domain_reject(res, "permission_denied", strcmp(inv.kind, "new") == 0 ? "a" : "b");
        rc = read_fail(cmd, as_json, org, EXIT_REJECTED, "permission_denied", "%s", x ? "invitations" : "members");
        code_hash(x->keys, code, h);
        reject2(r, "eleventh_code");
    '''
    params = code_parameters(sample)
    assert params == {"domain_reject": 1, "infra_fail": 2, "read_fail": 4, "reject2": 1, "code_hash": 1}, params
    got = extract_codes(sample, params)
    assert set(got) == {"brand_new_code", "second_code", "third_code", "fourth_code", "last_owner", "permission_denied",
                        "fifth_code", "sixth_code", "seventh_code", "eighth_code", "ninth_code", "tenth_code", "eleventh_code"}, sorted(got)
    assert got["seventh_code"] == [17], got["seventh_code"]


def test_every_result_code_in_the_code_is_documented_and_every_documented_code_exists():
    in_code = codes_in_code()
    documented = codes_documented()
    assert in_code, "no result code found in the C sources: the extractor no longer matches how codes are written"
    problems = []
    dupes = sorted({c for c in documented if documented.count(c) > 1})
    if dupes:
        problems.append(f"docs/RESULT_CODES.md documents these codes twice: {dupes}")
    missing = sorted(set(in_code) - set(documented))
    if missing:
        problems.append(
            "result codes the code can return but docs/RESULT_CODES.md does not document (add a '### `code`' "
            "section for each: which commands, when, what the user should do): " + ", ".join(missing) + "\n" +
            "\n".join(f"  {c}  (at {', '.join(in_code[c][:3])})" for c in missing))
    stale = sorted(set(documented) - set(in_code))
    if stale:
        problems.append(f"docs/RESULT_CODES.md documents codes that no C source returns: {', '.join(stale)}")
    assert not problems, "\n".join(problems)


def test_every_result_code_of_the_json_schema_is_documented():
    documented = set(codes_documented())
    missing = [c for c in schema_result_codes() if c not in documented]
    assert not missing, (f"codes of schemas/cloudevent.schema.json ($defs.result_code) that docs/RESULT_CODES.md "
                         f"does not document: {missing}")


# ---- 2. links ----

def markdown_files():
    docs = os.path.join(ROOT, "docs")
    return [os.path.join(ROOT, "README.md")] + sorted(
        os.path.join(docs, f) for f in os.listdir(docs) if f.endswith(".md"))


def _anchor(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    h = heading.strip().lower()
    h = re.sub(r'[^\w\- ]', '', h)
    return h.replace(" ", "-")


def _anchors(path):
    with open(path, encoding="utf-8") as f:
        text = re.sub(r'^```.*?^```', '', f.read(), flags=re.M | re.S)
    return {_anchor(m) for m in re.findall(r'^#{1,6}\s+(.*?)\s*#*\s*$', text, flags=re.M)}


def relative_links(path):
    """(line, target) of every Markdown link or image of path that is not a URL, outside code blocks."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    out, in_code = [], False
    for n, line in enumerate(text.split("\n"), 1):
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        line = re.sub(r'`[^`]*`', '', line)
        for m in re.finditer(r'!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)', line):
            target = m.group(1)
            if not re.match(r'^[a-z][a-z0-9+.-]*:', target, flags=re.I):
                out.append((n, target))
        for m in re.finditer(r'^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)', line):
            if not re.match(r'^[a-z][a-z0-9+.-]*:', m.group(1), flags=re.I):
                out.append((n, m.group(1)))
    return out


def test_the_documentation_pages_exist():
    for name in ("README.md", "DESIGN.md", "RESULT_CODES.md", "TROUBLESHOOTING.md"):
        assert os.path.isfile(os.path.join(ROOT, "docs", name)), f"docs/{name} is missing"


def test_every_relative_link_points_at_a_file_and_heading_that_exist():
    broken = []
    for path in markdown_files():
        rel = os.path.relpath(path, ROOT)
        for line, target in relative_links(path):
            file_part, _, anchor = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
            if not dest.startswith(ROOT + os.sep) and dest != ROOT:
                broken.append(f"{rel}:{line}: {target} (outside the repository)")
            elif not os.path.exists(dest):
                broken.append(f"{rel}:{line}: {target} (no such file)")
            elif anchor and dest.endswith(".md") and anchor.lower() not in _anchors(dest):
                broken.append(f"{rel}:{line}: {target} (no heading #{anchor} in {os.path.relpath(dest, ROOT)})")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_link_checker_sees_a_broken_link():
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".md", dir=os.path.join(ROOT, "docs"), delete=False) as f:
        f.write("# Title\n\nSee [x](no-such-file.md), [y](RESULT_CODES.md), [z](https://example.com/a),\n"
                "`[not a link](nowhere.md)` and [self](#title).\n\n```\n[in code](nowhere.md)\n```\n")
    try:
        assert relative_links(f.name) == [(3, "no-such-file.md"), (3, "RESULT_CODES.md"), (4, "#title")]
        assert "title" in _anchors(f.name)
    finally:
        os.unlink(f.name)


# ---- 3. nothing refers outside the repository ----

# Spelled in two halves so that this file does not match itself.
# The sibling folder of the checkout anywhere; the machine's work root only as an absolute path.
OUTSIDE = [re.compile(re.escape("../" + "shared")), re.compile(r"(?<![\w.$}/-])" + re.escape("/" + "work/"))]
SKIP_DIRS = {".git", "var", "build", "build-asan", "bin", "bin-asan", "build-fuzz", "bin-fuzz", "__pycache__", ".pytest_cache"}


def repository_files():
    """The files of the repository: tracked and untracked-but-not-ignored ones when git can tell, else every
    file outside the build and data folders."""
    try:
        out = subprocess.run(["git", "-C", ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             capture_output=True, check=True).stdout.decode()
        files = [f for f in out.split("\0") if f]
        if files:
            return [f for f in files if os.path.isfile(os.path.join(ROOT, f))]
    except (OSError, subprocess.CalledProcessError):
        pass
    files = []
    for dirpath, dirs, names in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        files += [os.path.relpath(os.path.join(dirpath, n), ROOT) for n in names]
    return files


def test_no_file_refers_to_a_place_outside_the_repository():
    files = repository_files()
    assert "README.md" in files and "tests/test_docs.py" in files
    hits = []
    for rel in files:
        with open(os.path.join(ROOT, rel), "rb") as f:
            data = f.read()
        if b"\0" in data[:8192]:
            continue  # binary
        for n, line in enumerate(data.decode("utf-8", "replace").split("\n"), 1):
            for s in OUTSIDE:
                if s.search(line):
                    hits.append(f"{rel}:{n}: {line.strip()[:120]}")
    assert not hits, "files that refer to places outside the repository:\n" + "\n".join(hits)


def test_the_producer_header_states_the_consumer_defaults_the_library_sets():
    """producers/include/raikoo/producer.h, installed for upstream apps, cannot include the internal header
    the library takes its result consumer's defaults from (lib/core/kafka_defaults.h): it states them in
    words, and those words must be the numbers the library sets."""
    with open(os.path.join(ROOT, "lib", "core", "kafka_defaults.h")) as f:
        defaults = dict(re.findall(r'#define (KAFKA_DEFAULT_\w+) "(\d+)"', f.read()))
    assert set(defaults) == {"KAFKA_DEFAULT_QUEUED_KBYTES", "KAFKA_DEFAULT_QUEUE_BACKOFF_MS"}, defaults
    with open(os.path.join(ROOT, "producers", "include", "raikoo", "producer.h")) as f:
        header = re.sub(r"\s*\n\s*\*\s*", " ", f.read())  # comment lines joined
    assert f"kafka.queued.max.messages.kbytes, {defaults['KAFKA_DEFAULT_QUEUED_KBYTES']} by default" in header
    assert f"kafka.fetch.queue.backoff.ms, {defaults['KAFKA_DEFAULT_QUEUE_BACKOFF_MS']} by default" in header
