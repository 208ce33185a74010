#!/usr/bin/env python3
"""The acceptance summary of a DeepPerform table: for each (model, budget)
of the rows that scripts/perform-table.sh printed (its table.json, or
dp-perform evaluate --json), DeepPerform's mean I-FLOPs against ILFO's and
against random noise's, whether every method's outputs are within budget,
and the counts the acceptance asks for.

Usage: perform-summary.py TABLE.json   (one Markdown table, then the counts)
A pair lacking DeepPerform or ILFO is shown as "(not yet)"; where random
noise's mean is not positive, its mean is shown ("r -0.9") instead of a
ratio, and the pair is left out of the ratio's range."""
import json
import sys


def main():
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr if len(sys.argv) != 2 else sys.stdout)
        return 0 if len(sys.argv) == 2 else 2
    try:
        with open(sys.argv[1]) as f:
            rows = json.load(f)
    except (OSError, ValueError) as e:
        print(f"perform-summary: {sys.argv[1]}: {e}", file=sys.stderr)
        return 1
    rows = rows["rows"] if isinstance(rows, dict) else rows
    models, budgets, by = [], [], {}
    for r in rows:
        try:
            b = (r["norm"], float(r["eps"]))
            by.setdefault((r["model"], b), {})[r["method"]] = r
            float(r["iflops_mean"])
        except (KeyError, TypeError, ValueError) as e:
            print(f"perform-summary: {sys.argv[1]}: a row without {e}: {r}", file=sys.stderr)
            return 1
        if r["model"] not in models:
            models.append(r["model"])
        if b not in budgets:
            budgets.append(b)
    budgets.sort(key=lambda b: (b[0] != "linf", b[1]))
    print("| model | " + " | ".join("%s %g" % ("Linf" if n == "linf" else "L2", e)
                                     for n, e in budgets) + " |")
    print("|---" * (len(budgets) + 1) + "|")
    made = ahead = 0
    within = True
    ratios = []
    for m in models:
        cells = []
        for b in budgets:
            v = by.get((m, b), {})
            if "deepperform" not in v or "ilfo" not in v:
                cells.append("(not yet)")
                continue
            d, i = v["deepperform"]["iflops_mean"], v["ilfo"]["iflops_mean"]
            made += 1
            ahead += d >= i
            within &= all(x.get("within_budget", False) for x in v.values())
            cell = "%.1f %s %.1f" % (d, ">=" if d >= i else "<", i)
            if "random" in v:
                rm = v["random"]["iflops_mean"]
                if rm > 0:
                    ratios.append(d / rm)
                    cell += " (%.1fx)" % (d / rm)
                else:
                    cell += " (r %.1f)" % rm
            cells.append(cell)
        print("| %s | %s |" % (m, " | ".join(cells)))
    print()
    print("pairs made: %d of %d" % (made, len(models) * len(budgets)))
    print("DeepPerform >= ILFO: %d of %d" % (ahead, made))
    if ratios:
        print("DeepPerform / random: %.1fx-%.1fx over the %d pairs where random's mean is positive"
              % (min(ratios), max(ratios), len(ratios)))
    print("every output within budget: %s" % ("yes" if within else "no"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
