#!/usr/bin/env python3
"""Writes the seed corpora for fuzz_idx and fuzz_cifar (stdlib only).

fuzz_idx input: one split byte b, then images and labels, the images part
being the first (len - 1) * b // 255 bytes. fuzz_cifar input: one byte whose
low bit selects CIFAR-100, then a batch. Run from anywhere; writes next to
this script."""
import gzip
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def idx(magic, dims, data):
    return struct.pack(">I" + "I" * len(dims), magic, *dims) + bytes(data)


def idx_seed(img, lbl):
    rest = len(img) + len(lbl)
    b = next(b for b in range(256) if rest * b // 255 == len(img))
    return bytes([b]) + img + lbl


def write(sub, name, blob):
    os.makedirs(os.path.join(HERE, sub), exist_ok=True)
    with open(os.path.join(HERE, sub, name), "wb") as f:
        f.write(blob)


def main():
    img = idx(0x803, [2, 3, 3], [(i * 37) % 256 for i in range(18)])
    lbl = idx(0x801, [2], [9, 0])
    write("idx", "raw_2x3x3", idx_seed(img, lbl))
    gz = lambda b: gzip.compress(b, mtime=0)
    write("idx", "gz_2x3x3", idx_seed(gz(img), gz(lbl)))
    write("idx", "gz_images_raw_labels", idx_seed(gz(img), lbl))
    img = idx(0x803, [1, 16, 16], [(i * 7) % 256 for i in range(256)])
    write("idx", "raw_1x16x16", idx_seed(img, idx(0x801, [1], [3])))

    rec10 = lambda label, r: bytes([label]) + bytes((r + k) % 256 for k in range(3072))
    write("cifar", "cifar10_2", bytes([0]) + rec10(3, 0) + rec10(9, 1))
    write("cifar", "cifar100_1", bytes([1, 7]) + rec10(42, 5))
    write("cifar", "short", bytes([0]) + rec10(1, 0)[:300])


if __name__ == "__main__":
    main()
