#!/usr/bin/env python3
"""What the rendered manifests promise, checked object by object: the
coordinator's StatefulSet keeps its journal on a claim and has its Service
and PodDisruptionBudget; only DeepPerform's pods reach it (NetworkPolicy);
every container has requests and limits and runs as non-root; every
long-running DeepPerform container is probed (the coordinator on /healthz,
a worker alive on /metrics and ready on /healthz); the nightly
CronJob runs dp-submit --wait with concurrencyPolicy Forbid; one measurer
DaemonSet per device class of the campaign, placed by the node label, whose
only host paths are its energy probe's sysfs, read-only.

Usage: expect.py DEV.yaml FARM.yaml JOBS.yaml (kubectl kustomize output of
k8s/overlays/dev, k8s/overlays/farm and k8s/jobs)."""
import re
import sys

import yaml

LABEL = "deepperform.dev/device-class"
# the host paths each class's energy probe reads, and nothing else
PROBE_PATHS = {
    "x86": {"/sys/class/powercap", "/sys/devices/virtual/powercap"},
    "jetson-orin": {"/sys/bus/i2c/drivers/ina3221",
                    "/sys/devices/platform/bus@0/c240000.i2c/i2c-1/1-0040"},
}
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)


def load(path):
    with open(path) as f:
        return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(f) if d}


def pod_of(obj):
    spec = obj.get("spec", {})
    if obj["kind"] == "CronJob":
        return spec["jobTemplate"]["spec"]["template"]["spec"]
    return spec.get("template", {}).get("spec")


def arg_after(argv, flag):
    return argv[argv.index(flag) + 1] if flag in argv else None


def check_pods(name, objs):
    for (kind, oname), obj in objs.items():
        pod = pod_of(obj)
        if pod is None:
            continue
        where = f"{name}: {kind}/{oname}"
        sc = pod.get("securityContext", {})
        check(sc.get("runAsNonRoot") is True and sc.get("runAsUser", 0) != 0,
              f"{where}: not runAsNonRoot with a non-zero runAsUser")
        check(not pod.get("hostNetwork") and not pod.get("hostPID"), f"{where}: host namespaces")
        mounts = {}
        for c in pod.get("initContainers", []) + pod["containers"]:
            cw = f"{where} container {c['name']}"
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                check(set(res.get(part, {})) >= {"cpu", "memory"}, f"{cw}: no {part} for cpu and memory")
            csc = c.get("securityContext", {})
            check(csc.get("allowPrivilegeEscalation") is False and not csc.get("privileged"),
                  f"{cw}: may escalate privileges")
            check("ALL" in csc.get("capabilities", {}).get("drop", []), f"{cw}: capabilities not dropped")
            argv = c.get("command", []) + c.get("args", [])
            serves = "--http" in argv or any(p.get("name") == "http" for p in c.get("ports", []))
            if serves:
                # the coordinator: both on /healthz; a worker: alive when its
                # loop answers /metrics, ready when /healthz says registered
                ours = argv and argv[0].startswith("dp-")
                worker = ours and argv[0] != "dp-coordinator"
                want = {"livenessProbe": "/metrics" if worker else "/healthz",
                        "readinessProbe": "/healthz"}
                if not ours:
                    want = {"livenessProbe": "/minio/health/live", "readinessProbe": "/minio/health/ready"}
                for probe, path in want.items():
                    if probe == "readinessProbe" and kind == "Job":
                        continue  # a Job's pods are no Service's endpoints
                    get = c.get(probe, {}).get("httpGet", {})
                    check(get.get("path") == path, f"{cw}: no {probe} on {path}")
            for m in c.get("volumeMounts", []):
                mounts.setdefault(m["name"], []).append(m)
        host = {v["name"]: v["hostPath"]["path"] for v in pod.get("volumes", []) if "hostPath" in v}
        if host:
            cls = obj["metadata"]["labels"].get(LABEL)
            check(kind == "DaemonSet" and cls in PROBE_PATHS, f"{where}: host paths outside a measurer")
            check(set(host.values()) == PROBE_PATHS.get(cls),
                  f"{where}: host paths {sorted(host.values())}, expected {sorted(PROBE_PATHS.get(cls, []))}")
            for v in host:
                check(all(m.get("readOnly") is True for m in mounts.get(v, [])),
                      f"{where}: host path volume {v} mounted writable")


