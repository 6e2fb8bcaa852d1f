#!/usr/bin/env python3
"""Time torch.nn.RNN against `recurrent bench` on the same configurations, in one run.

Usage (from the repository root, torch in a venv):
(--background-load: the same measurement with a CPU-bound process spinning on one core,
as on a busy machine; --stream: one step at a time against torch's cell)

    python3 -m venv .venv && .venv/bin/pip install torch numpy safetensors
    cargo build --release -p recurrent-cli
    .venv/bin/python bench/compare.py [--threads 2] [--min-time 0.5] [--only small,medium]
                                      [--dtype f32] [--isa avx2] [--markdown BENCHMARKS.md]

Method. Both sides time the forward call in-process, with warm-up, repeating until at
least --min-time seconds and 5 samples, and report the median time per call. Torch runs
under torch.no_grad() with torch.set_num_threads(T); ours runs `recurrent bench
--threads T`. The two are interleaved config by config, and the machine's float32 GEMM
peak is measured in the same run (torch 1024x1024 @ 1024x1024), so ratios and peak
fractions come from one session on one machine. Ratio = torch time / our time.

Our kernel path is the best the CPU has unless RECURRENT_ISA (or --isa, which sets it for
our runs) names one: avx512, avx2 or portable. The table's header records the path that
ran (from `recurrent bench`'s JSON line) and the CPU model (/proc/cpuinfo, else lscpu).

`--isa avx2` holds torch to AVX2 as well, so that an AVX-512 machine measures the race
an AVX2-only CPU would see: ATen's kernels (ATEN_CPU_CAPABILITY), oneDNN's (the LSTM and
GRU; ONEDNN_MAX_CPU_ISA) and MKL's GEMM (MKL_ENABLE_INSTRUCTIONS) read their limit when
torch is imported, which is why it is set here, before the import. `--torch-full-isa`
lets torch use everything the CPU has. The header says which.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


def _torch_isa_limit(argv: list[str]) -> str | None:
    """The instruction-set limit for torch implied by the command line, set in the
    environment before torch is imported (its libraries read it once, at load)."""
    isa = None
    for i, a in enumerate(argv):
        if a == "--isa" and i + 1 < len(argv):
            isa = argv[i + 1]
        elif a.startswith("--isa="):
            isa = a.split("=", 1)[1]
    if isa != "avx2" or "--torch-full-isa" in argv:
        return None
    os.environ["ATEN_CPU_CAPABILITY"] = "avx2"
    os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX2"
    os.environ["MKL_ENABLE_INSTRUCTIONS"] = "AVX2"
    return "avx2 (ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2, MKL_ENABLE_INSTRUCTIONS=AVX2)"


TORCH_ISA_LIMIT = _torch_isa_limit(sys.argv[1:])

import torch  # noqa: E402  (after the limit above: torch's libraries read it at import)

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Config:
    name: str
    seq_len: int
    batch: int
    input_size: int
    hidden_size: int
    num_layers: int
    bidirectional: bool
    target: float  # minimum ratio torch/ours
    peak_target: float | None = None  # minimum fraction of the FMA peak


CONFIGS = [
    Config("tiny-stream", 1, 1, 16, 32, 1, False, 50),
    Config("seed", 4, 5, 2, 3, 1, False, 50),
    Config("small", 50, 1, 32, 64, 1, False, 10),
    Config("wide-b1", 500, 1, 256, 512, 1, False, 3),
    Config("medium", 100, 32, 128, 256, 2, False, 2),
    Config("medium-bi", 100, 32, 128, 256, 2, True, 2),
    Config("large", 200, 64, 512, 1024, 1, False, 1.3, 0.80),
]

# The speed issue's targets per mode (ratio torch/ours, and fraction of the hardware's
# FMA peak). GRU takes the RNN targets row for row; LSTM's are lower because torch hands
# it to oneDNN. With --train: medium >= 2 and large >= 1.3 for every kind.
TARGETS = {
    "rnn": {c.name: (c.target, c.peak_target) for c in CONFIGS},
    "gru": {c.name: (c.target, c.peak_target) for c in CONFIGS},
    "lstm": {
        "tiny-stream": (50, None),
        "seed": (50, None),
        "small": (5, None),
        "wide-b1": (2, None),
        "medium": (1.3, None),
        "medium-bi": (1.3, None),
        "large": (1.1, 0.80),
    },
}
TRAIN_TARGETS = {"medium": (2, None), "large": (1.3, None)}

# f32 lanes per vector on each of our kernel paths (the portable path: SSE2's 4, its
# multiply and add not fused, counted as one FMA unit's worth of each).
LANES_F32 = {"avx512": 16, "avx2": 8, "portable": 4}
GATES = {"rnn": 1, "gru": 3, "lstm": 4}
MODULES = {"rnn": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}


def flops(c: Config, mode: str) -> float:
    """Multiply-add FLOPs of the real work: 2 L N G H (in_k + H) per layer and direction,
    layer k > 0 reading D H inputs."""
    d = 2 if c.bidirectional else 1
    g = GATES[mode]
    per_step = 0.0
    for layer in range(c.num_layers):
        width = c.input_size if layer == 0 else d * c.hidden_size
        per_step += d * g * (width * c.hidden_size + c.hidden_size * c.hidden_size)
    return 2.0 * c.seq_len * c.batch * per_step


def time_call(fn, min_time: float) -> float:
    """Median seconds per call: warm-up, then samples until min_time and >= 5 samples."""
    fn()
    start = time.perf_counter()
    calls = 0
    while time.perf_counter() - start < 0.1:
        fn()
        calls += 1
    per_call = (time.perf_counter() - start) / calls
    k = max(1, int(min_time / 10 / per_call))
    samples = []
    begin = time.perf_counter()
    while len(samples) < 5 or time.perf_counter() - begin < min_time:
        t = time.perf_counter()
        for _ in range(k):
            fn()
        samples.append((time.perf_counter() - t) / k)
    return statistics.median(samples)


def torch_time(c: Config, mode: str, dtype: torch.dtype, min_time: float, train: bool = False) -> float:
    torch.manual_seed(0)
    module = MODULES[mode]
    rnn = module(c.input_size, c.hidden_size, c.num_layers, bidirectional=c.bidirectional).to(dtype).eval()
    if train:
        # forward + backward of loss = sum(output), gradients for the parameters and the input
        x = torch.randn(c.seq_len, c.batch, c.input_size, dtype=dtype, requires_grad=True)

        def step():
            for p in rnn.parameters():
                p.grad = None
            x.grad = None
            out, _ = rnn(x)
            out.sum().backward()

        return time_call(step, min_time)
    x = torch.randn(c.seq_len, c.batch, c.input_size, dtype=dtype)
    with torch.no_grad():
        return time_call(lambda: rnn(x), min_time)


def ours_time(binary: Path, c: Config, mode: str, dtype: str, threads: int, min_time: float, train: bool = False,
              stream: bool = False) -> dict:
    cmd = [
        str(binary), "bench", "--mode", mode,
        "--input-size", str(c.input_size), "--hidden-size", str(c.hidden_size),
        "--num-layers", str(c.num_layers), "--seq-len", str(c.seq_len), "--batch", str(c.batch),
        "--threads", str(threads), "--dtype", dtype, "--min-time", str(min_time),
    ]
    if c.bidirectional:
        cmd.append("--bidirectional")
    if train:
        cmd.append("--train")
    if stream:
        cmd.append("--stream")
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        # One line from `recurrent bench` (a bad RECURRENT_ISA, say): say it and stop.
        message = done.stderr.strip() or f"error: exit status {done.returncode}"
        raise SystemExit(f"{message} (from: {' '.join(cmd)})")
    return json.loads(done.stdout.strip().splitlines()[-1])


STREAM_HIDDEN = (32, 64, 256)
CELLS = {"rnn": torch.nn.RNNCell, "gru": torch.nn.GRUCell, "lstm": torch.nn.LSTMCell}
# Issue targets for streaming: ahead of torch's per-step cell by these factors.
STREAM_TARGETS = {32: 20.0, 256: 5.0}
STREAM_VS_BATCH = 1.5  # our stream's per-step time, at most this times the batch path's


def torch_stream_step(mode: str, hidden: int, steps: int, dtype: torch.dtype, min_time: float) -> float:
    """Seconds per step of torch's cell called once per step, under no_grad, N = 1:
    what a torch user streaming a live input writes."""
    torch.manual_seed(0)
    cell = CELLS[mode](hidden, hidden).to(dtype).eval()
    x = torch.randn(steps, 1, hidden, dtype=dtype)

    def run():
        h = None
        for t in range(steps):
            h = cell(x[t], h)

    with torch.no_grad():
        return time_call(run, min_time) / steps


def emit(args, table: str) -> int:
    """Prints the table and, with --markdown, writes it with the command that made it."""
    print(table)
    if args.markdown:
        command = "python " + " ".join([os.path.relpath(__file__, ROOT)] + sys.argv[1:])
        Path(args.markdown).write_text(
            f"<!-- generated by: {command} -->\n\nCommand: `{command}`\n\n" + table
        )
    return 0


def stream_table(args, binary: Path, dtype: torch.dtype) -> int:
    rows = []
    isas = []
    for mode in args.modes.split(","):
        for hidden in STREAM_HIDDEN:
            c = Config(f"stream-h{hidden}", args.stream_steps, 1, hidden, hidden, 1, False, 0)
            t_torch = torch_stream_step(mode, hidden, args.stream_steps, dtype, args.min_time)
            ours = ours_time(binary, c, mode, args.dtype, args.threads, args.min_time, stream=True)
            batch = ours_time(binary, c, mode, args.dtype, args.threads, args.min_time)
            isa = ours.get("isa", "unknown")
            if isa not in isas:
                isas.append(isa)
            t_step = ours["median_us"] / 1e6 / c.seq_len
            t_batch = batch["median_us"] / 1e6 / c.seq_len
            ratio = t_torch / t_step
            vs_batch = t_step / t_batch
            want = STREAM_TARGETS.get(hidden)
            met = vs_batch <= STREAM_VS_BATCH and (want is None or ratio >= want)
            target = f"<= {STREAM_VS_BATCH:g}x batch" + (f", >= {want:g}x torch" if want else "")
            rows.append((mode, hidden, t_torch, t_step, t_batch, ratio, vs_batch, target, met))
            print(f"{mode} stream H={hidden}: torch cell {fmt_time(t_torch)}/step, ours {fmt_time(t_step)}/step "
                  f"(batch path {fmt_time(t_batch)}/step), ratio {ratio:.1f}", file=sys.stderr)
    forced = os.environ.get("RECURRENT_ISA", "").strip()
    isa_note = f"RECURRENT_ISA={forced}" if forced else "RECURRENT_ISA unset: the best the CPU has"
    header = (
        f"Streaming, one step at a time, N = 1, H_in = H, {args.stream_steps} steps per timed sequence, "
        f"{args.threads} threads, {args.dtype}  \n"
        f"CPU: {cpu_model()}, {os.cpu_count()} cores  \n"
        f"our kernel path: {', '.join(isas) or 'none run'} ({isa_note}); torch {torch.__version__}, "
        f"its kernels: {TORCH_ISA_LIMIT or 'the best the CPU has'}\n\n"
        "| mode | H | torch cell per step | our stream per step | our batch path per step | ratio torch/ours "
        "| stream / batch | target | met |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {mode} | {h} | {fmt_time(tt)} | {fmt_time(ts)} | {fmt_time(tb)} | {r:.1f} | {vb:.2f} | {tgt} | {'yes' if m else 'no'} |"
        for mode, h, tt, ts, tb, r, vb, tgt, m in rows
    ]
    return emit(args, header + "\n".join(lines) + "\n")


def cpu_model() -> str:
    """The CPU's model name: /proc/cpuinfo's "model name", else lscpu's, else platform's."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def sgemm_peak(min_time: float, dtype: torch.dtype) -> float:
    a = torch.randn(1024, 1024, dtype=dtype)
    b = torch.randn(1024, 1024, dtype=dtype)
    t = time_call(lambda: a @ b, min_time)
    return 2 * 1024**3 / t / 1e9


