"""How close every zoo model runs to the machine's matmul rate, for inference and a training step.

For each model of ``musictag.list_models()``: the FLOPs per sample (counted by
``torch.utils.flop_counter.FlopCounterMode``: convolutions, matmuls, GRU/attention matmuls; not
pooling, BatchNorm or element-wise ops), the time per sample of

* eval-mode inference at ``--batch`` crops of the model's input length (the tagger as it is, and
  the copy from :func:`musictag.optimize.optimize_for_inference` with ``--optimize``),
* one training step (forward, backward, Adam step) at ``--train-batch``,

and their achieved GFLOP/s as a share of the rate of a square float32 matmul (``--matmul`` ², the
best a dense kernel reaches here) **measured in the same process, interleaved** with the model
(matmul, model, matmul, ...), so that other processes on a shared machine slow both alike. The best
of ``--repeats`` is kept for each, and the load average is printed with the table.

On ``--device cuda`` the model runs in bf16 autocast and is compared with the bf16 matmul rate
(``--precision fp32`` compares with the TF32 rate, TF32 enabled); on CPU the default is float32.

    python -m benchmarks.utilisation                                 # every model, CPU
    python -m benchmarks.utilisation --models fcn crnn musicnn --optimize --json out.json
    python -m benchmarks.utilisation --device cuda --batch 64 --train-batch 256
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

try:
    from benchmarks import _common as common
except ImportError:  # run as a file: python benchmarks/utilisation.py
    import _common as common

import musictag

__all__ = ["Rate", "count_flops", "matmul_rate", "interleaved_best", "main"]


@dataclass
class Rate:
    """A model measurement against the matmul rate of the same process."""

    gflop_per_sample: float
    ms_per_sample: float
    gflops: float
    matmul_gflops: float

    @property
    def share(self) -> float:
        """Achieved GFLOP/s as a fraction of the matmul rate."""
        return self.gflops / self.matmul_gflops


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def matmul_rate(
    n: int = 2048, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> Callable[[], float]:
    """A function that times one ``n × n`` matmul and returns its GFLOP/s.

    The operands are allocated once; the first call is a warm-up like any other (take the best).

    Args:
        n: Matrix size.
        device: Where to run.
        dtype: ``torch.float32`` (TF32 on CUDA if enabled) or ``torch.bfloat16``.
    """
    device = torch.device(device)
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device, dtype)
    b = torch.randn(n, n, generator=g).to(device, dtype)
    reps = 20 if device.type == "cuda" else 1

    def run() -> float:
        _sync(device)
        start = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b)
        _sync(device)
        return reps * 2 * n**3 / (time.perf_counter() - start) / 1e9

    return run


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn`` (``FlopCounterMode``: matmuls and convolutions, fwd + bwd)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def interleaved_best(
    work: Callable[[], object], matmul: Callable[[], float], repeats: int, device: torch.device
) -> tuple[float, float]:
    """Best seconds of ``work`` and best matmul GFLOP/s, alternated ``matmul, work, matmul ...``."""
    best_time, best_rate = float("inf"), matmul()
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        work()
        _sync(device)
        best_time = min(best_time, time.perf_counter() - start)
        best_rate = max(best_rate, matmul())
    return best_time, best_rate


def _measure(
    work: Callable[[], object],
    batch: int,
    matmul: Callable[[], float],
    repeats: int,
    device: torch.device,
) -> Rate:
    work()  # warm-up (oneDNN primitives, cuDNN autotuning, allocator)
    flops = count_flops(work)
    seconds, rate = interleaved_best(work, matmul, repeats, device)
    return Rate(flops / batch / 1e9, 1e3 * seconds / batch, flops / seconds / 1e9, rate)


def _batch(model: musictag.Tagger, batch: int, device: torch.device) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (0.3 * torch.randn(batch, model.crop_samples, generator=g)).to(device)


def inference_work(model: torch.nn.Module, x: torch.Tensor, precision: str) -> Callable[[], object]:
    """One eval-mode forward pass of ``x`` ``[batch, samples]``."""
    device = x.device

    def run() -> object:
        with torch.inference_mode(), _autocast(device, precision):
            return model(x)

    return run


def training_work(model: musictag.Tagger, x: torch.Tensor, precision: str) -> Callable[[], object]:
    """One training step (forward, loss, backward, Adam) on ``x`` ``[batch, samples]``."""
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    target = torch.rand(x.shape[0], model.n_tags, generator=torch.Generator().manual_seed(1)) < 0.2
    target = target.float().to(x.device)

    def run() -> object:
        with _autocast(x.device, precision):
            loss = model.criterion(model(x).float(), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    return run


def measure_model(
    name: str,
    device: torch.device,
    batch: int,
    train_batch: int,
    matmul: Callable[[], float],
    repeats: int,
    precision: str,
    optimize: bool,
) -> Iterator[dict]:
    """Rows ``{"model", "mode", ...Rate}`` for inference (eager, optimised) and training."""
    torch.manual_seed(0)
    model = musictag.create_model(name).to(device).eval()
    seconds = model.crop_samples / model.sample_rate
    base = {"model": name, "input_s": round(seconds, 2), "device": device.type}
    if batch:
        x = _batch(model, batch, device)
        rate = _measure(inference_work(model, x, precision), batch, matmul, repeats, device)
        yield {**base, "mode": "inference", "batch": batch, **asdict(rate), "share": rate.share}
        if optimize:
            from musictag.optimize import optimize_for_inference

            start = time.perf_counter()
            fast = optimize_for_inference(model, x[: min(2, batch)])
            setup = time.perf_counter() - start
            rate = _measure(inference_work(fast, x, precision), batch, matmul, repeats, device)
            yield {
                **base,
                "mode": "inference, optimised",
                "batch": batch,
                **asdict(rate),
                "share": rate.share,
                "setup_s": round(setup, 1),
            }
            del fast
        del x
    if train_batch:
        x = _batch(model, train_batch, device)
        rate = _measure(training_work(model, x, precision), train_batch, matmul, repeats, device)
        yield {
            **base,
            "mode": "training step",
            "batch": train_batch,
            **asdict(rate),
            "share": rate.share,
        }
    del model
    gc.collect()


def main(argv: Sequence[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["*"], help="globs of list_models()")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default=None,
        help="default: fp32 on CPU, bf16 (autocast) on CUDA",
    )
    parser.add_argument("--batch", type=int, default=16, help="inference crops per pass (0: skip)")
    parser.add_argument("--train-batch", type=int, default=16, help="training batch (0: skip)")
    parser.add_argument(
        "--optimize",
        action="store_true",
        help="also time musictag.optimize.optimize_for_inference's copy",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--matmul", type=int, default=2048, help="size of the reference matmul")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    matmul = matmul_rate(args.matmul, device, dtype)
    names = sorted({n for pattern in args.models for n in musictag.list_models(pattern)})
    header = common.machine()
    print(header)
    print(f"{args.device}, {precision}, reference: {args.matmul}² {dtype} matmul, interleaved")
    rows: list[dict] = []
    for name in names:
        for row in measure_model(
            name,
            device,
            args.batch,
            args.train_batch,
            matmul,
            args.repeats,
            precision,
            args.optimize,
        ):
            rows.append(row)
            print(
                f"  {name} {row['mode']}: {row['ms_per_sample']:.1f} ms/sample, "
                f"{100 * row['share']:.1f} % of {row['matmul_gflops']:.0f} GFLOP/s",
                file=sys.stderr,
                flush=True,
            )
    print(
        common.table(
            [
                "model",
                "input",
                "mode",
                "batch",
                "GFLOP/sample",
                "ms/sample",
                "GFLOP/s",
                "matmul GFLOP/s",
                "share",
            ],
            [
                [
                    r["model"],
                    f"{r['input_s']:g} s",
                    r["mode"],
                    r["batch"],
                    r["gflop_per_sample"],
                    r["ms_per_sample"],
                    r["gflops"],
                    r["matmul_gflops"],
                    f"{100 * r['share']:.0f} %",
                ]
                for r in rows
            ],
        )
    )
    print(f"load average after: {common.load()}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": header,
                    "device": args.device,
                    "precision": precision,
                    "load_after": common.load(),
                    "rows": rows,
                },
                indent=1,
            )
        )
    return rows


if __name__ == "__main__":
    main()
