#!/usr/bin/env python3
"""Writes the hand-made fuzz inputs: the small seeds that are not copies of the repo's
fixtures, and the regression files for faults known before the fuzzers ran.

Plain Python (no numpy), deterministic: run `python3 fuzz/make_inputs.py` from anywhere;
it rewrites only the files it names. Seeds copied from fixtures are listed in
fuzz/seeds/README.md.
"""
import json
import random
import struct
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
SEEDS = FUZZ / "seeds"
REGRESSIONS = FUZZ / "regressions"


def npy(header: str, data: bytes = b"", version: int = 1) -> bytes:
    """A .npy file with `header` (the dict literal) padded as numpy pads it."""
    prefix = 6 + 2 + (2 if version == 1 else 4)
    pad = (64 - (prefix + len(header) + 1) % 64) % 64
    text = (header + " " * pad + "\n").encode("latin-1")
    size = struct.pack("<H", len(text)) if version == 1 else struct.pack("<I", len(text))
    return b"\x93NUMPY" + bytes([version, 0]) + size + text + data


def dict_header(descr: str, shape: str, fortran: bool = False) -> str:
    return "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (
        descr,
        "True" if fortran else "False",
        shape,
    )


def safetensors(entries, metadata=None, raw_header=None) -> bytes:
    """entries: (name, dtype, shape, bytes) in order; raw_header replaces the JSON."""
    data = b""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, blob in entries:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    text = raw_header if raw_header is not None else json.dumps(header, separators=(",", ":"))
    text = text.encode() + b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + data


def f32(*values) -> bytes:
    return struct.pack("<%df" % len(values), *values)


def write(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


# --- seeds: small valid .npy files of the kinds the CLI reads ---------------------------
npy_seeds = SEEDS / "npy_reader"
write(npy_seeds / "lengths_int64.npy", npy(dict_header("<i8", "(3,)"), struct.pack("<3q", 3, 1, 2)))
write(npy_seeds / "lengths_int32.npy", npy(dict_header("<i4", "(2,)"), struct.pack("<2i", 2, 2)))
write(npy_seeds / "f64_2x1x3.npy", npy(dict_header("<f8", "(2, 1, 3)"), struct.pack("<6d", *[0.5 * i for i in range(6)])))
write(npy_seeds / "f32_fortran_2x3.npy", npy(dict_header("<f4", "(2, 3)", fortran=True), f32(*range(6))))
write(npy_seeds / "f32_big_endian_2x2.npy", npy(dict_header(">f4", "(2, 2)"), struct.pack(">4f", 1, 2, 3, 4)))
write(npy_seeds / "f32_empty_2x0x3.npy", npy(dict_header("<f4", "(2, 0, 3)")))
write(npy_seeds / "f32_scalar.npy", npy(dict_header("<f4", "()"), f32(1.5)))
write(npy_seeds / "f32_v2_header_1x1x1.npy", npy(dict_header("<f4", "(1, 1, 1)"), f32(0.25), version=2))

# --- seeds for the structured targets: their bytes are choices, any bytes will do -------
rng = random.Random(20240601)
for target in ("state_dict_loader", "differential"):
    folder = SEEDS / target
    write(folder / "zeros_64", bytes(64))
    write(folder / "ones_64", b"\xff" * 64)
    write(folder / "ramp_256", bytes(range(256)))
    for size in (32, 128, 512, 2048):
        write(folder / f"random_{size}", bytes(rng.getrandbits(8) for _ in range(size)))

# --- regressions: faults known before fuzzing --------------------------------------------
npy_reg = REGRESSIONS / "npy_reader"
# (a) ~1.6 TB declared (400e9 float32) by a header the size check does not parse: the key
# "shape" in double quotes, as a \x escape, or given twice (the check reads the first).
tb = "(400000000000,)"
write(npy_reg / "known-shape-double-quoted-1p6tb.npy",
      npy("{'descr': '<f4', 'fortran_order': False, \"shape\": %s, }" % tb, bytes(36)))
write(npy_reg / "known-shape-escaped-key-1p6tb.npy",
      npy("{'descr': '<f4', 'fortran_order': False, 'sh\\x61pe': %s, }" % tb, bytes(36)))
write(npy_reg / "known-shape-repeated-key-1p6tb.npy",
      npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'shape': %s, }" % tb, bytes(36)))
# (b) 10^12 steps of an empty batch: no data at all, but L = 10^12.
write(npy_reg / "known-shape-1e12x0x3.npy", npy(dict_header("<f4", "(1000000000000, 0, 3)")))

st_reg = REGRESSIONS / "safetensors_reader"
w_ih = f32(0.5, -0.25)  # (2, 1)
w_hh = f32(0.1, 0.2, 0.3, 0.4)  # (2, 2)
# (c) A duplicate tensor key: two different declarations of weight_hh_l0 over the same
# bytes (float64 (1, 2), then float32 (2, 2)); JSON readers silently keep the last.
dup = ('{"weight_ih_l0":{"dtype":"F32","shape":[2,1],"data_offsets":[0,8]},'
       '"weight_hh_l0":{"dtype":"F64","shape":[1,2],"data_offsets":[8,24]},'
       '"weight_hh_l0":{"dtype":"F32","shape":[2,2],"data_offsets":[8,24]}}')
write(st_reg / "known-duplicate-key.safetensors", safetensors([], raw_header=dup) + w_ih + w_hh)
# (d) RNN(1, 2, bias=False) plus a tensor named for layer 2^64, which no usize holds.
write(st_reg / "known-layer-index-2pow64.safetensors", safetensors([
    ("weight_ih_l0", "F32", [2, 1], w_ih),
    ("weight_hh_l0", "F32", [2, 2], w_hh),
    ("weight_ih_l18446744073709551616", "F32", [2, 1], w_ih),
]))

# Found by tests/readers_bytes.rs (npy_readers_refuse_inflated_shapes): a zero dimension
# keeps the element count at 0, so the size check passes, but the other dimensions'
# product overflows isize, and ndarray-npy unwraps ndarray's shape error (a panic).
write(npy_reg / "shape-overflow-beside-zero.npy", npy(dict_header("<f4", "(0, 1000000000000, 1000000000000)")))
