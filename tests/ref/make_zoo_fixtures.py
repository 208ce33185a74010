"""Cross-check fixtures for the adaptive model zoo, compared against by
tests/adnn/test_zoo_golden.c.

    /usr/bin/python3 tests/ref/make_zoo_fixtures.py --dp-zoo build-xcheck/cli/dp-zoo
    /usr/bin/python3 tests/ref/make_zoo_fixtures.py --only sdn_resnet

For each shipped model models/NAME (NAME.pb + NAME.safetensors) whose family
has a PyTorch mirror in zoo_models.py: loads it (every tensor checked by name
and shape), optionally checks the architecture against `dp-zoo info` (tensor
names and shapes, parameter count, full-network FLOPs), picks a few fixed
Fashion-MNIST test images (covering as many different exits / gate patterns
as possible, and only images whose decisions are at least --margin away from
the threshold, so float rounding cannot flip them), and writes
tests/fixtures/zoo/NAME.bin (DPGF, see golden.py) with, per image:

    meta        i32 [n, family, nexits, num_classes, nblocks, npk, flops_full]
    index, label  i32 (n): test-set index and label of each image
    x           f32 (n, c, h, w): (1-noise)*image + noise*U[0,1), noise 1e-3
    pred, exit_taken, blocks_run  i32 (n)
    ran         i32 (n, nblocks): 1 if the adaptive forward ran block b
    conf        f32 (n, nexits+1): max softmax of each exit reached, 0 after
    logits      f32 (n, nexits+1, K): every exit's logits (all blocks run);
                the adaptive forward's reached exits are the first exit_taken+1
                (gated families: the final logits with every block run; the
                adaptive path's logits are checked through conf and pred)
    flops_ref   i32 (n): reference-convention FLOPs of the adaptive forward,
                counted by hooks on the Conv2d/Linear modules that ran
    pk          f32 (n, npk): spend-more probabilities
    loss        f32 (n): L = -(1/K) sum_k log p_k at batch 1
    dx          f32 (n, c, h, w): dL/dx
(pk, loss and dx from the mirror in float64; images where the float32 and
float64 gradients differ, i.e. inputs on a kink, are not picked.)
"""
import argparse
import copy
import os
import re
import subprocess
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden  # noqa: E402
import zoo_models as zm  # noqa: E402


def check_against_dp_zoo(dp_zoo, prefix, model, spec):
    out = subprocess.run([dp_zoo, "info", prefix], check=True, capture_output=True,
                         text=True).stdout
    m = re.search(r"parameters\s+(\d+) trainable floats, (\d+) tensors", out)
    fl = re.search(r"FLOPs full\s+(\d+) \(reference\)", out)
    tens = dict(re.findall(r"^\s+(\S+)\s+\[([\d,]*)\]", out, re.M))
    want = zm.state_names(model)
    problems = []
    if int(m.group(1)) != zm.param_count(model):
        problems.append(f"parameters {m.group(1)} (C) vs {zm.param_count(model)} (torch)")
    if int(m.group(2)) != len(want):
        problems.append(f"tensors {m.group(2)} (C) vs {len(want)} (torch)")
    for name, t in want.items():
        shape = ",".join(str(d) for d in t.shape)
        if tens.get(name) != shape:
            problems.append(f"{name}: C [{tens.get(name)}] vs torch [{shape}]")
    ff = zm.flops_full(model, spec)
    if int(fl.group(1)) != ff:
        problems.append(f"full FLOPs {fl.group(1)} (C) vs {ff} (torch hooks)")
    if problems:
        raise SystemExit(f"{prefix}: dp-zoo info disagrees with the PyTorch mirror:\n  " +
                         "\n  ".join(problems))
    print(f"  dp-zoo info agrees: {len(want)} tensors, {zm.param_count(model)} parameters, "
          f"{ff} FLOPs full")


def adaptive_with_flops(model, x):
    with torch.no_grad(), zm.FlopCounter(model) as fc:
        r = model.adaptive(x)
    r["flops"] = fc.flops
    return r


def input_grad(model, x):
    xg = x.clone().requires_grad_(True)
    p = model.pk(xg)
    loss = -torch.log(p).mean()
    loss.backward()
    return p.detach(), loss.detach(), xg.grad[0].clone()


def smooth_here(model, model64, x, tol):
    """True when the float32 input gradient equals the float64 one within tol
    (relative to its largest magnitude): the point is not on a kink (a max-pool
    tie or a ReLU at 0), where the gradient is not unique and two correct
    implementations may legitimately pick different subgradients."""
    g32 = input_grad(model, x)[2].double()
    g64 = input_grad(model64, x.double())[2]
    return float((g32 - g64).abs().max() / g64.abs().max().clamp(min=1e-12)) <= tol


