#!/usr/bin/env python3
"""The acceptance summary of a DeepPerform table: for each (model, budget)
of the rows that scripts/perform-table.sh printed (its table.json, or
dp-perform evaluate --json), DeepPerform's mean I-FLOPs against ILFO's and
against random noise's, whether every method's outputs are within budget,
and the counts the acceptance asks for.

Usage: perform-summary.py [--rows] TABLE.json [MORE.json ...]
  --rows  first print the rows themselves as a Markdown table (the columns
          of docs/PERFORM.md's tables)
Several files are read as one table (a table made in parts): a row for a
(model, norm, eps, method) already read is replaced by the later file's.
A pair lacking DeepPerform or ILFO is shown as "(not yet)"; where random
noise's mean is not positive, its mean is shown ("r -0.9") instead of a
ratio, and the pair is left out of the ratio's range."""
import json
import sys


def read_rows(path):
    with open(path) as f:
        rows = json.load(f)
    if isinstance(rows, dict):
        if "rows" not in rows:
            raise ValueError("an object without 'rows'")
        rows = rows["rows"]
    if not isinstance(rows, list):
        raise ValueError("not a list of rows")
    return rows


def print_rows(rows):
    print("| model | norm | eps | method | n | I-FLOPs mean % | max % | exec x' | PSNR dB "
          "| max norm | s/input | IDPB rate |")
    print("|---" * 12 + "|")
    for r in rows:
        print("| %s | %s | %g | %s | %d | %.1f | %.1f | %.3f | %.1f | %.4g | %.3g | %.3f |" % (
            r["model"], r["norm"], float(r["eps"]), r["method"], r["n"], r["iflops_mean"],
            r["iflops_max"], r["exec_fraction_mean"], r["psnr_mean"], r["norm_max"],
            r["seconds_per_input"], r["idpb_rate"]))
    print()


def main():
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    show_rows = args[0] == "--rows"
    files = args[1:] if show_rows else args
    if not files:
        print("perform-summary: no TABLE.json given (--help)", file=sys.stderr)
        return 2
    # (model, norm, eps, method) -> row; a later row replaces an earlier one
    # in its place (a dict keeps the first insertion's order)
    rows = {}
    for path in files:
        try:
            got = read_rows(path)
        except (OSError, ValueError) as e:
            print(f"perform-summary: {path}: {e}", file=sys.stderr)
            return 1
        for r in got:
            if not isinstance(r, dict):
                print(f"perform-summary: {path}: a row that is not an object: {r}", file=sys.stderr)
                return 1
            try:
                float(r["iflops_mean"])
                rows[(r["model"], r["norm"], float(r["eps"]), r["method"])] = r
            except (KeyError, TypeError, ValueError) as e:
                print(f"perform-summary: {path}: a row with a missing or bad field ({e!r}): {r}",
                      file=sys.stderr)
                return 1
    if show_rows:
        try:
            print_rows(rows.values())
        except (KeyError, TypeError, ValueError) as e:
            print(f"perform-summary: a row with a missing or bad field ({e!r})", file=sys.stderr)
            return 1
    models, budgets, by = [], [], {}
    for (model, norm, eps, method), r in rows.items():
        b = (norm, eps)
        by.setdefault((model, b), {})[method] = r
        if model not in models:
            models.append(model)
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
