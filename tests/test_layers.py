"""lib/ is in layers, lowest first: lib/core (infrastructure), lib/msg (message contracts), lib/svc (the
services). A file of a layer includes only headers of its own layer or of a lower one; the producer library
(producers/) and the programs (workers/, tests/) stand above lib/ and may include any of it. Needs no stack."""
import os
import re

from conftest import ROOT

LAYERS = ["core", "msg", "svc"]
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def lib_headers():
    """{header file name: layer} over every layer of lib/."""
    where = {}
    for layer in LAYERS:
        for name in os.listdir(os.path.join(ROOT, "lib", layer)):
            if name.endswith(".h"):
                assert name not in where, f"{name} is in both lib/{where[name]} and lib/{layer}: names must be unique"
                where[name] = layer
    return where


def layer_violations(sources, headers):
    """[(file, header, its layer)] where a file of sources ({path: (layer, text)}) includes a header of a
    higher layer."""
    bad = []
    for path, (layer, text) in sorted(sources.items()):
        for inc in INCLUDE.findall(text):
            target = headers.get(os.path.basename(inc))
            if target is not None and LAYERS.index(target) > LAYERS.index(layer):
                bad.append((path, inc, target))
    return bad


def lib_sources():
    out = {}
    for layer in LAYERS:
        folder = os.path.join(ROOT, "lib", layer)
        for name in sorted(os.listdir(folder)):
            if name.endswith((".c", ".h")):
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    out[f"lib/{layer}/{name}"] = (layer, f.read())
    return out


def test_lib_holds_only_the_layer_folders_and_the_templates():
    """No C file sits in lib/ outside a layer, so no file escapes the rule below."""
    loose = [n for n in os.listdir(os.path.join(ROOT, "lib")) if n.endswith((".c", ".h"))]
    assert loose == [], f"move these into lib/core, lib/msg or lib/svc: {loose}"
    for layer in LAYERS:
        assert any(n.endswith(".c") for n in os.listdir(os.path.join(ROOT, "lib", layer))), layer


def test_no_layer_includes_a_higher_one():
    bad = layer_violations(lib_sources(), lib_headers())
    assert bad == [], "a lower layer includes a higher one (move the code down or the include up): " + \
        "; ".join(f"{p} includes {h} (lib/{layer})" for p, h, layer in bad)


def test_the_check_finds_an_include_upwards():
    """The check is not vacuous: a core file that includes a service header is reported, and includes
    within a layer or downwards are not."""
    headers = {"conf.h": "core", "cmd.h": "msg", "domain.h": "svc"}
    sources = {
        "lib/core/x.c": ("core", '#include "conf.h"\n#include "domain.h"\n'),
        "lib/msg/y.c": ("msg", '#include "conf.h"\n  #  include "cmd.h"\n#include <stdio.h>\n'),
        "lib/svc/z.c": ("svc", '#include "cmd.h"\n#include "domain.h"\n'),
    }
    assert layer_violations(sources, headers) == [("lib/core/x.c", "domain.h", "svc")]