def check_cluster(name, objs, classes_expected):
    check(("Namespace", "deepperform") in objs, f"{name}: no Namespace deepperform")
    for (kind, oname), obj in objs.items():
        if kind != "Namespace":
            check(obj["metadata"].get("namespace") == "deepperform", f"{name}: {kind}/{oname} not in deepperform")
    sts = objs.get(("StatefulSet", "dp-coordinator"))
    check(sts is not None, f"{name}: no coordinator StatefulSet")
    if sts:
        c = sts["spec"]["template"]["spec"]["containers"][0]
        journal = arg_after(c["command"], "--journal") or ""
        claims = {t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates", [])}
        check(any(m["name"] in claims and journal.startswith(m["mountPath"] + "/")
                  for m in c.get("volumeMounts", [])), f"{name}: the journal {journal} is not on a claim")
        check(sts["spec"]["replicas"] == 1, f"{name}: more than one coordinator")
        sel = sts["spec"]["selector"]["matchLabels"]
    svc = objs.get(("Service", "dp-coordinator"))
    check(svc is not None and {p["port"] for p in svc["spec"]["ports"]} >= {5555, 8080},
          f"{name}: no Service dp-coordinator on 5555 and 8080")
    pdb = objs.get(("PodDisruptionBudget", "dp-coordinator"))
    check(pdb is not None and sts and pdb["spec"]["selector"]["matchLabels"] == sel
          and pdb["spec"].get("minAvailable") == 1, f"{name}: no PodDisruptionBudget keeping the coordinator")
    np = objs.get(("NetworkPolicy", "dp-coordinator"))
    ok = np is not None and sts and np["spec"]["podSelector"]["matchLabels"].items() <= \
        sts["spec"]["template"]["metadata"]["labels"].items()
    if ok:
        for rule in np["spec"]["ingress"]:
            for peer in rule.get("from", []):
                ok = ok and set(peer) == {"podSelector"} and \
                    peer["podSelector"]["matchLabels"].get("app.kubernetes.io/part-of") == "deepperform"
            ok = ok and bool(rule.get("from"))
    check(ok, f"{name}: the coordinator's NetworkPolicy admits more than the project's pods")
    cron = objs.get(("CronJob", "dp-nightly"))
    check(cron is not None and cron["spec"]["concurrencyPolicy"] == "Forbid", f"{name}: no nightly CronJob with Forbid")
    if cron:
        argv = pod_of(cron)["containers"][0]["command"]
        check(argv[0] == "dp-submit" and "--wait" in argv, f"{name}: the CronJob does not run dp-submit --wait")
        camp_file = argv[-1]
        cm = objs.get(("ConfigMap", "dp-campaign"), {}).get("data", {})
        text = cm.get(camp_file.rsplit("/", 1)[-1], "")
        check(text, f"{name}: the ConfigMap dp-campaign has no {camp_file}")
        classes = set(re.findall(r'device_classes \{ name: "([^"]+)"', text))
        check(classes == classes_expected, f"{name}: the campaign's classes {sorted(classes)}")
    check(("Deployment", "dp-trainer") in objs, f"{name}: no trainer Deployment")
    check(("StatefulSet", "dp-minio") in objs, f"{name}: no MinIO StatefulSet")
    for s in ("dp-s3", "dp-curve"):
        check(("Secret", s) in objs, f"{name}: no Secret {s}")
    measured = set()
    for (kind, oname), obj in objs.items():
        if kind != "DaemonSet":
            continue
        cls = obj["metadata"]["labels"].get(LABEL)
        pod = pod_of(obj)
        argv = pod["containers"][0]["command"]
        check(pod.get("nodeSelector", {}).get(LABEL) == cls and arg_after(argv, "--device-class") == cls,
              f"{name}: DaemonSet {oname} is not placed on, or does not measure, its class {cls}")
        measured.add(cls)
    check(measured == classes_expected, f"{name}: measurer DaemonSets for {sorted(measured)}")
    check_pods(name, objs)


dev, farm, jobs = (load(p) for p in sys.argv[1:4])
check_cluster("dev", dev, {"x86"})
check_cluster("farm", farm, {"x86", "jetson-orin"})
job = jobs.get(("Job", "dp-trainers"))
check(job is not None and job["spec"].get("completionMode") == "Indexed", "jobs: no Indexed Job dp-trainers")
check_pods("jobs", jobs)
for f in failures:
    print(f"FAIL {f}")
print(f"expect: {len(failures)} of the promises broken" if failures else
      f"expect: dev {len(dev)}, farm {len(farm)}, jobs {len(jobs)} objects keep every promise")
sys.exit(1 if failures else 0)
