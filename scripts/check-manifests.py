"""Checks the rendered manifests against the wgmesh binary (scripts/check-manifests.sh runs it).

For every container that runs wgmesh: its subcommand exists; every flag it is given exists on that
subcommand (from `wgmesh SUBCOMMAND --experimental-dump-help`), a flag that takes no value gets none and
an option gets one; every $(VAR) in its command and args is defined in its env; every other variable in
its env is one wgmesh reads (found in Sources/); every configMapKeyRef names a key of a ConfigMap in the
manifests. The image tag is `wgmesh --version`. Prints one line per problem and exits 1 if there is any.

usage: check-manifests.py RENDERED.yaml WGMESH_BINARY SOURCES_DIR
"""
import json
import os
import re
import subprocess
import sys

import yaml

VAR = re.compile(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
# How the sources read the environment: env["X"], environment["X"], getenv("X").
READ = re.compile(r'(?:\benv|\benvironment)\["([A-Za-z_][A-Za-z0-9_]*)"\]|getenv\("([A-Za-z_][A-Za-z0-9_]*)"\)')
POD_TEMPLATE_KINDS = {"Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job"}


def variables_read(sources):
    names = set()
    for folder, _, files in os.walk(sources):
        for name in files:
            if name.endswith(".swift"):
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    for m in READ.finditer(f.read()):
                        names.add(m.group(1) or m.group(2))
    return names


def options(binary, subcommand, cache={}):
    """{"--name": takes_value} for the subcommand, or None when it has no such subcommand."""
    if subcommand not in cache:
        run = subprocess.run([binary, subcommand, "--experimental-dump-help"], capture_output=True, text=True)
        if run.returncode != 0:
            cache[subcommand] = None
        else:
            found = {}
            for argument in json.loads(run.stdout)["command"].get("arguments", []):
                for n in argument.get("names", []):
                    dashes = "--" if n["kind"] == "long" else "-"
                    found[dashes + n["name"]] = argument["kind"] == "option"
            cache[subcommand] = found
    return cache[subcommand]


def runs_wgmesh(container):
    command = container.get("command")
    # No command: the image's entrypoint, which is wgmesh (Containerfile).
    return command is None or os.path.basename(command[0]) == "wgmesh"


def check_container(where, container, binary, read, config_maps):
    problems = []
    argv = (container.get("command") or [])[1:] + (container.get("args") or [])
    env = {e["name"]: e for e in container.get("env", [])}
    used = {m.group(1) for word in argv for m in VAR.finditer(word)}
    for name in sorted(used - env.keys()):
        problems.append(f"{where}: $({name}) in its args is not defined in its env")
    for name, entry in sorted(env.items()):
        if name not in used and name not in read:
            problems.append(f"{where}: env {name} is neither used in its args nor read by wgmesh (nothing in Sources/ reads it)")
        ref = (entry.get("valueFrom") or {}).get("configMapKeyRef")
        if ref and not ref.get("optional"):
            data = config_maps.get(ref["name"])
            if data is None:
                problems.append(f"{where}: env {name} reads ConfigMap {ref['name']}, which the manifests do not create")
            elif ref["key"] not in data:
                problems.append(f"{where}: env {name} reads key {ref['key']}, which ConfigMap {ref['name']} does not have")

    subcommand = next((w for w in argv if not w.startswith("-")), None)
    if subcommand is None:
        return problems + [f"{where}: runs wgmesh without a subcommand"]
    known = options(binary, subcommand)
    if known is None:
        return problems + [f"{where}: wgmesh has no subcommand {subcommand!r}"]
    words = iter(argv[argv.index(subcommand) + 1:])
    for word in words:
        if not word.startswith("-"):
            problems.append(f"{where}: {word!r} is not a flag, and `wgmesh {subcommand}` takes no positional argument here")
            continue
        flag, has_value, _ = word.partition("=")
        if flag not in known:
            problems.append(f"{where}: `wgmesh {subcommand}` has no flag {flag}")
        elif known[flag] and not has_value and next(words, None) is None:
            problems.append(f"{where}: {flag} needs a value")
        elif not known[flag] and has_value:
            problems.append(f"{where}: {flag} takes no value, but is given {word!r}")
    return problems


def main(rendered, binary, sources):
    with open(rendered, encoding="utf-8") as f:
        objects = [o for o in yaml.safe_load_all(f) if o]
    read = variables_read(sources)
    config_maps = {o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "ConfigMap"}
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    problems, checked = [], []
    for o in objects:
        if o["kind"] not in POD_TEMPLATE_KINDS:
            continue
        pod = o["spec"]["template"]["spec"]
        for c in pod.get("initContainers", []) + pod.get("containers", []):
            tag = c["image"].rpartition(":")[2] if ":" in c["image"].rpartition("/")[2] else ""
            if tag != version:
                problems.append(f"{o['kind']}/{o['metadata']['name']} {c['name']}: image {c['image']} is not tagged {version} (`wgmesh --version`)")
            if runs_wgmesh(c):
                where = f"{o['kind']}/{o['metadata']['name']} container {c['name']}"
                problems += check_container(where, c, binary, read, config_maps)
                checked.append(where)
    if not checked:
        problems.append("no container in the manifests runs wgmesh")
    for p in problems:
        print(f"FAIL {p}")
    for where in checked:
        print(f"checked {where}")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
