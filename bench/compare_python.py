#!/usr/bin/env python3
"""Time torch.nn.X(...)(x) against recurrent.X.from_torch(m)(x) from Python, in one run.

The Python package's side of bench/compare.py: the same configurations (CONFIGS), the same
timing method (time_call: warm-up, samples until --min-time and at least 5, the median per
call) and the same interleaving (torch, then ours, config by config), imported from
compare.py. Both sides are called from Python, so the binding's own cost (argument checks,
the NumPy views, releasing the GIL, wrapping the results) is counted. Torch runs under
torch.no_grad() with torch.set_num_threads(T); ours after recurrent.set_num_threads(T).

With the release CLI built (``cargo build --release -p recurrent-cli``), each row also
runs ``recurrent bench`` on the same configuration, and reports the Rust-side ratio, the
binding's overhead per call (Python time - bench time) and whether the Python ratio is
within 10% of the Rust one (the issue's target).

Usage (torch and the recurrent wheel in one venv):

    python bench/compare_python.py [--threads 2] [--min-time 0.5] [--only small,medium]
                                   [--modes rnn,lstm,gru] [--dtype f32] [--markdown bench/python_table.md]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare  # noqa: E402  (imports torch, after compare's own ISA limit)
import numpy as np  # noqa: E402
import torch  # noqa: E402

import recurrent  # noqa: E402

KINDS = {"rnn": recurrent.RNN, "lstm": recurrent.LSTM, "gru": recurrent.GRU}


def time_pair(c: compare.Config, mode: str, dtype: torch.dtype, min_time: float) -> tuple[float, float]:
    """(torch seconds per call, ours per call), the same module and input for both."""
    torch.manual_seed(0)
    module = compare.MODULES[mode](c.input_size, c.hidden_size, c.num_layers,
                                   bidirectional=c.bidirectional).to(dtype).eval()
    ours = KINDS[mode].from_torch(module)
    x = torch.randn(c.seq_len, c.batch, c.input_size, dtype=dtype)
    x_np = x.numpy()
    with torch.no_grad():
        want = module(x)[0].numpy()
        got = ours(x_np)[0]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)  # the same computation
        t_torch = compare.time_call(lambda: module(x), min_time)
    t_ours = compare.time_call(lambda: ours(x_np), min_time)
    return t_torch, t_ours


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--min-time", type=float, default=0.5)
    p.add_argument("--dtype", choices=["f32", "f64"], default="f32")
    p.add_argument("--only", default="", help="comma-separated config names")
    p.add_argument("--modes", default="rnn,lstm,gru")
    p.add_argument("--binary", default=str(compare.ROOT / "target" / "release" / "recurrent"),
                   help="`recurrent bench` for the Rust-side column (skipped when absent)")
    p.add_argument("--isa", choices=["avx512", "avx2", "portable"], help="as compare.py's --isa")
    p.add_argument("--torch-full-isa", action="store_true", help="as compare.py's")
    p.add_argument("--markdown", default=str(compare.ROOT / "bench" / "python_table.md"),
                   help="write the table (with the command) here (default bench/python_table.md)")
    args = p.parse_args()
    if args.isa:
        os.environ["RECURRENT_ISA"] = args.isa  # read by the package at its first call, and by `recurrent bench`
    recurrent.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    dtype = torch.float32 if args.dtype == "f32" else torch.float64
    configs = [c for c in compare.CONFIGS if not args.only or c.name in args.only.split(",")]
    binary = Path(args.binary)
    rust = binary.exists()
    rows = []
    for mode in args.modes.split(","):
        for c in configs:
            t_torch, t_ours = time_pair(c, mode, dtype, args.min_time)
            bench = compare.ours_time(binary, c, mode, args.dtype, args.threads, args.min_time)["median_us"] / 1e6 \
                if rust else None
            rows.append((mode, c, t_torch, t_ours, bench))
            print(f"{mode} {c.name}: torch {compare.fmt_time(t_torch)}, recurrent (Python) {compare.fmt_time(t_ours)}, "
                  f"ratio {t_torch / t_ours:.2f}", file=sys.stderr)
    forced = os.environ.get("RECURRENT_ISA", "").strip()
    header = (
        f"Python side: torch.nn.X(...)(x) under no_grad vs recurrent.X.from_torch(m)(x), {args.threads} threads, "
        f"{args.dtype}  \n"
        f"CPU: {compare.cpu_model()}, {os.cpu_count()} cores  \n"
        f"our kernel path: {recurrent._native.__isa__} "
        f"({'RECURRENT_ISA=' + forced if forced else 'RECURRENT_ISA unset: the best the CPU has'}); "
        f"torch {torch.__version__}, its kernels: {compare.TORCH_ISA_LIMIT or 'the best the CPU has'}; "
        f"numpy {np.__version__}, Python {sys.version.split()[0]}\n\n"
    )
    if rust:
        header += ("| mode | config | L | N | H_in | H | layers | bidir | torch | recurrent (Python) | ratio torch/ours "
                   "| `recurrent bench` | Rust ratio | binding overhead per call | Python ratio within 10% of Rust |\n"
                   "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    else:
        header += ("| mode | config | L | N | H_in | H | layers | bidir | torch | recurrent (Python) | ratio torch/ours |\n"
                   "|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for mode, c, tt, to, tb in rows:
        line = (f"| {mode} | {c.name} | {c.seq_len} | {c.batch} | {c.input_size} | {c.hidden_size} | {c.num_layers} | "
                f"{'yes' if c.bidirectional else 'no'} | {compare.fmt_time(tt)} | {compare.fmt_time(to)} | {tt / to:.2f} |")
        if tb is not None:
            py_ratio, rust_ratio = tt / to, tt / tb
            within = py_ratio >= 0.9 * rust_ratio
            line += (f" {compare.fmt_time(tb)} | {rust_ratio:.2f} | {(to - tb) * 1e6:+.2f} us | "
                     f"{'yes' if within else 'no'} |")
        lines.append(line)
    table = header + "\n".join(lines) + "\n"
    print(table)
    if args.markdown:
        command = "python " + " ".join([os.path.relpath(__file__, compare.ROOT)] + sys.argv[1:])
        Path(args.markdown).write_text(f"<!-- generated by: {command} -->\n\nCommand: `{command}`\n\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
