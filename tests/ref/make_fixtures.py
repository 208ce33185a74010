"""Generate the PyTorch golden fixtures compared against by tests/nn/test_golden.c.

    /usr/bin/python3 tests/ref/make_fixtures.py --out tests/fixtures/golden

Each case seeds torch with its own fixed seed, runs float32 on the CPU, and writes
one DPGF file (see golden.py) holding the inputs, parameters, forward outputs, a
fixed upstream gradient (or a scalar loss) and every gradient. Integer settings of
a case (shapes, stride, ...) are stored in an int32 tensor "meta" so the C test
reads them from the fixture; tests/ref/README.md lists the layout of each meta.
"""
import argparse
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden  # noqa: E402

CASES = {}


def case(name, seed):
    def deco(fn):
        CASES[name] = (seed, fn)
        return fn
    return deco


def leaf(*shape, scale=1.0):
    return (torch.randn(*shape) * scale).requires_grad_(True)


# ---------------------------------------------------------------- convolution

def conv_case(n, cin, h, w, cout, k, stride, pad, groups, bias=True):
    x = leaf(n, cin, h, w)
    wt = leaf(cout, cin // groups, k, k, scale=0.3)
    b = leaf(cout) if bias else None
    y = F.conv2d(x, wt, b, stride=stride, padding=pad, groups=groups)
    dy = torch.randn_like(y)
    y.backward(dy)
    d = {"meta": [n, cin, h, w, cout, k, stride, pad, groups, int(bias)],
         "x": x, "w": wt}
    if bias:
        d["b"] = b
    d.update({"y": y, "dy": dy, "dx": x.grad, "dw": wt.grad})
    if bias:
        d["db"] = b.grad
    return d


CONV = {  # name: (n, cin, h, w, cout, k, stride, pad, groups, bias)
    "conv_g1_s1_p1": (1, 3, 7, 7, 4, 3, 1, 1, 1, True),
    "conv_s2_p0": (1, 3, 9, 9, 5, 3, 2, 0, 1, True),
    "conv_g2": (1, 4, 6, 6, 6, 3, 1, 1, 2, True),
    "conv_depthwise": (1, 4, 6, 6, 4, 3, 1, 1, 4, True),
    "conv_1x1": (1, 6, 5, 5, 3, 1, 1, 0, 1, True),
    "conv_batch2": (2, 3, 6, 5, 4, 3, 1, 1, 1, True),
    "conv_k4_s2_p1_nobias": (2, 3, 8, 8, 5, 4, 2, 1, 1, False),
    "conv_1x1_batch3": (3, 6, 4, 5, 3, 1, 1, 0, 1, True),
    "conv_1x1_s2": (2, 4, 6, 6, 8, 1, 2, 0, 1, False),
}
for i, (nm, args) in enumerate(CONV.items()):
    case(nm, 100 + i)(lambda a=args: conv_case(*a))


def convt_case(n, cin, h, w, cout, k, stride, pad, out_pad, groups):
    x = leaf(n, cin, h, w)
    wt = leaf(cin, cout // groups, k, k, scale=0.3)
    b = leaf(cout)
    y = F.conv_transpose2d(x, wt, b, stride=stride, padding=pad, output_padding=out_pad,
                           groups=groups)
    dy = torch.randn_like(y)
    y.backward(dy)
    return {"meta": [n, cin, h, w, cout, k, stride, pad, out_pad, groups],
            "x": x, "w": wt, "b": b, "y": y, "dy": dy,
            "dx": x.grad, "dw": wt.grad, "db": b.grad}


CONVT = {  # name: (n, cin, h, w, cout, k, stride, pad, out_pad, groups)
    "convt_k3_s2_p0": (1, 4, 4, 4, 3, 3, 2, 0, 0, 1),
    "convt_k6_s1": (1, 3, 5, 5, 2, 6, 1, 0, 0, 1),
    "convt_k3_s2_p1_op1": (2, 4, 4, 3, 3, 3, 2, 1, 1, 1),
    "convt_g2": (1, 4, 3, 3, 4, 3, 2, 0, 0, 2),
}
for i, (nm, args) in enumerate(CONVT.items()):
    case(nm, 200 + i)(lambda a=args: convt_case(*a))


@case("reflpad", 250)
def _reflpad():
    n, c, h, w, p = 2, 2, 4, 5, 2
    x = leaf(n, c, h, w)
    y = F.pad(x, (p, p, p, p), mode="reflect")
    dy = torch.randn_like(y)
    y.backward(dy)
    return {"meta": [n, c, h, w, p], "x": x, "y": y, "dy": dy, "dx": x.grad}


# ---------------------------------------------------------------- normalisation

@case("bn_train", 300)
def _bn_train():
    n, c, h, w = 2, 3, 4, 5
    bn = nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)
    with torch.no_grad():
        bn.weight.copy_(1 + 0.3 * torch.randn(c))
        bn.bias.copy_(0.3 * torch.randn(c))
        bn.running_mean.copy_(0.5 * torch.randn(c))
        bn.running_var.copy_(torch.rand(c) + 0.5)
    rm0, rv0 = bn.running_mean.clone(), bn.running_var.clone()
    x = (torch.randn(n, c, h, w) * 2 + 0.5).requires_grad_(True)
    bn.train()
    y = bn(x)
    dy = torch.randn_like(y)
    y.backward(dy)
    xd = x.detach()
    mean = xd.mean(dim=(0, 2, 3))
    rstd = 1 / torch.sqrt(xd.var(dim=(0, 2, 3), unbiased=False) + 1e-5)
    return {"meta": [n, c, h, w], "x": x, "gamma": bn.weight, "beta": bn.bias,
            "running_mean0": rm0, "running_var0": rv0, "y": y, "mean": mean, "rstd": rstd,
            "running_mean": bn.running_mean, "running_var": bn.running_var, "dy": dy,
            "dx": x.grad, "dgamma": bn.weight.grad, "dbeta": bn.bias.grad}


@case("bn_eval", 301)
def _bn_eval():
    n, c, h, w = 2, 3, 4, 5
    bn = nn.BatchNorm2d(c, eps=1e-5)
    with torch.no_grad():
        bn.weight.copy_(1 + 0.3 * torch.randn(c))
        bn.bias.copy_(0.3 * torch.randn(c))
        bn.running_mean.copy_(0.5 * torch.randn(c))
        bn.running_var.copy_(torch.rand(c) + 0.5)
    bn.eval()
    x = torch.randn(n, c, h, w)
    with torch.no_grad():
        y = bn(x)
    return {"meta": [n, c, h, w], "x": x, "gamma": bn.weight, "beta": bn.bias,
            "running_mean": bn.running_mean, "running_var": bn.running_var, "y": y}


@case("instnorm", 310)
def _instnorm():
    n, c, h, w = 2, 3, 5, 4
    x = (torch.randn(n, c, h, w) * 1.5 - 0.3).requires_grad_(True)
    y = F.instance_norm(x, eps=1e-5)
    dy = torch.randn_like(y)
    y.backward(dy)
    return {"meta": [n, c, h, w], "x": x, "y": y, "dy": dy, "dx": x.grad}


# ---------------------------------------------------------------- LSTM

def lstm_params(cell):
    return {"w_ih": cell.weight_ih, "w_hh": cell.weight_hh,
            "b_ih": cell.bias_ih, "b_hh": cell.bias_hh}


def lstm_grads(cell):
    return {"dw_ih": cell.weight_ih.grad, "dw_hh": cell.weight_hh.grad,
            "db_ih": cell.bias_ih.grad, "db_hh": cell.bias_hh.grad}


@case("lstm_step", 400)
def _lstm_step():
    n, i, hd = 2, 5, 4
    cell = nn.LSTMCell(i, hd)
    x, h0, c0 = leaf(n, i), leaf(n, hd), leaf(n, hd)
    h1, c1 = cell(x, (h0, c0))
    dh1, dc1 = torch.randn_like(h1), torch.randn_like(c1)
    torch.autograd.backward([h1, c1], [dh1, dc1])
    d = {"meta": [n, i, hd], "x": x, "h0": h0, "c0": c0}
    d.update(lstm_params(cell))
    d.update({"h1": h1, "c1": c1, "dh1": dh1, "dc1": dc1,
              "dx": x.grad, "dh0": h0.grad, "dc0": c0.grad})
    d.update(lstm_grads(cell))
    return d


@case("lstm_two_steps", 401)
def _lstm_two_steps():
    # Zero initial state (NULL h_prev/c_prev in C); loss = <h1,g1> + <h2,g2> + <c2,gc2>.
    n, i, hd = 2, 3, 4
    cell = nn.LSTMCell(i, hd)
    x1, x2 = leaf(n, i), leaf(n, i)
    h1, c1 = cell(x1)
    h2, c2 = cell(x2, (h1, c1))
    g1, g2, gc2 = torch.randn(n, hd), torch.randn(n, hd), torch.randn(n, hd)
    torch.autograd.backward([h1, h2, c2], [g1, g2, gc2])
    d = {"meta": [n, i, hd], "x1": x1, "x2": x2}
    d.update(lstm_params(cell))
    d.update({"h1": h1, "c1": c1, "h2": h2, "c2": c2, "dh1": g1, "dh2": g2, "dc2": gc2,
              "dx1": x1.grad, "dx2": x2.grad})
    d.update(lstm_grads(cell))
    return d


# ---------------------------------------------------------------- self-attention

class SelfAttention(nn.Module):
    """SAGAN self-attention exactly as core/nn/attention.h describes."""

    def __init__(self, c):
        super().__init__()
        self.q = nn.Conv2d(c, c // 8, 1)
        self.k = nn.Conv2d(c, c // 8, 1)
        self.v = nn.Conv2d(c, c, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        n, c, h, w = x.shape
        q = self.q(x).view(n, -1, h * w).permute(0, 2, 1)  # (N, HW, C8)
        k = self.k(x).view(n, -1, h * w)                   # (N, C8, HW)
        energy = torch.bmm(q, k)                           # (N, HW, HW)
        a = torch.softmax(energy, dim=-1)
        v = self.v(x).view(n, -1, h * w)                   # (N, C, HW)
        out = torch.bmm(v, a.permute(0, 2, 1)).view(n, c, h, w)
        return self.gamma * out + x


def attention_case(n, c, h, w):
    m = SelfAttention(c)
    with torch.no_grad():
        m.gamma.fill_(0.7)
    x = leaf(n, c, h, w)
    y = m(x)
    dy = torch.randn_like(y)
    y.backward(dy)
    c8 = c // 8
    return {"meta": [n, c, h, w], "x": x,
            "wq": m.q.weight.view(c8, c), "bq": m.q.bias,
            "wk": m.k.weight.view(c8, c), "bk": m.k.bias,
            "wv": m.v.weight.view(c, c), "bv": m.v.bias, "gamma": m.gamma,
            "y": y, "dy": dy, "dx": x.grad,
            "dwq": m.q.weight.grad.view(c8, c), "dbq": m.q.bias.grad,
            "dwk": m.k.weight.grad.view(c8, c), "dbk": m.k.bias.grad,
            "dwv": m.v.weight.grad.view(c, c), "dbv": m.v.bias.grad,
            "dgamma": m.gamma.grad}


case("attention_c16", 500)(lambda: attention_case(2, 16, 4, 4))
case("attention_c8_3x5", 501)(lambda: attention_case(1, 8, 3, 5))


# ---------------------------------------------------------------- small layers

@case("linear", 600)
def _linear():
    n, i, o = 3, 5, 4
    x, wt, b = leaf(n, i), leaf(o, i, scale=0.5), leaf(o)
    y = F.linear(x, wt, b)
    dy = torch.randn_like(y)
    y.backward(dy)
    return {"meta": [n, i, o], "x": x, "w": wt, "b": b, "y": y, "dy": dy,
            "dx": x.grad, "dw": wt.grad, "db": b.grad}


@case("act", 610)
def _act():
    # One input, every activation; values kept away from 0 (the ReLU kink).
    x = torch.randn(3, 7)
    x = torch.where(x.abs() < 0.05, torch.full_like(x, 0.3), x) * 2
    # a row of extremes: sigmoid/tanh must saturate without inf/NaN
    x = torch.cat([x, torch.tensor([[-90.0, -40.0, -9.0, 9.0, 40.0, 90.0, -0.5]])])
    dy = torch.randn_like(x)
    d = {"meta": [4, 7], "x": x, "dy": dy}
    fns = {"relu": F.relu, "lrelu": lambda t: F.leaky_relu(t, 0.2),
           "sigmoid": torch.sigmoid, "tanh": torch.tanh}
    for nm, fn in fns.items():
        xi = x.clone().requires_grad_(True)
        y = fn(xi)
        y.backward(dy)
        d["y_" + nm] = y
        d["dx_" + nm] = xi.grad
    return d


@case("softmax", 620)
def _softmax():
    rows, k = 4, 6
    x = leaf(rows, k, scale=3.0)
    y = torch.softmax(x, dim=-1)
    dy = torch.randn_like(y)
    y.backward(dy)
    return {"meta": [rows, k], "x": x, "y": y, "dy": dy, "dx": x.grad}


@case("softmax_big", 621)
def _softmax_big():
    # Logits far outside exp's float range: a naive softmax overflows.
    rows, k = 3, 5
    x = torch.tensor([[100.0, 90.0, 0.0, -100.0, 99.0],
                      [-200.0, -210.0, -199.0, -250.0, -205.0],
                      [1000.0, 0.0, 0.0, 0.0, 0.0]]).requires_grad_(True)
    y = torch.softmax(x, dim=-1)
    dy = torch.randn_like(y)
    y.backward(dy)
    targets = torch.tensor([1, 2, 3])
    lg = x.detach().clone().requires_grad_(True)
    ce = F.cross_entropy(lg, targets)
    ce.backward()
    return {"meta": [rows, k], "x": x, "y": y, "dy": dy, "dx": x.grad,
            "targets": targets, "ce": ce.reshape(1), "dlogits": lg.grad}


@case("losses", 630)
def _losses():
    n, k = 4, 5
    logits = leaf(n, k, scale=2.0)
    targets = torch.randint(0, k, (n,))
    ce = F.cross_entropy(logits, targets)
    ce.backward()
    p = torch.sigmoid(torch.randn(2, 7)).requires_grad_(True)
    t = torch.rand(2, 7)
    bce = F.binary_cross_entropy(p, t)
    bce.backward()
    # BCE at p = 0 and 1 exactly: log is clamped at -100 (forward only; the
    # gradient there is implementation-defined)
    pe = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.5])
    te = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.3])
    bce_edge = F.binary_cross_entropy(pe, te)
    xm, tm = leaf(3, 4), torch.randn(3, 4)
    mse = F.mse_loss(xm, tm)
    mse.backward()
    return {"meta": [n, k, 14, 12], "logits": logits, "targets": targets,
            "ce": ce.reshape(1), "probs": torch.softmax(logits.detach(), -1),
            "dlogits": logits.grad,
            "bce_p": p, "bce_t": t, "bce": bce.reshape(1), "bce_dp": p.grad,
            "bce_edge_p": pe, "bce_edge_t": te, "bce_edge": bce_edge.reshape(1),
            "mse_x": xm, "mse_t": tm, "mse": mse.reshape(1), "mse_dx": xm.grad}


