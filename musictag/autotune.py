"""Batch size and thread count of inference, chosen by measurement on this device and cached.

The fastest batch size depends on the machine, not only on the model: on one 2-core CPU
64 windows per forward pass ran at 0.51x the speed of one window at a time, on another at 2.9x.
So :class:`~musictag.inference.Inference` measures the model's forward pass at a few batch sizes
(and, on CPU, thread counts) the first time a model runs on a device, keeps the fastest, and
caches the choice in ``$MUSICTAG_CACHE_DIR`` (default ``$XDG_CACHE_HOME/musictag``, i.e.
``~/.cache/musictag``) in ``inference-tuning.json``. The cache key holds the device (CPU model
and cores, or GPU name), the torch version and a signature of the model's structure (class,
layers, parameter shapes, input length), so a changed model or machine is measured again.
Weights do not change the speed and are not part of the key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

__all__ = [
    "CACHE_ENV",
    "InferenceSettings",
    "cache_key",
    "cached_entry",
    "device_signature",
    "measure_settings",
    "model_signature",
    "store_entry",
    "torch_threads",
    "tuned_settings",
    "tuning_cache_path",
]

log = logging.getLogger(__name__)

CACHE_ENV = "MUSICTAG_CACHE_DIR"
"""Environment variable naming the cache folder (default ``$XDG_CACHE_HOME/musictag``)."""

CACHE_NAME = "inference-tuning.json"
TUNING_VERSION = 1  # bump when the measurement changes: older entries are measured again
MAX_BATCH = {"cpu": 64, "cuda": 512}
PASS_BUDGET_S = 1.0  # a batch whose pass takes longer than this is not grown further
MIN_GAIN = 1.03  # a larger batch must be 3 % faster per window to be kept


@dataclass(frozen=True)
class InferenceSettings:
    """How inference runs a model on a device.

    Attributes:
        batch_size: Windows per forward pass.
        threads: torch intra-op threads (CPU), or ``None`` to leave torch's setting.
        windows_per_s: Measured forward throughput at these settings (``0`` if not measured).
        source: ``"measured"``, ``"cache"`` or ``"given"``.
    """

    batch_size: int
    threads: int | None
    windows_per_s: float = 0.0
    source: str = "given"


def tuning_cache_path() -> Path:
    """The cache file: ``$MUSICTAG_CACHE_DIR/inference-tuning.json`` (default under
    ``$XDG_CACHE_HOME/musictag``, i.e. ``~/.cache/musictag``)."""
    base = os.environ.get(CACHE_ENV)
    if not base:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "musictag"
    return Path(base) / CACHE_NAME


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def device_signature(device: torch.device) -> str:
    """The device as the cache knows it: the CPU model and cores, or the GPU's name."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    if device.type == "cpu":
        return f"cpu:{_cpu_name()} x{available_cores()}"
    return device.type


def model_signature(model: torch.nn.Module, window: int, extra: str = "") -> str:
    """A hash of what decides the model's speed: its class, layers, parameter shapes and
    dtypes, and the input length (``window`` samples); ``extra`` adds settings such as an
    inference optimisation. The weights' values are left out: they do not change the speed."""
    h = hashlib.sha256()
    h.update(f"{type(model).__module__}.{type(model).__qualname__}|{window}|{extra}".encode())
    h.update(repr(model).encode())
    for name, p in [*model.named_parameters(), *model.named_buffers()]:
        h.update(f"{name}:{tuple(p.shape)}:{p.dtype};".encode())
    return h.hexdigest()[:16]


def _thread_candidates(device: torch.device) -> list[int | None]:
    if device.type != "cpu":
        return [None]
    most = max(1, min(torch.get_num_threads(), available_cores()))
    candidates = {most}
    n = 1
    while n < most:
        candidates.add(n)
        n *= 2
    return sorted(candidates, reverse=True)


