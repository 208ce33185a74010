"""PyTorch mirrors of the adaptive model zoo (core/adnn), for cross-checking.

Each family is a torch.nn.Module built from the same architecture as the C
code (the dp.v1.ModelSpec in MODEL.pb, decoded here with a small protobuf wire
reader, since Debian's python has no protobuf package), whose state-dict names
are exactly the safetensors names the C code writes, so `load_model(prefix)`
reads MODEL.pb + MODEL.safetensors and refuses any missing, extra or
mis-shaped tensor.

Per family, batch size 1, inference mode (BatchNorm running statistics):
- `adaptive(x)`: the real adaptive forward with Python control flow (an exit
  that fires stops the network, a skipped block is not run); returns a dict
  with pred, exit_taken, ran (per block), conf (per exit, 0 if not reached),
  logits (one row per exit reached, the final classifier last if reached);
- `all_logits(x)`: every exit's logits (E+1, K), every block run;
- `pk(x)`: the spend-more probabilities p_k (docs/ZOO.md),
  differentiable with respect to x.
FLOPs in the reference convention (docs/ZOO.md, FLOPs conventions) are
counted by `FlopCounter` with forward hooks on every Conv2d and Linear that
actually runs, independently of the C formulas.
"""
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F

import safetensors_io

BN_EPS = 1e-5

FAMILY_SKIPNET, FAMILY_BLOCKDROP, FAMILY_SDN_RESNET, FAMILY_SDN_MOBILENET, FAMILY_RANET = 1, 2, 3, 4, 5
FAMILY_NAMES = {1: "skipnet", 2: "blockdrop", 3: "sdn-resnet", 4: "sdn-mobilenet", 5: "ranet"}

# ---------------------------------------------------------------- ModelSpec

# field number -> (name, kind, repeated); kinds: u (varint), f (float32), s (string), m (message)
_SPEC_FIELDS = {
    1: ("family", "u", False), 2: ("input", "m", False), 3: ("num_classes", "u", False),
    4: ("stem_width", "u", False), 5: ("widths", "u", True), 6: ("blocks", "u", True),
    7: ("strides", "u", True), 8: ("gate_kind", "u", False), 9: ("gate_dim", "u", False),
    10: ("exit_after", "u", True), 11: ("exit_tau", "f", False), 12: ("exit_pool", "u", False),
    13: ("gate_threshold", "f", False), 14: ("policy_width", "u", False),
    15: ("scales", "u", False), 16: ("exit_weights", "f", True), 17: ("name", "s", False),
    18: ("seed", "u", False),
}
_INPUT_FIELDS = {1: ("c", "u", False), 2: ("h", "u", False), 3: ("w", "u", False)}


def _varint(buf, off):
    v, shift = 0, 0
    while True:
        b = buf[off]
        off += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v, off


def _decode(buf, fields):
    out, off = {}, 0
    for name, kind, rep in fields.values():
        out[name] = [] if rep else None
    while off < len(buf):
        key, off = _varint(buf, off)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, off = _varint(buf, off)
            vals = [val]
        elif wt == 5:
            vals = [struct.unpack_from("<f", buf, off)[0]]
            off += 4
        elif wt == 1:
            vals = [struct.unpack_from("<Q", buf, off)[0]]
            off += 8
        elif wt == 2:
            n, off = _varint(buf, off)
            raw = buf[off:off + n]
            off += n
            if num not in fields:
                continue
            kind = fields[num][1]
            if kind == "s":
                vals = [raw.decode()]
            elif kind == "m":
                vals = [raw]
            elif kind == "f":  # packed floats
                vals = list(struct.unpack(f"<{n // 4}f", raw))
            else:  # packed varints
                vals, o = [], 0
                while o < n:
                    v, o = _varint(raw, o)
                    vals.append(v)
        else:
            raise ValueError(f"ModelSpec: wire type {wt} of field {num}")
        if num not in fields:
            continue
        name, kind, rep = fields[num]
        if rep:
            out[name].extend(vals)
        else:
            out[name] = vals[-1]
    return out