def pick_images(model, model64, images, n, margin, tol):
    """Deterministic: the first image of each distinct decision pattern (exit
    taken, blocks run), then the first remaining ones; skipping decisions
    within `margin` of their threshold and inputs on a gradient kink."""
    chosen, seen, rest = [], set(), []
    for i in range(images.shape[0]):
        x = images[i:i + 1]
        with torch.no_grad():
            if min(model.margins(x), default=1.0) < margin:
                continue
            r = model.adaptive(x)
        key = (r["exit_taken"], tuple(r["ran"]))
        if key in seen or len(chosen) >= n:
            rest.append(i)
        elif smooth_here(model, model64, x, tol):
            seen.add(key)
            chosen.append(i)
    for i in rest:
        if len(chosen) >= n:
            break
        if smooth_here(model, model64, images[i:i + 1], tol):
            chosen.append(i)
    return sorted(chosen)


def make(prefix, out_path, images, labels, n, margin, tol, dp_zoo):
    model, spec = zm.load_model(prefix)
    if dp_zoo:
        check_against_dp_zoo(dp_zoo, prefix, model, spec)
    model64 = copy.deepcopy(model).double()
    idx = pick_images(model, model64, images, n, margin, tol)
    E, K = model.nexits, spec["num_classes"]
    nb, npk = model.nblocks, model.pk_count()
    rows = {k: [] for k in ("pred", "exit_taken", "blocks_run", "ran", "conf", "logits",
                            "flops_ref", "pk", "loss", "dx")}
    for i in idx:
        x = images[i:i + 1]
        r = adaptive_with_flops(model, x)
        rows["pred"].append(r["pred"])
        rows["exit_taken"].append(r["exit_taken"])
        rows["blocks_run"].append(sum(r["ran"]))
        rows["ran"].append(r["ran"])
        rows["conf"].append(r["conf"])
        rows["flops_ref"].append(r["flops"])
        with torch.no_grad():
            z = model.all_logits(x)
            for j, zr in enumerate(r["logits"]):  # the adaptive path computed the same rows
                assert not isinstance(model, zm.EarlyExit) or torch.equal(zr, z[j]) or torch.allclose(zr, z[j], atol=1e-6), (i, j)
        rows["logits"].append(z)
        p, loss, dx = input_grad(model64, x.double())  # float64: the exact reference
        rows["pk"].append(p.float())
        rows["loss"].append(float(loss))
        rows["dx"].append(dx.float())
    fixture = {
        "meta": torch.tensor([len(idx), spec["family"], E, K, nb, npk,
                              zm.flops_full(model, spec)], dtype=torch.int32),
        "index": torch.tensor(idx, dtype=torch.int32),
        "label": labels[idx].to(torch.int32),
        "x": images[idx],
        "pred": torch.tensor(rows["pred"], dtype=torch.int32),
        "exit_taken": torch.tensor(rows["exit_taken"], dtype=torch.int32),
        "blocks_run": torch.tensor(rows["blocks_run"], dtype=torch.int32),
        "ran": torch.tensor(rows["ran"], dtype=torch.int32),
        "conf": torch.tensor(rows["conf"], dtype=torch.float32),
        "logits": torch.stack(rows["logits"]),
        "flops_ref": torch.tensor(rows["flops_ref"], dtype=torch.int32),
        "pk": torch.stack(rows["pk"]),
        "loss": torch.tensor(rows["loss"], dtype=torch.float32),
        "dx": torch.stack(rows["dx"]),
    }
    golden.write(out_path, fixture)
    back = golden.read(out_path)
    assert list(back) == list(fixture), "fixture re-read: names differ"
    print(f"  {out_path}: images {idx}, exits {rows['exit_taken']}, "
          f"blocks run {rows['blocks_run']}, FLOPs {rows['flops_ref']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="models")
    ap.add_argument("--out", default="tests/fixtures/zoo")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--only", nargs="*", help="model names (default: every models/*.pb)")
    ap.add_argument("--n", type=int, default=8, help="images per model")
    ap.add_argument("--pool", type=int, default=500, help="pick among the first N test images")
    ap.add_argument("--margin", type=float, default=1e-3,
                    help="skip images with a decision this close to its threshold")
    ap.add_argument("--noise", type=float, default=1e-3,
                    help="x = (1-noise)*image + noise*U[0,1) (fixed seed): breaks the exact "
                         "ties of the constant background (see tests/ref/README.md)")
    ap.add_argument("--kink-tol", type=float, default=1e-4,
                    help="skip inputs whose float32 and float64 input gradients differ more")
    ap.add_argument("--dp-zoo", help="path of dp-zoo: check the architecture against `dp-zoo info`")
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    images = zm.read_idx_images(os.path.join(a.data, "t10k-images-idx3-ubyte.gz"), a.pool)
    gen = torch.Generator().manual_seed(20240601)
    images = (1 - a.noise) * images + a.noise * torch.rand(images.shape, generator=gen)
    labels = zm.read_idx_labels(os.path.join(a.data, "t10k-labels-idx1-ubyte.gz"), a.pool)
    names = a.only or sorted(f[:-3] for f in os.listdir(a.models) if f.endswith(".pb"))
    os.makedirs(a.out, exist_ok=True)
    rc = 0
    for name in names:
        prefix = os.path.join(a.models, name)
        print(name)
        try:
            make(prefix, os.path.join(a.out, name + ".bin"), images, labels, a.n, a.margin,
                 a.kink_tol, a.dp_zoo)
        except NotImplementedError as e:
            print(f"  skipped: {e}")
            rc = rc if a.only is None else 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
