"""Writer for DPGF golden fixtures (DeepPerform golden format), read by tests/nn/golden.c.

Layout, all little-endian:
    magic    4 bytes  b"DPGF"
    version  u32      1
    count    u32      number of tensors
    per tensor:
        name_len u16, name bytes (ASCII, no NUL)
        dtype    u8   0 = float32, 1 = int32
        ndim     u8   0..8
        dims     u32 * ndim
        data     prod(dims) elements, raw little-endian
Only torch and struct are used, so the writer runs wherever the reference does.
"""
import struct

import torch

MAGIC = b"DPGF"
VERSION = 1
DTYPE_F32 = 0
DTYPE_I32 = 1
MAX_DIMS = 8


def _encode(name, t):
    if not isinstance(t, torch.Tensor):
        t = torch.tensor(t)
    t = t.detach().cpu().contiguous()
    if t.dtype.is_floating_point:
        t, dtype, fmt = t.to(torch.float32), DTYPE_F32, "f"
    elif t.dtype in (torch.int32, torch.int64, torch.int16, torch.int8, torch.uint8, torch.bool):
        t, dtype, fmt = t.to(torch.int32), DTYPE_I32, "i"
    else:
        raise TypeError(f"{name}: unsupported dtype {t.dtype}")
    if t.dim() > MAX_DIMS:
        raise ValueError(f"{name}: {t.dim()} dims > {MAX_DIMS}")
    nb = name.encode("ascii")
    if not 0 < len(nb) < 65536:
        raise ValueError(f"bad name {name!r}")
    head = struct.pack("<H", len(nb)) + nb + struct.pack("<BB", dtype, t.dim())
    head += struct.pack(f"<{t.dim()}I", *t.shape)
    vals = t.flatten().tolist()
    return head + struct.pack(f"<{len(vals)}{fmt}", *vals)


def write(path, tensors):
    """tensors: dict name -> tensor (or nested list / number), in insertion order."""
    body = b"".join(_encode(k, v) for k, v in tensors.items())
    with open(path, "wb") as f:
        f.write(MAGIC + struct.pack("<II", VERSION, len(tensors)) + body)


def read(path):
    """Inverse of write(), for checking a fixture from Python."""
    with open(path, "rb") as f:
        buf = f.read()
    assert buf[:4] == MAGIC, "bad magic"
    version, count = struct.unpack_from("<II", buf, 4)
    assert version == VERSION, f"version {version}"
    off, out = 12, {}
    for _ in range(count):
        (nl,) = struct.unpack_from("<H", buf, off)
        off += 2
        name = buf[off:off + nl].decode("ascii")
        off += nl
        dtype, ndim = struct.unpack_from("<BB", buf, off)
        off += 2
        dims = struct.unpack_from(f"<{ndim}I", buf, off)
        off += 4 * ndim
        n = 1
        for d in dims:
            n *= d
        fmt = "f" if dtype == DTYPE_F32 else "i"
        vals = struct.unpack_from(f"<{n}{fmt}", buf, off)
        off += 4 * n
        t = torch.tensor(vals, dtype=torch.float32 if dtype == DTYPE_F32 else torch.int32)
        out[name] = t.reshape(dims)
    assert off == len(buf), "trailing bytes"
    return out