def read_spec(path):
    """dp.v1.ModelSpec -> dict, with the defaults of adnn_spec_decode (core/adnn/spec.c)."""
    with open(path, "rb") as f:
        s = _decode(f.read(), _SPEC_FIELDS)
    inp = _decode(s.pop("input") or b"", _INPUT_FIELDS)
    s.update({k: inp[k] or 0 for k in ("c", "h", "w")})
    for k in ("family", "num_classes", "stem_width", "gate_kind", "gate_dim", "exit_pool",
              "policy_width", "scales", "seed"):
        s[k] = s[k] or 0
    s["exit_tau"] = s["exit_tau"] or 0.0
    n = len(s["widths"])
    if not s["strides"]:
        s["strides"] = [1 if i == 0 else 2 for i in range(n)]
    s["stem_width"] = s["stem_width"] or s["widths"][0]
    s["gate_dim"] = s["gate_dim"] or 10
    s["exit_pool"] = s["exit_pool"] or 4
    s["gate_threshold"] = s["gate_threshold"] or 0.5
    if not s["exit_weights"]:
        s["exit_weights"] = [1.0] * (len(s["exit_after"]) + 1)
    s["name"] = s["name"] or ""
    return s


def _enc_varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def encode_spec(spec):
    """dict (as read_spec returns) -> dp.v1.ModelSpec bytes, for synthetic test
    models (e.g. a gate kind no shipped model uses)."""
    def key(num, wt):
        return _enc_varint(num << 3 | wt)

    def ld(num, raw):
        return key(num, 2) + _enc_varint(len(raw)) + raw

    inp = b"".join(key(i, 0) + _enc_varint(spec[k]) for i, k in ((1, "c"), (2, "h"), (3, "w")))
    out = key(1, 0) + _enc_varint(spec["family"]) + ld(2, inp)
    for name, (num, kind, rep) in ((v[0], (k, v[1], v[2])) for k, v in _SPEC_FIELDS.items()):
        if name in ("family", "input") or name not in spec:
            continue
        val = spec[name]
        if rep:
            if kind == "f":
                raw = struct.pack(f"<{len(val)}f", *val)
            else:
                raw = b"".join(_enc_varint(v) for v in val)
            out += ld(num, raw) if val else b""
        elif kind == "f":
            out += key(num, 5) + struct.pack("<f", val)
        elif kind == "s":
            out += ld(num, val.encode())
        else:
            out += key(num, 0) + _enc_varint(val)
    return out


# ---------------------------------------------------------------- FLOPs

