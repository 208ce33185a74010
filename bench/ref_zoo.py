"""PyTorch eager reference for bench/bench_zoo.c: batch-1 adaptive forward of a
zoo model (same MODEL.pb + MODEL.safetensors, the mirror in
tests/ref/zoo_models.py) over the first N Fashion-MNIST test images.

    /usr/bin/python3 bench/ref_zoo.py --model models/sdn_resnet --n 1000 --reps 5 --threads 1

--reps rounds over all inputs; in each, per input, one untimed warm-up forward
and --burst timed ones back to back (torch.no_grad(), eval mode, Python control
flow: an exit that fires stops the network), as bench_zoo.c does; the input's
time is the median of its reps * burst runs. Prints one JSON object: the mean over inputs of
the per-input median (ms), and each input's reference-convention FLOPs (so the
C side can check that both took the same decisions).
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "ref"))
import zoo_models as zm  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="prefix: MODEL.pb, MODEL.safetensors")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--burst", type=int, default=3, help="timed runs per input and round")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model, spec = zm.load_model(a.model)
    x = zm.read_idx_images(os.path.join(a.data, "t10k-images-idx3-ubyte.gz"), a.n)
    # FLOPs of each input's path, outside the timed runs (hooks cost time)
    flops = []
    with torch.no_grad():
        for i in range(x.shape[0]):
            with zm.FlopCounter(model) as fc:
                model.adaptive(x[i:i + 1])
            flops.append(fc.flops)
    n = x.shape[0]
    t = [[] for _ in range(n)]
    with torch.no_grad():
        for _ in range(a.reps):  # rounds over all inputs, as bench_zoo.c
            for i in range(n):
                xi = x[i:i + 1]
                model.adaptive(xi)  # warm-up
                for _ in range(a.burst):
                    t0 = time.perf_counter()
                    model.adaptive(xi)
                    t[i].append((time.perf_counter() - t0) * 1e3)
    med = [statistics.median(v) for v in t]
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                      "n": len(med), "ms_per_input": sum(med) / len(med), "flops": flops}))


if __name__ == "__main__":
    main()
