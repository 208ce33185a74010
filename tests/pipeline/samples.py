#!/usr/bin/env python3
"""Digests of a campaign's sample sets and generators, for comparing runs.

Usage: samples.py DIR [--methods M,M] [--shards] [--generators]

DIR holds a campaign's objects as the store keeps them (a file:// store's
campaign directory, or objects fetched from s3:// under the same keys):
    DIR/MODEL/NORM-EPS/METHOD/sK/samples.safetensors
    DIR/MODEL/NORM-EPS/deepperform/generator/generator.safetensors

Prints one sorted line per seed of every sample set,
    MODEL/NORM-EPS/METHOD seed=I x_adv=SHA256 delta_norm=.. psnr=.. flops_seed=.. flops_adv=..
(the tensors' bytes, hex, so equal lines mean equal bits; metadata such as
the seconds a shard took is left out), and with --generators one line per
tensor of each generator. The shard holding a seed is left out unless
--shards is given: DeepPerform's x' do not depend on the shard layout, the
baselines' only on the same layout (docs/NUMERICS.md). The campaign id is
not part of DIR, so two campaigns compare.

Standard library only. Exit 1 when DIR holds no sample set, 2 on a file
that is not a safetensors file.
"""
import hashlib
import json
import os
import struct
import sys


def read_safetensors(path):
    """Returns (metadata, {name: (dtype, shape, bytes)})."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError("%s: shorter than a safetensors header" % path)
    (n,) = struct.unpack("<Q", blob[:8])
    if 8 + n > len(blob):
        raise ValueError("%s: header length %d past the end" % (path, n))
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = blob[8 + n:]
    meta = header.pop("__metadata__", {}) or {}
    tensors = {}
    for name, t in header.items():
        b, e = t["data_offsets"]
        if not (0 <= b <= e <= len(data)):
            raise ValueError("%s: tensor %s out of the file" % (path, name))
        tensors[name] = (t["dtype"], t["shape"], data[b:e])
    return meta, tensors


SIZES = {"F32": 4, "F64": 8, "I64": 8, "I32": 4, "U8": 1, "F16": 2, "BF16": 2}


def rows(t, n):
    """The n rows (first dimension) of tensor t as bytes."""
    dtype, shape, data = t
    if not shape or shape[0] != n:
        raise ValueError("tensor of shape %s has not %d rows" % (shape, n))
    step = len(data) // n if n else 0
    return [data[i * step:(i + 1) * step] for i in range(n)]


def sample_lines(root, rel, path, methods, shards):
    parts = rel.split("/")  # MODEL/NORM-EPS/METHOD/sK/samples.safetensors
    if len(parts) != 5:
        return []
    model, budget, method, shard = parts[0], parts[1], parts[2], parts[3]
    if methods and method not in methods:
        return []
    meta, ts = read_safetensors(path)
    (_, shape, idx) = ts["seed_index"]
    n = shape[0]
    seeds = struct.unpack("<%dq" % n, idx)
    cols = {}
    for name in ("x_adv", "delta_norm", "psnr", "flops_seed", "flops_adv"):
        cols[name] = rows(ts[name], n)
    out = []
    for i, s in enumerate(seeds):
        line = "%s/%s/%s seed=%d" % (model, budget, method, s)
        if shards:
            line += " shard=%s" % shard
        line += " x_adv=%s" % hashlib.sha256(cols["x_adv"][i]).hexdigest()[:32]
        for name in ("delta_norm", "psnr", "flops_seed", "flops_adv"):
            line += " %s=%s" % (name, cols[name][i].hex())
        out.append(line)
    return out


def generator_lines(rel, path):
    parts = rel.split("/")  # MODEL/NORM-EPS/deepperform/generator/generator.safetensors
    if len(parts) != 5:
        return []
    _, ts = read_safetensors(path)
    return ["%s/%s/generator %s=%s" % (parts[0], parts[1], name,
                                      hashlib.sha256(ts[name][2]).hexdigest()[:32])
            for name in sorted(ts)]


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    opts = [a for a in argv[1:] if a.startswith("--")]
    if len(args) != 1:
        sys.stderr.write(__doc__)
        return 2
    root = args[0]
    methods = set()
    shards = "--shards" in opts
    gens = "--generators" in opts
    for o in opts:
        if o.startswith("--methods="):
            methods = set(o.split("=", 1)[1].split(","))
    lines = []
    try:
        for d, _, files in os.walk(root):
            for f in files:
                path = os.path.join(d, f)
                rel = os.path.relpath(path, root)
                if f == "samples.safetensors":
                    lines += sample_lines(root, rel, path, methods, shards)
                elif f == "generator.safetensors" and gens:
                    lines += generator_lines(rel, path)
    except (ValueError, KeyError, OSError) as e:
        sys.stderr.write("samples.py: %s\n" % e)
        return 2
    if not any(" seed=" in l for l in lines):
        sys.stderr.write("samples.py: no sample set under %s\n" % root)
        return 1
    lines.sort()
    sys.stdout.write("".join(l + "\n" for l in lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