def clock_probe(binary: Path) -> tuple[float | None, dict[str, int]]:
    """The core clock in GHz and the FMA units per path, both measured by the clock
    probe (crates/recurrent-bench/examples/clock.rs), built beside the CLI
    (`cargo build --release -p recurrent-bench --example clock`). The units are FMA
    instructions retired per cycle: 2 for ymm on every recent x86 core, but 1 for zmm on
    Zen 4 (AVX-512 on 256-bit units), 2 on Zen 5 and most Xeons."""
    probe = binary.parent / "examples" / "clock"
    if not probe.exists():
        return None, {}
    out = subprocess.run([str(probe), "1"], capture_output=True, text=True, check=False).stdout
    clock, units = None, {}
    for line in out.splitlines():
        if line.startswith("clock:"):
            clock = float(line.split()[1])
        elif " fma units: " in line:
            path, rest = line.split(" fma units: ", 1)
            units[path] = int(rest.split()[0])
    return clock, units


# FMA units per path where the probe measured none (an old probe, or --clock-ghz): two.
FMA_UNITS: dict[str, int] = {}


def fma_peak(isa: str, dtype: str, threads: int, clock_ghz: float) -> float:
    """cores x FMA units x lanes x 2 FLOPs x clock, in GFLOP/s, for our kernel path."""
    lanes = LANES_F32.get(isa, 4) // (2 if dtype == "f64" else 1)
    return threads * FMA_UNITS.get(isa, 2) * lanes * 2 * clock_ghz