class FlopCounter:
    """Reference-convention FLOPs (docs/ZOO.md, FLOPs conventions) of whatever runs
    inside the `with` block: conv 2*Cin*Cout*kh*kw*Hout*Wout (NOT divided by
    groups), linear 2*in*out, an LSTM step as its two linears; BN,
    activations and pooling ignored."""

    def __init__(self, model):
        self.model, self.flops, self.handles = model, 0, []

    def _conv(self, mod, inp, out):
        kh, kw = mod.kernel_size
        self.flops += 2 * mod.in_channels * mod.out_channels * kh * kw * out.shape[2] * out.shape[3]

    def _linear(self, mod, inp, out):
        self.flops += 2 * mod.in_features * mod.out_features * (out.numel() // mod.out_features)

    def _lstm(self, mod, inp, out):
        # two linears per step (input and hidden, 4*hidden outputs each), as
        # the reference counts a gate's LSTM; a zero initial state still counts
        steps = inp[0].shape[0]
        self.flops += steps * 2 * 4 * mod.hidden_size * (mod.input_size + mod.hidden_size)

    def __enter__(self):
        for mod in self.model.modules():
            if isinstance(mod, nn.LSTM):
                self.handles.append(mod.register_forward_hook(self._lstm))
            elif isinstance(mod, nn.Conv2d):
                self.handles.append(mod.register_forward_hook(self._conv))
            elif isinstance(mod, nn.Linear):
                self.handles.append(mod.register_forward_hook(self._linear))
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        self.handles = []


# ---------------------------------------------------------------- building blocks

class CBN(nn.Module):
    """conv (no bias) + BatchNorm (+ ReLU): adnn_cbn_t."""

    def __init__(self, cin, cout, k, stride, pad, groups=1, relu=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, pad, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.relu = relu

    def forward(self, x):
        y = self.bn(self.conv(x))
        return F.relu(y) if self.relu else y


class Basic(nn.Module):
    """relu(c2(c1(x)) + shortcut(x)); shortcut is 1x1 conv + BN when the shape changes."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = CBN(cin, cout, 3, stride, 1)
        self.c2 = CBN(cout, cout, 3, 1, 1, relu=False)
        self.sc = CBN(cin, cout, 1, stride, 0, relu=False) if stride != 1 or cin != cout else None

    def forward(self, x):
        return F.relu(self.c2(self.c1(x)) + (self.sc(x) if self.sc is not None else x))


class SdnHead(nn.Module):
    """s*adaptive_max(P) + (1-s)*adaptive_avg(P), s = sigmoid(alpha), then linear."""

    def __init__(self, c, p, k):
        super().__init__()
        self.p = p
        self.alpha = nn.Parameter(torch.zeros(1))
        self.fc = nn.Linear(c * p * p, k)

    def forward(self, x):
        s = torch.sigmoid(self.alpha)
        mix = s * F.adaptive_max_pool2d(x, self.p) + (1 - s) * F.adaptive_avg_pool2d(x, self.p)
        return self.fc(mix.flatten(1))


class GapHead(nn.Module):
    def __init__(self, c, k):
        super().__init__()
        self.fc = nn.Linear(c, k)

    def forward(self, x):
        return self.fc(x.mean(dim=(2, 3)))


def confidence(z):
    """max softmax of logits z (K,) and its argmax, in float64 like adnn_confidence."""
    c, b = torch.softmax(z.detach().double(), 0).max(0)
    return float(c), int(b)


def one_minus_conf(z):
    """1 - max softmax without cancellation: rest / (1 + rest), differentiable, float64."""
    zd = z.double()
    b = int(torch.argmax(zd.detach()))
    e = torch.exp(zd - zd[b])
    rest = e.sum() - e[b]
    return torch.clamp(rest / (1.0 + rest), min=1e-30)


# ---------------------------------------------------------------- families

class EarlyExit(nn.Module):
    """Shared adaptive/p_k logic of the early-exit families (SDN, RANet).
    Subclasses provide `begin(x)` -> state, `run_block(b, state)` -> state,
    `exit_logits(k, state)`, `final_logits(state)`, and the attributes
    nblocks, nexits, exit_of_block {block: internal exit}, tau."""

    def adaptive(self, x):
        E = self.nexits
        conf = [0.0] * (E + 1)
        ran, logits = [0] * self.nblocks, []
        h = self.begin(x)
        for b in range(self.nblocks):
            h = self.run_block(b, h)
            ran[b] = 1
            k = self.exit_of_block.get(b)
            if k is None:
                continue
            z = self.exit_logits(k, h)[0]
            logits.append(z)
            conf[k], arg = confidence(z)
            if conf[k] >= self.tau:
                return dict(pred=arg, exit_taken=k, ran=ran, conf=conf, logits=logits)
        z = self.final_logits(h)[0]
        logits.append(z)
        conf[E], arg = confidence(z)
        return dict(pred=arg, exit_taken=E, ran=ran, conf=conf, logits=logits)

    def all_logits(self, x):
        """(nexits+1, K): every exit, every block run (adnn_eval_batch)."""
        out = [None] * (self.nexits + 1)
        h = self.begin(x)
        for b in range(self.nblocks):
            h = self.run_block(b, h)
            k = self.exit_of_block.get(b)
            if k is not None:
                out[k] = self.exit_logits(k, h)[0]
        out[self.nexits] = self.final_logits(h)[0]
        return torch.stack(out)

    def pk_count(self):
        return self.nexits

    def pk(self, x):
        """p_k = 1 - c_k up to and including the exit taken, 1 after (internal exits only)."""
        z = self.all_logits(x)
        p, taken = [], self.nexits
        for k in range(self.nexits):
            if k > taken:
                p.append(torch.ones((), dtype=torch.float64))
                continue
            p.append(one_minus_conf(z[k]))
            if confidence(z[k])[0] >= self.tau:
                taken = k
        return torch.stack(p)

    def margins(self, x):
        """|c_k - tau| of every exit the adaptive forward decides on."""
        r = self.adaptive(x)
        return [abs(r["conf"][k] - self.tau) for k in range(min(r["exit_taken"] + 1, self.nexits))]


class SdnBase(EarlyExit):
    """SDN wiring shared by both backbones: stem, blocks, an SDN head after each
    block of spec.exit_after, GAP + linear final classifier."""

    def _finish(self, spec, blocks, chans, c):
        self.blocks = nn.ModuleList(blocks)
        self.nblocks = len(blocks)
        K, P = spec["num_classes"], spec["exit_pool"]
        self.exits = nn.ModuleList(SdnHead(chans[b], P, K) for b in spec["exit_after"])
        self.exit_of_block = {b: k for k, b in enumerate(spec["exit_after"])}
        self.fc = GapHead(c, K)
        self.nexits = len(spec["exit_after"])
        self.tau = spec["exit_tau"]

    def begin(self, x):
        return self.stem(x)

    def run_block(self, b, h):
        return self.blocks[b](h)

    def exit_logits(self, k, h):
        return self.exits[k](h)

    def final_logits(self, h):
        return self.fc(h)


class SdnResNet(SdnBase):
    """core/adnn/sdn_resnet.c: conv3x3 stem + BN + ReLU, stages of basic blocks
    (the first block of a stage has the stage stride)."""

    def __init__(self, spec):
        super().__init__()
        c = spec["stem_width"]
        self.stem = CBN(spec["c"], c, 3, 1, 1)
        blocks, chans = [], []
        for wd, nb, sd in zip(spec["widths"], spec["blocks"], spec["strides"]):
            for b in range(nb):
                blocks.append(Basic(c, wd, sd if b == 0 else 1))
                c = wd
                chans.append(c)
        self._finish(spec, blocks, chans, c)


class DepthwiseSeparable(nn.Module):
    """MobileNet v1 block: depthwise conv3x3 + BN + ReLU, pointwise 1x1 + BN + ReLU."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.dw = CBN(cin, cin, 3, stride, 1, groups=cin)
        self.pw = CBN(cin, cout, 1, 1, 0)

    def forward(self, x):
        return self.pw(self.dw(x))


class SdnMobileNet(SdnBase):
    """core/adnn/sdn_mobilenet.c: conv3x3 stem, depthwise-separable blocks."""

    def __init__(self, spec):
        super().__init__()
        c = spec["stem_width"]
        self.stem = CBN(spec["c"], c, 3, 1, 1)
        blocks, chans = [], []
        for wd, nb, sd in zip(spec["widths"], spec["blocks"], spec["strides"]):
            for b in range(nb):
                blocks.append(DepthwiseSeparable(c, wd, sd if b == 0 else 1))
                c = wd
                chans.append(c)
        self._finish(spec, blocks, chans, c)


RANET_HEAD_WIDTH = 32


class RanetHead(nn.Module):
    """2 x (conv3x3 s2 -> 32, BN, ReLU), global average pool, linear."""

    def __init__(self, c, k):
        super().__init__()
        self.c1 = CBN(c, RANET_HEAD_WIDTH, 3, 2, 1)
        self.c2 = CBN(RANET_HEAD_WIDTH, RANET_HEAD_WIDTH, 3, 2, 1)
        self.fc = GapHead(RANET_HEAD_WIDTH, k)

    def forward(self, x):
        return self.fc(self.c2(self.c1(x)))


def upsample_nearest(x, size):
    """PyTorch 'nearest' with the integer rule src = dst * in // out (core/adnn/ranet.c)."""
    idx = torch.arange(size) * x.shape[2] // size
    return x[:, :, idx][:, :, :, idx]


class Ranet(EarlyExit):
    """core/adnn/ranet.c: a cascade of conv3x3 (stride strides[s]) + BN + ReLU
    giving base features at every scale (finest first); then one flow of dense
    layers per scale, COARSEST first; layer i of flow s:
        new = relu(bn(conv3x3(cat(own_{i-1}, up(own of layer min(i, blocks[s-1]-1)
                                                of flow s-1)))))
        own_i = cat(own_{i-1}, new);
    RANet heads after spec.exit_after and ("final") after the last layer."""

    def __init__(self, spec):
        super().__init__()
        S, C0 = len(spec["widths"]), spec["stem_width"]
        self.S = S
        base, res = [None] * S, [0] * S
        h, cin = spec["h"], spec["c"]
        for sc in range(S - 1, -1, -1):
            base[sc] = CBN(cin, C0, 3, spec["strides"][sc], 1)
            h = res[sc] = (h + 2 - 3) // spec["strides"][sc] + 1
            cin = C0
        self.base = nn.ModuleList(base)
        layers, self.meta, first = [], [], []
        for sc in range(S):
            first.append(len(layers))
            g = spec["widths"][sc]
            for i in range(spec["blocks"][sc]):
                cprev = C0 + i * g
                src, cup = -1, 0
                if sc > 0:
                    j = min(i, spec["blocks"][sc - 1] - 1)
                    src = first[sc - 1] + j
                    cup = self.meta[src]["cown"]
                layers.append(CBN(cprev + cup, g, 3, 1, 1))
                self.meta.append(dict(s=sc, i=i, res=res[sc], src=src, cown=cprev + g))
        self.blocks = nn.ModuleList(layers)
        self.nblocks = len(layers)
        K = spec["num_classes"]
        self.exits = nn.ModuleList(RanetHead(self.meta[b]["cown"], K) for b in spec["exit_after"])
        self.exit_of_block = {b: k for k, b in enumerate(spec["exit_after"])}
        self.final = RanetHead(self.meta[-1]["cown"], K)
        self.nexits = len(spec["exit_after"])
        self.tau = spec["exit_tau"]

    def begin(self, x):
        base, h = [None] * self.S, x
        for sc in range(self.S - 1, -1, -1):
            h = base[sc] = self.base[sc](h)
        return dict(base=base, own=[None] * self.nblocks, last=-1)

    def run_block(self, b, st):
        m = self.meta[b]
        prev = st["base"][m["s"]] if m["i"] == 0 else st["own"][b - 1]
        cat = prev
        if m["src"] >= 0:
            cat = torch.cat([prev, upsample_nearest(st["own"][m["src"]], m["res"])], 1)
        st["own"][b] = torch.cat([prev, self.blocks[b](cat)], 1)
        st["last"] = b
        return st

    def exit_logits(self, k, st):
        return self.exits[k](st["own"][st["last"]])

    def final_logits(self, st):
        return self.final(st["own"][st["last"]])


class BlockDrop(nn.Module):
    """core/adnn/blockdrop.c: the SDN-ResNet backbone without exits, and a
    policy network on the input (conv3x3 s2 at policy_width, 2 basic blocks s2
    doubling the width, GAP, linear to one logit per block). Block k runs iff
    sigmoid(logit_k) >= gate_threshold; a dropped block passes x through, or
    its shortcut projection sc(x) when it downsamples."""

    def __init__(self, spec):
        super().__init__()
        c = spec["stem_width"]
        self.stem = CBN(spec["c"], c, 3, 1, 1)
        blocks = []
        for wd, nb, sd in zip(spec["widths"], spec["blocks"], spec["strides"]):
            for b in range(nb):
                blocks.append(Basic(c, wd, sd if b == 0 else 1))
                c = wd
        self.blocks = nn.ModuleList(blocks)
        self.nblocks = len(blocks)
        self.fc = GapHead(c, spec["num_classes"])
        pw = spec["policy_width"]
        self.policy = nn.Module()
        self.policy.stem = CBN(spec["c"], pw, 3, 2, 1)
        self.policy.blocks = nn.ModuleList([Basic(pw, 2 * pw, 2), Basic(2 * pw, 4 * pw, 2)])
        self.policy.fc = nn.Linear(4 * pw, self.nblocks)
        self.nexits = 0
        self.thr = spec["gate_threshold"]

    def policy_logits(self, x):
        h = self.policy.stem(x)
        for blk in self.policy.blocks:
            h = blk(h)
        return self.policy.fc(h.mean(dim=(2, 3)))[0]

    def adaptive(self, x):
        p = torch.sigmoid(self.policy_logits(x).double())
        run = [int(v >= self.thr) for v in p.tolist()]
        h = self.stem(x)
        for b, blk in enumerate(self.blocks):
            if run[b]:
                h = blk(h)
            elif blk.sc is not None:
                h = blk.sc(h)
        z = self.fc(h)[0]
        c, arg = confidence(z)
        return dict(pred=arg, exit_taken=0, ran=run, conf=[c], logits=[z], p=p)

    def all_logits(self, x):
        """(1, K): the backbone with every block run (adnn_eval_batch)."""
        h = self.stem(x)
        for blk in self.blocks:
            h = blk(h)
        return self.fc(h)

    def pk_count(self):
        return self.nblocks

    def pk(self, x):
        return torch.sigmoid(self.policy_logits(x).double())

    def margins(self, x):
        return [abs(float(v) - self.thr) for v in self.pk(x)]


class SkipNet(nn.Module):
    """core/adnn/skipnet.c: the SDN-ResNet backbone without exits and a gate
    before every block, deciding from the block's input. Recurrent gate
    (gate_kind 1): GAP, 1x1 conv to gate_dim ("gates.k.proj"), one
    LSTM(gate_dim, gate_dim) ("gate.rnn") whose state runs through all gates,
    linear to 1 ("gate.fc"), p = sigmoid. Feed-forward gate (2): conv3x3 s2 +
    BN + ReLU ("gates.k.c"), GAP, 1x1 conv to 2 ("gates.k.fc"), p = softmax's
    "execute" = sigmoid(z1 - z0). Block k runs iff p_k > gate_threshold; a
    skipped block gives x, or sc(x) when it downsamples."""

    def __init__(self, spec):
        super().__init__()
        c, D = spec["stem_width"], spec["gate_dim"]
        self.recurrent = spec["gate_kind"] != 2
        self.stem = CBN(spec["c"], c, 3, 1, 1)
        blocks, gates = [], []
        for wd, nb, sd in zip(spec["widths"], spec["blocks"], spec["strides"]):
            for b in range(nb):
                g = nn.Module()
                if self.recurrent:
                    g.proj = nn.Conv2d(c, D, 1)
                else:
                    g.c = CBN(c, c, 3, 2, 1)
                    g.fc = nn.Conv2d(c, 2, 1)
                gates.append(g)
                blocks.append(Basic(c, wd, sd if b == 0 else 1))
                c = wd
        self.gates = nn.ModuleList(gates)
        self.blocks = nn.ModuleList(blocks)
        if self.recurrent:
            self.gate = nn.Module()
            self.gate.rnn = nn.LSTM(D, D)
            self.gate.fc = nn.Linear(D, 1)
        self.fc = GapHead(c, spec["num_classes"])
        self.nblocks = len(blocks)
        self.nexits = 0
        self.thr = spec["gate_threshold"]

    def gate_logit(self, k, h, state):
        g = self.gates[k]
        if self.recurrent:
            e = g.proj(h.mean(dim=(2, 3), keepdim=True)).flatten(1)  # (1, D)
            out, state = self.gate.rnn(e[None], state)
            return self.gate.fc(out[0])[0, 0], state
        z = g.fc(g.c(h).mean(dim=(2, 3), keepdim=True)).flatten()
        return z[1] - z[0], state

    def path(self, x):
        """The hard path: (logits (K,), gate logits [K], ran [K])."""
        h, state, t, ran = self.stem(x), None, [], []
        for k, blk in enumerate(self.blocks):
            tk, state = self.gate_logit(k, h, state)
            t.append(tk)
            run = bool(torch.sigmoid(tk.detach()) > self.thr)  # float32, like the C gate
            ran.append(int(run))
            if run:
                h = blk(h)
            elif blk.sc is not None:
                h = blk.sc(h)
        return self.fc(h)[0], t, ran

    def adaptive(self, x):
        z, t, ran = self.path(x)
        c, arg = confidence(z)
        return dict(pred=arg, exit_taken=0, ran=ran, conf=[c], logits=[z])

    def all_logits(self, x):
        """(1, K): adnn_eval_batch runs every block but mixes them with the
        hard gates, which is the hard path's output."""
        return self.path(x)[0][None]

    def full(self, x):
        """For the full-network FLOPs: every gate and every block."""
        h, state = self.stem(x), None
        for k, blk in enumerate(self.blocks):
            _, state = self.gate_logit(k, h, state)
            h = blk(h)
        return self.fc(h)

    def pk_count(self):
        return self.nblocks

    def pk(self, x):
        return torch.sigmoid(torch.stack(self.path(x)[1]).double())

    def margins(self, x):
        return [abs(float(torch.sigmoid(t.detach())) - self.thr) for t in self.path(x)[1]]


FAMILIES = {FAMILY_SDN_RESNET: SdnResNet, FAMILY_SDN_MOBILENET: SdnMobileNet,
            FAMILY_RANET: Ranet, FAMILY_BLOCKDROP: BlockDrop, FAMILY_SKIPNET: SkipNet}


# ---------------------------------------------------------------- loading

def state_names(model):
    """name -> tensor of every parameter and buffer the C model has (BatchNorm's
    num_batches_tracked is PyTorch-only)."""
    d = dict(model.named_parameters())
    d.update({k: v for k, v in model.named_buffers() if not k.endswith("num_batches_tracked")})
    return d


def load_model(prefix):
    """MODEL.pb + MODEL.safetensors -> (module in eval mode, spec dict). Every
    tensor must match by name and shape, with none missing or extra."""
    spec = read_spec(prefix + ".pb")
    fam = spec["family"]
    if fam not in FAMILIES:
        raise NotImplementedError(f"{prefix}: family {FAMILY_NAMES.get(fam, fam)} has no PyTorch mirror yet")
    model = FAMILIES[fam](spec)
    tensors, meta = safetensors_io.load(prefix + ".safetensors")
    if meta.get("family") not in (None, FAMILY_NAMES[fam]):
        raise ValueError(f"{prefix}: metadata family {meta.get('family')} != {FAMILY_NAMES[fam]}")
    want = state_names(model)
    missing = sorted(set(want) - set(tensors))
    extra = sorted(set(tensors) - set(want))
    if missing or extra:
        raise ValueError(f"{prefix}: missing tensors {missing[:5]}, unexpected {extra[:5]}")
    with torch.no_grad():
        for name, t in want.items():
            src = tensors[name]
            if tuple(src.shape) != tuple(t.shape) or src.dtype != torch.float32:
                raise ValueError(f"{prefix}: tensor {name} is {src.dtype}{list(src.shape)}, "
                                 f"expected float32{list(t.shape)}")
            t.copy_(src)
    model.eval()
    return model, spec


def param_count(model):
    return sum(p.numel() for p in model.parameters())


def flops_full(model, spec):
    """Reference FLOPs with every block and every exit evaluated."""
    x = torch.zeros(1, spec["c"], spec["h"], spec["w"])
    with torch.no_grad(), FlopCounter(model) as fc:
        if hasattr(model, "full"):  # SkipNet: every gate and block
            model.full(x)
        else:
            model.all_logits(x)
        if hasattr(model, "policy_logits"):  # BlockDrop: the policy always runs
            model.policy_logits(x)
    return fc.flops


def read_idx_images(path, count=None):
    """Fashion-MNIST IDX (gzip) -> float32 (n,1,h,w) in [0,1], like core/data."""
    import gzip
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic, n, h, w = struct.unpack(">IIII", raw[:16])
    assert magic == 0x803, f"{path}: magic {magic:#x}"
    if count is not None:
        n = min(n, count)
    x = torch.frombuffer(bytearray(raw[16:16 + n * h * w]), dtype=torch.uint8)
    return x.reshape(n, 1, h, w).float() / 255.0


def read_idx_labels(path, count=None):
    import gzip
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic, n = struct.unpack(">II", raw[:8])
    assert magic == 0x801, f"{path}: magic {magic:#x}"
    if count is not None:
        n = min(n, count)
    return torch.tensor(list(raw[8:8 + n]), dtype=torch.int32)
