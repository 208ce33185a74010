#!/usr/bin/python3
"""PyTorch reference of the DeepPerform generator (core/perform/generator.c),
timed the same way as bench/bench_generator.c; prints one JSON object.

Run with the Debian python that has torch 1.13:
    /usr/bin/python3 bench/ref_generator.py --widths 64,16 --c 1 --h 28 --w 28

Module names follow core/perform/generator.c's tensor names, so a state_dict
of this model and perf_gen_tensor() agree key for key (except
num_batches_tracked, which the C side does not keep).
"""
import argparse
import json
import os
import statistics
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:  # bench_generator.c reports this and goes on
    print(json.dumps({"error": "torch not available: %s" % e}))
    sys.exit(2)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, slope):
        super().__init__()
        self.slope = slope
        self.conv1 = nn.Conv2d(cin, cout, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.has_sc = cin != cout
        if self.has_sc:
            self.sc_conv = nn.Conv2d(cin, cout, 1, bias=False)
            self.sc_bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        h = self.bn1(self.conv1(F.pad(x, (1, 1, 1, 1), mode="reflect")))
        h = F.leaky_relu(h, self.slope)
        h = self.bn2(self.conv2(F.pad(h, (1, 1, 1, 1), mode="reflect")))
        s = self.sc_bn(self.sc_conv(x)) if self.has_sc else x
        return s + h


class SelfAttention(nn.Module):
    """SAGAN: out_i = gamma * sum_j softmax_j(q_i . k_j) v_j + x_i."""

    def __init__(self, c):
        super().__init__()
        c8 = max(1, c // 8)
        self.query = nn.Conv2d(c, c8, 1)
        self.key = nn.Conv2d(c, c8, 1)
        self.value = nn.Conv2d(c, c, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        b, c, h, w = x.shape
        q = self.query(x).view(b, -1, h * w).permute(0, 2, 1)  # (B,HW,C8)
        k = self.key(x).view(b, -1, h * w)  # (B,C8,HW)
        att = torch.softmax(torch.bmm(q, k), dim=-1)  # (B,HW,HW)
        v = self.value(x).view(b, -1, h * w)  # (B,C,HW)
        out = torch.bmm(v, att.permute(0, 2, 1)).view(b, c, h, w)
        return self.gamma * out + x


class Generator(nn.Module):
    def __init__(self, c=1, h=28, w=28, width=64, slope=0.01, res_slope=0.01):
        super().__init__()
        self.slope = slope
        self.enc0 = nn.Conv2d(c, width, 3)
        self.enc1 = nn.Conv2d(width, 2 * width, 3, stride=2)
        self.enc2 = nn.Conv2d(2 * width, 4 * width, 3, stride=2)
        chans = [4 * width, 8 * width, 8 * width, 8 * width, 4 * width]
        for r in range(4):
            setattr(self, "res%d" % r, ResBlock(chans[r], chans[r + 1], res_slope))
        self.dec0 = nn.ConvTranspose2d(4 * width, 2 * width, 3, stride=2)
        self.att0 = SelfAttention(2 * width)
        self.dec1 = nn.ConvTranspose2d(2 * width, width, 3, stride=2)
        self.att1 = SelfAttention(width)
        hh, ww = h - 2, w - 2
        for _ in range(2):
            hh, ww = (hh - 3) // 2 + 1, (ww - 3) // 2 + 1
        for _ in range(2):
            hh, ww = 2 * (hh - 1) + 3, 2 * (ww - 1) + 3
        self.dec2 = nn.ConvTranspose2d(width, c, (h - hh + 1, w - ww + 1))
        self.reset()

    def reset(self):
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def _in_act(self, x):
        return F.leaky_relu(F.instance_norm(x, eps=1e-5), self.slope)

    def forward(self, x):
        x = self._in_act(self.enc0(x))
        x = self._in_act(self.enc1(x))
        x = self._in_act(self.enc2(x))
        for r in range(4):
            x = getattr(self, "res%d" % r)(x)
        x = self.att0(self._in_act(self.dec0(x)))
        x = self.att1(self._in_act(self.dec1(x)))
        return torch.tanh(self.dec2(x))


MAX_RUNS = 100
WARMUP_S = 0.3  # as bench_generator.c: let the previous case's threads settle


def median_ms(fn, warmup, min_reps, budget_s):
    w_end = time.perf_counter() + WARMUP_S
    i = 0
    while i < warmup or time.perf_counter() < w_end:
        fn()
        i += 1
    times = []
    t_end = time.perf_counter() + budget_s
    while len(times) < min_reps or (time.perf_counter() < t_end and len(times) < MAX_RUNS):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), len(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--c", type=int, default=1)
    ap.add_argument("--h", type=int, default=28)
    ap.add_argument("--w", type=int, default=28)
    ap.add_argument("--widths", default="64,16")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5, help="at least this many timed runs")
    ap.add_argument("--budget", type=float, default=3.0, help="seconds per case beyond --reps")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results = []
    for width in [int(s) for s in args.widths.split(",")]:
        g = Generator(args.c, args.h, args.w, width)
        nparams = sum(p.numel() for p in g.parameters())
        x1 = torch.rand(1, args.c, args.h, args.w)
        xb = torch.rand(args.batch, args.c, args.h, args.w)
        g.eval()
        for name, x in (("fwd b1", x1), ("fwd b%d" % args.batch, xb)):
            with torch.no_grad():
                ms, reps = median_ms(lambda: g(x), args.warmup, args.reps, args.budget)
            results.append({"case": "w%d %s" % (width, name), "ms": ms, "reps": reps,
                            "params": nparams})
        g.train()
        opt = torch.optim.Adam(g.parameters(), lr=1e-4)

        def step():
            opt.zero_grad(set_to_none=False)
            out = g(xb)
            loss = (out * out).mean()
            loss.backward()
            opt.step()

        ms, reps = median_ms(step, args.warmup, args.reps, args.budget)
        results.append({"case": "w%d train b%d" % (width, args.batch), "ms": ms, "reps": reps,
                        "params": nparams})
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                      "results": results}))


if __name__ == "__main__":
    main()
