"""A baseline JPEG encoder (grayscale, quantization 1) for the tests: Python has no JPEG writer
without PIL, and kiln predict reads JPEGs."""
import math

import numpy as np


def _bits(v):
    return 0 if v == 0 else int(abs(v)).bit_length()


def _dct_matrix():
    c = np.zeros((8, 8))
    for u in range(8):
        for x in range(8):
            scale = (math.sqrt(0.5) if u == 0 else 1.0) / 2
            c[u, x] = scale * math.cos((2 * x + 1) * u * math.pi / 16)
    return c


ZIGZAG = sorted(((y, x) for y in range(8) for x in range(8)),
                key=lambda p: (p[0] + p[1], p[1] if (p[0] + p[1]) % 2 == 0 else p[0]))
# Own Huffman tables, written into the file: every DC category a 4-bit code, every AC symbol
# (EOB, ZRL, run/size for sizes 1-10) an 8-bit code, in this order (canonical codes).
DC_SYMBOLS = list(range(12))
AC_SYMBOLS = [0x00, 0xF0] + [(r << 4) | s for r in range(16) for s in range(1, 11)]
AC_CODE = {s: i for i, s in enumerate(AC_SYMBOLS)}


def jpeg_gray(img):
    h, w = img.shape
    ph, pw = -h % 8, -w % 8
    px = np.pad(img.astype(np.float64), ((0, ph), (0, pw)), mode="edge") - 128
    c = _dct_matrix()
    out, acc, nacc = bytearray(), 0, 0

    def put(value, n):
        nonlocal acc, nacc
        acc = (acc << n) | (value & ((1 << n) - 1))
        nacc += n
        while nacc >= 8:
            nacc -= 8
            byte = (acc >> nacc) & 0xFF
            out.append(byte)
            if byte == 0xFF:
                out.append(0)

    def magnitude(v):
        n = _bits(v)
        return n, (v if v >= 0 else v + (1 << n) - 1)

    prev = 0
    for by in range(0, px.shape[0], 8):
        for bx in range(0, px.shape[1], 8):
            f = c @ px[by:by + 8, bx:bx + 8] @ c.T
            q = [int(max(-1023, min(1023, round(f[y, x])))) for y, x in ZIGZAG]
            n, bits = magnitude(q[0] - prev)
            prev = q[0]
            put(n, 4)
            put(bits, n)
            run = 0
            for v in q[1:]:
                if v == 0:
                    run += 1
                    continue
                while run > 15:
                    put(AC_CODE[0xF0], 8)
                    run -= 16
                n, bits = magnitude(v)
                put(AC_CODE[(run << 4) | n], 8)
                put(bits, n)
                run = 0
            if run:
                put(AC_CODE[0x00], 8)
    if nacc:
        put(0x7F, 8 - nacc)  # pad with 1 bits

    def seg(marker, payload):
        return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload

    dqt = bytes([0]) + bytes([1] * 64)
    sof = bytes([8]) + h.to_bytes(2, "big") + w.to_bytes(2, "big") + bytes([1, 1, 0x11, 0])

    def dht(cls, lengths, symbols):
        counts = [0] * 16
        counts[lengths - 1] = len(symbols)
        return bytes([cls << 4]) + bytes(counts) + bytes(symbols)

    sos = bytes([1, 1, 0x00, 0, 63, 0])
    return (b"\xFF\xD8" + seg(0xDB, dqt) + seg(0xC0, sof) + seg(0xC4, dht(0, 4, DC_SYMBOLS))
            + seg(0xC4, dht(1, 8, AC_SYMBOLS)) + seg(0xDA, sos) + bytes(out) + b"\xFF\xD9")