def fmt_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.2f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--min-time", type=float, default=0.5)
    p.add_argument("--dtype", choices=["f32", "f64"], default="f32")
    p.add_argument("--only", default="", help="comma-separated config names")
    p.add_argument("--modes", default="rnn,lstm,gru", help="comma-separated: rnn, lstm, gru")
    p.add_argument("--train", action="store_true",
                   help="time forward + backward (loss = sum(output)) on medium and large; targets 2 and 1.3")
    p.add_argument("--stream", action="store_true",
                   help="time one step at a time (N = 1, H in 32, 64, 256): our stream's step against "
                        "torch's cell called per step, and against our batch path's per-step cost")
    p.add_argument("--stream-steps", type=int, default=1000, help="steps per timed sequence with --stream")
    p.add_argument("--binary", default=str(ROOT / "target" / "release" / "recurrent"))
    p.add_argument("--isa", choices=["avx512", "avx2", "portable"],
                   help="force our kernel path (sets RECURRENT_ISA for our runs); default: "
                        "RECURRENT_ISA if set, else the best the CPU has")
    p.add_argument("--torch-full-isa", action="store_true",
                   help="with --isa avx2, let torch use every instruction set the CPU has")
    p.add_argument("--markdown", help="also write the table (with the command) to this file")
    p.add_argument("--clock-ghz", type=float, default=None,
                   help="the core clock for the FMA peak (default: measured by the clock probe)")
    p.add_argument("--background-load", action="store_true",
                   help="run a CPU-bound process on one core (the last) for the whole measurement, "
                        "as a busy machine would: both sides are timed under the same load")
    args = p.parse_args()
    if args.background_load:
        with BackgroundLoad():
            return measure(args)
    return measure(args)