def pool_grad(fn, x, dy):
    xi = x.clone().requires_grad_(True)
    y = fn(xi)
    y.backward(dy)
    return y, xi.grad


@case("pool", 640)
def _pool():
    n, c, h, w = 2, 3, 7, 6
    x = torch.randn(n, c, h, w)
    d = {"meta": [n, c, h, w], "x": x}
    ops = {  # name: fn   (meta for the C side is fixed in the test: see README)
        "max_k2_s2": lambda t: F.max_pool2d(t, 2, 2),
        "max_k3_s2_p1": lambda t: F.max_pool2d(t, 3, 2, 1),
        "avg_k2_s2": lambda t: F.avg_pool2d(t, 2, 2),
        "avg_k3_s2_p1": lambda t: F.avg_pool2d(t, 3, 2, 1, count_include_pad=True),
        "gap": lambda t: t.mean(dim=(2, 3)),
        "amax_3x4": lambda t: F.adaptive_max_pool2d(t, (3, 4)),
        "aavg_3x4": lambda t: F.adaptive_avg_pool2d(t, (3, 4)),
    }
    for nm, fn in ops.items():
        with torch.no_grad():
            shape = fn(x).shape
        dy = torch.randn(shape)
        y, dx = pool_grad(fn, x, dy)
        d["y_" + nm], d["dy_" + nm], d["dx_" + nm] = y, dy, dx
    return d