def _pass_seconds(forward: Callable, x: torch.Tensor, device: torch.device) -> float:
    """Best time of a forward pass over ``x`` (a warm-up, then passes for about 0.3 s)."""

    def once() -> float:
        start = time.perf_counter()
        forward(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    first = once()  # warm-up: allocations, kernel selection
    best, spent, n = float("inf"), 0.0, 0
    while n < 2 or (spent < 0.3 and n < 10):
        t = once()
        best, spent, n = min(best, t), spent + t, n + 1
        if first > PASS_BUDGET_S and n >= 1:  # a slow pass: one timed repeat is enough
            break
    return best


@torch.inference_mode()
def measure_settings(
    forward: Callable[[torch.Tensor], object],
    window: int,
    device: torch.device,
    batch_sizes: Sequence[int] | None = None,
    threads: Sequence[int | None] | None = None,
) -> tuple[InferenceSettings, dict[str, float]]:
    """Time ``forward`` on ``[batch, window]`` noise and pick the fastest settings.

    For each thread count, batch sizes are tried in increasing order (1, 2, 4, ... by default)
    until one is not at least 3 % faster per window than the best so far, a pass takes longer
    than a second, or the device's largest batch is reached.

    Args:
        forward: The model's forward pass, ``[batch, window]`` → anything.
        window: Input length in samples.
        device: Where ``forward`` runs.
        batch_sizes: Batch sizes to try, increasing; default: powers of two up to 64 (CPU) or
            512 (GPU).
        threads: CPU thread counts to try; default: 1, 2, 4, ... up to the cores available.

    Returns:
        ``(best settings, {"b<batch>t<threads>": windows per second, ...})``.
    """
    if batch_sizes is None:
        top = MAX_BATCH.get(device.type, 64)
        batch_sizes = [2**i for i in range(top.bit_length()) if 2**i <= top]
    thread_counts = list(threads) if threads is not None else _thread_candidates(device)
    before = torch.get_num_threads()
    rates: dict[str, float] = {}
    best = InferenceSettings(batch_sizes[0], thread_counts[0], 0.0, "measured")
    gen = torch.Generator().manual_seed(0)
    try:
        for t in thread_counts:
            if t is not None:
                torch.set_num_threads(t)
            best_here = 0.0
            for b in batch_sizes:
                x = (0.1 * torch.randn(b, window, generator=gen)).to(device)
                seconds = _pass_seconds(forward, x, device)
                rate = b / seconds
                rates[f"b{b}t{t}"] = rate
                if rate > best.windows_per_s:
                    best = InferenceSettings(b, t, rate, "measured")
                if rate < best_here * MIN_GAIN or seconds > PASS_BUDGET_S:
                    break
                best_here = max(best_here, rate)
    finally:
        torch.set_num_threads(before)
    return best, rates


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(path: Path, data: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        log.warning("could not write the inference tuning cache %s: %s", path, e)


def cache_key(model: torch.nn.Module, window: int, device: torch.device, extra: str = "") -> str:
    """The key of a measured choice for this model (:func:`model_signature`) on this device."""
    return "|".join(
        (
            f"v{TUNING_VERSION}",
            device_signature(device),
            f"torch {torch.__version__}",
            model_signature(model, window, extra),
        )
    )


def cached_entry(key: str) -> dict | None:
    """The cached entry of ``key``, or ``None``."""
    entry = _read_cache(tuning_cache_path()).get(key)
    return entry if isinstance(entry, dict) else None


def store_entry(key: str, entry: dict) -> None:
    """Cache ``entry`` under ``key`` (the file is re-read first: other processes may write it)."""
    path = tuning_cache_path()
    data = _read_cache(path)
    data[key] = {**entry, "measured_at": time.time()}
    _write_cache(path, data)


def tuned_settings(
    model: torch.nn.Module,
    forward: Callable[[torch.Tensor], object],
    window: int,
    device: torch.device,
    *,
    extra: str = "",
    retune: bool = False,
) -> InferenceSettings:
    """The cached settings of this model on this device, measured first if there are none.

    Args:
        model: The model (its structure is part of the cache key).
        forward: Its forward pass as inference runs it, ``[batch, window]`` → anything.
        window: Input length in samples.
        device: Where it runs.
        extra: More of the cache key (e.g. an inference optimisation that changes the speed).
        retune: Measure again even if the cache has an entry.

    Returns:
        :class:`InferenceSettings` (``source`` is ``"cache"`` or ``"measured"``).
    """
    key = cache_key(model, window, device, extra)
    entry = cached_entry(key)
    if entry and not retune:
        try:
            return InferenceSettings(
                int(entry["batch_size"]),
                None if entry["threads"] is None else int(entry["threads"]),
                float(entry.get("windows_per_s", 0.0)),
                "cache",
            )
        except (KeyError, TypeError, ValueError):
            pass  # a damaged entry: measure again
    start = time.perf_counter()
    best, rates = measure_settings(forward, window, device)
    log.info(
        "measured inference settings for %s on %s in %.1f s: batch %d, %s threads "
        "(%.1f windows/s); cached in %s",
        type(model).__name__, device_signature(device), time.perf_counter() - start,
        best.batch_size, best.threads, best.windows_per_s, tuning_cache_path(),
    )  # fmt: skip
    entry = {k: v for k, v in asdict(best).items() if k != "source"}
    store_entry(key, {**entry, "rates": rates})
    return best


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` torch intra-op threads (``None``: as set), restoring the setting after."""
    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