class BackgroundLoad:
    """A CPU-bound busy loop in another process, pinned to the last core, for the duration
    of a `with` block (stopped on exit, whatever happens)."""

    def __enter__(self):
        code = "import os\ntry:\n    os.sched_setaffinity(0, {os.cpu_count() - 1})\nexcept (AttributeError, OSError):\n    pass\nwhile True:\n    pass\n"
        self.process = subprocess.Popen([sys.executable, "-c", code])
        time.sleep(0.2)  # let it start spinning
        return self

    def __exit__(self, *exc):
        self.process.kill()
        self.process.wait()
        return False


def measure(args) -> int:
    if args.isa:
        os.environ["RECURRENT_ISA"] = args.isa  # inherited by `recurrent bench`

    torch.set_num_threads(args.threads)
    dtype = torch.float32 if args.dtype == "f32" else torch.float64
    configs = [c for c in CONFIGS if not args.only or c.name in args.only.split(",")]
    if args.train:
        configs = [c for c in configs if c.name in ("medium", "large")]
    binary = Path(args.binary)
    if not binary.exists():
        print(f"error: {binary} not found; run `cargo build --release -p recurrent-cli` first", file=sys.stderr)
        return 1

    if args.stream:
        return stream_table(args, binary, dtype)

    peak = sgemm_peak(args.min_time, dtype)
    probed_clock, units = clock_probe(binary)
    FMA_UNITS.update(units)
    clock = args.clock_ghz or probed_clock
    if clock is None:
        print("error: no clock: build the probe (`cargo build --release -p recurrent-bench --example clock`) "
              "or pass --clock-ghz", file=sys.stderr)
        return 1
    has_targets = args.dtype == "f32"  # the targets are for float32
    rows = []
    isas = []  # the kernel paths our runs reported, in order of first appearance
    for mode in args.modes.split(","):
        for c in configs:
            t_torch = torch_time(c, mode, dtype, args.min_time, args.train)
            ours = ours_time(binary, c, mode, args.dtype, args.threads, args.min_time, args.train)
            t_ours = ours["median_us"] / 1e6
            isa = ours.get("isa", "unknown")
            if isa not in isas:
                isas.append(isa)
            ratio = t_torch / t_ours
            gflops = flops(c, mode) * (3 if args.train else 1) / t_ours / 1e9
            frac = gflops / fma_peak(isa, args.dtype, args.threads, clock)
            want, want_peak = TARGETS[mode][c.name]
            if args.train:
                want, want_peak = TRAIN_TARGETS[c.name]
            met = ratio >= want and (want_peak is None or frac >= want_peak)
            target = f">= {want:g}" + (f", >= {want_peak:.0%} FMA peak" if want_peak else "")
            if not has_targets:
                target, met = "none for f64", None
            rows.append((mode, c, t_torch, t_ours, ratio, gflops, frac, target, met))
            print(f"{mode} {c.name}: torch {fmt_time(t_torch)}, ours {fmt_time(t_ours)}, ratio {ratio:.2f}", file=sys.stderr)

    forced = os.environ.get("RECURRENT_ISA", "").strip()
    isa_note = f"RECURRENT_ISA={forced}" if forced else "RECURRENT_ISA unset: the best the CPU has"
    load_note = ("  \nunder load: a CPU-bound process spinning on the last core for the whole run (--background-load)"
                 if args.background_load else "")
    peaks = ", ".join(f"{i}: {fma_peak(i, args.dtype, args.threads, clock):.0f} GFLOP/s "
                      f"({FMA_UNITS.get(i, 2)} FMA units{'' if i in FMA_UNITS else ', assumed'})" for i in isas)
    header = (
        f"FMA peak ({args.threads} cores x FMA units x lanes x 2 x clock, clock {clock:.2f} GHz "
        f"{'as given' if args.clock_ghz else 'measured by examples/clock.rs in this run'}, units "
        f"measured by it as FMA instructions per cycle): {peaks}  \n"
        f"torch's sgemm (1024^3 matmul, {args.threads} threads, {args.dtype}, same run): {peak:.1f} GFLOP/s "
        f"({peak / fma_peak(isas[0] if isas else 'avx512', args.dtype, args.threads, clock):.0%} of our path's FMA peak)  \n"
        f"CPU: {cpu_model()}, {os.cpu_count()} cores  \n"
        f"our kernel path: {', '.join(isas) or 'none run'} ({isa_note}); torch {torch.__version__}, "
        f"its kernels: {TORCH_ISA_LIMIT or 'the best the CPU has'} (torch.backends.cpu.get_cpu_capability(): {torch.backends.cpu.get_cpu_capability()})"
        f"{load_note}\n\n"
        "| mode | config | L | N | H_in | H | layers | bidir | torch | ours | ratio torch/ours | our GFLOP/s | of FMA peak | target | met |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {mode} | {c.name} | {c.seq_len} | {c.batch} | {c.input_size} | {c.hidden_size} | {c.num_layers} | "
        f"{'yes' if c.bidirectional else 'no'} | {fmt_time(tt)} | {fmt_time(to)} | {r:.2f} | {g:.1f} | {f:.0%} | {tgt} | {'-' if m is None else 'yes' if m else 'no'} |"
        for mode, c, tt, to, r, g, f, tgt, m in rows
    ]
    return emit(args, header + "\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