@case("adam", 650)
def _adam():
    # Three steps with fixed gradients g1..g3, lr 1e-2, weight decay 0.1.
    p = torch.randn(10).requires_grad_(True)
    p0 = p.detach().clone()
    opt = torch.optim.Adam([p], lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    gs = [torch.randn(10) for _ in range(3)]
    for g in gs:
        p.grad = g.clone()
        opt.step()
    return {"meta": [10, 3], "p0": p0, "g1": gs[0], "g2": gs[1], "g3": gs[2], "p3": p}


# ---------------------------------------------------------------- composite network

class Net(nn.Module):
    """conv3x3(1->4,p1,no bias: BN follows, and a bias there has a zero gradient that
    Adam would turn into +-lr steps of rounding noise) -> BN -> ReLU -> maxpool2 -> conv3x3(4->8,s2,p1) -> LeakyReLU(0.2)
    -> flatten -> linear(32->3); cross-entropy on fixed labels. Input (4,1,8,8)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 8, 3, stride=2, padding=1)
        self.fc = nn.Linear(32, 3)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.bn(self.conv1(x))), 2)
        h = F.leaky_relu(self.conv2(h), 0.2)
        return self.fc(h.flatten(1))


@case("net", 700)
def _net():
    n = 4
    net = Net()
    with torch.no_grad():
        net.bn.weight.copy_(1 + 0.1 * torch.randn(4))
        net.bn.bias.copy_(0.1 * torch.randn(4))
    x = torch.randn(n, 1, 8, 8)
    labels = torch.tensor([0, 2, 1, 2])
    names = ["conv1.weight", "bn.weight", "bn.bias",
             "conv2.weight", "conv2.bias", "fc.weight", "fc.bias"]
    params = dict(net.named_parameters())
    d = {"meta": [n, 3], "x": x, "labels": labels}
    for nm in names:
        d[nm] = params[nm].detach().clone()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for step in range(3):
        opt.zero_grad()
        xi = x.clone().requires_grad_(step == 0)
        logits = net.train()(xi)
        loss = F.cross_entropy(logits, labels)
        loss.backward()
        losses.append(loss.item())
        if step == 0:
            d["logits"] = logits
            d["loss"] = loss.reshape(1)
            d["dx"] = xi.grad
            for nm in names:
                d["d" + nm] = params[nm].grad.clone()
        opt.step()
    d["losses"] = torch.tensor(losses)
    for nm in names:
        d["final." + nm] = params[nm].detach().clone()
    d["final.bn.running_mean"] = net.bn.running_mean
    d["final.bn.running_var"] = net.bn.running_var
    return d


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output folder (tests/fixtures/golden)")
    ap.add_argument("--only", nargs="*", help="case names to regenerate")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_default_dtype(torch.float32)
    torch.set_num_threads(1)
    total = 0
    for name, (seed, fn) in CASES.items():
        if args.only and name not in args.only:
            continue
        torch.manual_seed(seed)
        d = fn()
        path = os.path.join(args.out, name + ".bin")
        golden.write(path, d)
        back = golden.read(path)
        assert list(back) == list(d), name
        size = os.path.getsize(path)
        total += size
        print(f"{name:24s} {len(d):3d} tensors {size:7d} bytes")
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()
