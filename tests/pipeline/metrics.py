"""Checks a dp-coordinator /metrics page against its status after a campaign.

Usage: metrics.py METRICS_FILE STATUS_JSON PHASE
  PHASE "idle":  before any campaign: the workers' gauges (1 trainer, 1
                 measurer of class cls-a), no tasks.
  PHASE "done":  after one campaign: the task gauges per kind and state equal
                 the status's tasks, one campaign done, every task leased at
                 least once, journal commits counted.
The page is parsed by prometheus_client's text parser, which refuses what
Prometheus would refuse."""
import json
import sys
from collections import Counter

from prometheus_client.parser import text_string_to_metric_families


def samples(text):
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(m, name, **labels):
    k = (name, tuple(sorted(labels.items())))
    if k not in m:
        sys.exit(f"metrics: no sample {name}{labels}")
    return m[k]


def main(argv):
    m = samples(open(argv[1]).read())
    phase = argv[3]
    if value(m, "dp_workers_alive", role="trainer", device_class="") != 1:
        sys.exit("metrics: dp_workers_alive for trainers is not 1")
    if value(m, "dp_workers_alive", role="measurer", device_class="cls-a") != 1:
        sys.exit("metrics: dp_workers_alive for measurers of cls-a is not 1")
    if phase == "idle":
        if any(v for (n, _), v in m.items() if n == "dp_tasks"):
            sys.exit("metrics: tasks before any campaign")
        print("metrics idle: 1 trainer, 1 measurer of cls-a, no tasks")
        return
    st = json.load(open(argv[2]))
    c = st["campaigns"][0]
    want = Counter()
    for t in c["tasks"]:
        kind = t["kind"].replace("TASK_KIND_", "").lower()
        state = t["state"].replace("TASK_STATE_", "").lower()
        want[(kind, state)] += 1
    for kind in ("train", "generate", "baseline", "measure", "report"):
        for state in ("blocked", "queued", "leased", "done", "failed", "cancelled"):
            got = value(m, "dp_tasks", kind=kind, state=state)
            if got != want[(kind, state)]:
                sys.exit(f"metrics: dp_tasks{{kind={kind},state={state}}} = {got}, "
                         f"the status says {want[(kind, state)]}")
    done = int(c["counts"]["done"])
    if sum(want.values()) != done:
        sys.exit(f"metrics: the status lists {sum(want.values())} tasks, counts {done} done")
    if value(m, "dp_campaigns", state="done") != 1:
        sys.exit("metrics: dp_campaigns{state=done} is not 1")
    if value(m, "dp_campaigns_accepted_total") != 1:
        sys.exit("metrics: dp_campaigns_accepted_total is not 1")
    # REPORT runs on a trainer like the rest: every task was leased
    if value(m, "dp_tasks_assigned_total") < done:
        sys.exit(f"metrics: {value(m, 'dp_tasks_assigned_total')} leases for {done} tasks")
    if value(m, "dp_task_results_total") != done:
        sys.exit(f"metrics: dp_task_results_total {value(m, 'dp_task_results_total')} != {done}")
    commits = value(m, "dp_journal_commit_seconds_count")
    inf = value(m, "dp_journal_commit_seconds_bucket", le="+Inf")
    if commits < 1 or inf != commits:
        sys.exit(f"metrics: journal commits {commits}, +Inf bucket {inf}")
    print(f"metrics done: {done} tasks by kind and state as the status says "
          f"({dict(sorted((f'{k}/{s}', n) for (k, s), n in want.items()))}), "
          f"{int(value(m, 'dp_tasks_assigned_total'))} leases, {int(commits)} journal commits")


if __name__ == "__main__":
    main(sys.argv)
