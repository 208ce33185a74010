#!/usr/bin/env python3
"""Runs every DeepPerform command line of the deployment files through the
real programs: each command (and its literal environment) found in the
compose file, the systemd units (with their EnvironmentFile) and rendered
Kubernetes manifests is run with --check-args appended, which parses and
validates the settings exactly as a start would and stops before opening,
binding or connecting anything. A command that is refused, or a program
that is not ours, fails the check; so does finding fewer commands than the
files must hold.

Usage: check_args.py BUILD_DIR [--compose FILE] [--unit FILE]... [--k8s FILE]...
  [--expect N]  at least N commands (default 1)
Kubernetes $(VAR) references are given a sample value (node-1, ...)."""
import argparse
import os
import re
import shlex
import subprocess
import sys

import yaml

PROGRAMS = {
    "dp-coordinator": "coordinator/dp-coordinator",
    "dp-worker": "worker/dp-worker",
    "dp-measurer": "measurer/dp-measurer",
    "dp-submit": "cli/dp-submit",
}
OUR_IMAGE = re.compile(r"(^|/)deepperform(:|@|$)")
SAMPLE = {"NODE_NAME": "node-1", "POD_NAME": "pod-1", "JOB_NAME": "dp-trainers",
          "JOB_COMPLETION_INDEX": "0", "CAMPAIGN_ID": "nightly-1"}


def k8s_commands(path):
    """(where, argv, env) of every container running our image."""
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    for d in docs:
        spec = d.get("spec", {})
        pod = (spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec")
               or spec.get("template", {}).get("spec"))
        if not pod:
            continue
        for c in pod.get("initContainers", []) + pod.get("containers", []):
            image = c.get("image", "")
            argv = list(c.get("command", [])) + list(c.get("args", []))
            where = f"{path}: {d['kind']}/{d['metadata']['name']} container {c['name']}"
            if not OUR_IMAGE.search(image.split("/")[-1] if "/" in image else image):
                if argv and argv[0] in PROGRAMS:
                    raise SystemExit(f"{where}: runs {argv[0]} from image {image!r}, not ours")
                continue
            if not argv:
                raise SystemExit(f"{where}: our image without a command (it would print --help)")
            env = {e["name"]: str(e["value"]) for e in c.get("env", []) if "value" in e}
            values = dict(SAMPLE, **env)

            def expand(s, values=values, where=where):
                def one(m):
                    if m.group(1) not in values:
                        raise SystemExit(f"{where}: $({m.group(1)}) is not defined")
                    return values[m.group(1)]
                return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", one, str(s))
            yield where, [expand(a) for a in argv], env


def compose_commands(path):
    with open(path) as f:
        doc = yaml.safe_load(f)
    for name, svc in doc["services"].items():
        cmd = svc.get("command")
        if cmd is None:
            continue
        argv = shlex.split(cmd) if isinstance(cmd, str) else [str(a) for a in cmd]
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(e.split("=", 1) for e in env)
        if argv[0] not in PROGRAMS and OUR_IMAGE.search(str(svc.get("image", ""))):
            raise SystemExit(f"{path}: service {name}: {argv[0]} is not one of our programs")
        if argv[0] in PROGRAMS:
            yield f"{path}: service {name}", argv, {k: str(v) for k, v in env.items()}


def unit_commands(path):
    """ExecStart of a unit, with its Environment= lines and its EnvironmentFile
    (the template beside the unit stands for the installed file: NAME or
    NAME.env)."""
    env, cmds = {}, []
    here = os.path.dirname(path)
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("EnvironmentFile="):
                base = os.path.basename(line.split("=", 1)[1].lstrip("-"))
                names = [os.path.join(here, n) for n in (base, base + ".env")]
                name = next((n for n in names if os.path.isfile(n)), None)
                if name is None:
                    raise SystemExit(f"{path}: no template {' or '.join(names)} for {line}")
                with open(name) as e:
                    for el in e:
                        el = el.strip()
                        if el and not el.startswith("#"):
                            k, v = el.split("=", 1)
                            env[k] = v
            elif line.startswith("Environment="):
                for kv in shlex.split(line.split("=", 1)[1]):
                    k, v = kv.split("=", 1)
                    env[k] = v
            elif line.startswith("ExecStart="):
                argv = shlex.split(line.split("=", 1)[1].lstrip("-@+!:"))
                argv[0] = os.path.basename(argv[0])
                cmds.append(argv)
    if not cmds:
        raise SystemExit(f"{path}: no ExecStart")
    for argv in cmds:
        yield f"{path}: ExecStart", argv, env


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--compose", action="append", default=[])
    ap.add_argument("--unit", action="append", default=[])
    ap.add_argument("--k8s", action="append", default=[])
    ap.add_argument("--expect", type=int, default=1)
    a = ap.parse_args()
    found = []
    for p in a.compose:
        found += compose_commands(p)
    for p in a.unit:
        found += unit_commands(p)
    for p in a.k8s:
        found += k8s_commands(p)
    bad = 0
    for where, argv, env in found:
        if argv[0] not in PROGRAMS:
            print(f"FAIL {where}: {argv[0]} is not one of {', '.join(PROGRAMS)}")
            bad += 1
            continue
        exe = os.path.join(a.build, PROGRAMS[argv[0]])
        # the environment the program would see: ours less any DP_ setting, plus the file's
        run_env = {k: v for k, v in os.environ.items() if not k.startswith("DP_")}
        run_env.update(env)
        r = subprocess.run([exe] + argv[1:] + ["--check-args"], env=run_env,
                           capture_output=True, text=True, timeout=30)
        ok = r.returncode == 0 and "arguments accepted" in r.stdout
        print(f"{'ok  ' if ok else 'FAIL'} {where}: {shlex.join(argv)}")
        if not ok:
            lines = [x for x in r.stderr.splitlines() if x.strip() and " info " not in x]
            print(f"     exit {r.returncode}: {lines[0] if lines else '(no message)'}")
            bad += 1
    if len(found) < a.expect:
        print(f"FAIL found {len(found)} commands, expected at least {a.expect}")
        bad += 1
    print(f"check_args: {max(len(found) - bad, 0)} passed, {bad} failed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
