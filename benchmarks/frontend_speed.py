"""Log-mel features for a batch of 32 x 30 s: musictag's frontend against librosa and torchaudio.

All methods compute the same log-mel spectrogram (16 kHz, n_fft 512, hop 256, 96 HTK mel bands up
to 8 kHz, power 2, reflect padding, ``10 log10(max(x, 1e-10))``) of the same audio, in this
process, interleaved, best of ``--repeats``:

* ``librosa`` per clip (``melspectrogram`` + ``power_to_db``): what a Dataset computes per item;
* ``torchaudio`` ``MelSpectrogram`` + ``AmplitudeToDB`` on the batch;
* ``LogMelFrontend(stft="fft")``: ``torch.stft`` + mel matmul, the CPU default of ``"auto"``;
* ``LogMelFrontend(stft="conv")``: nnAudio's conv1d STFT, the default on other devices.

The torch methods run with the default thread count and with one thread (librosa is mostly
single-threaded), and on ``--device`` (librosa always runs on the CPU; on CUDA the torch times
include a synchronisation).

    python benchmarks/frontend_speed.py
    python benchmarks/frontend_speed.py --device cuda --batch 128   # the GPU figure
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence

import librosa
import numpy as np
import torch

try:
    from benchmarks import _common as common
except ImportError:  # run as a file: python benchmarks/frontend_speed.py
    import _common as common

from musictag.frontend import LogMelFrontend

SR, N_FFT, HOP, N_MELS, F_MAX = 16000, 512, 256, 96, 8000.0


def methods(device: str) -> dict[str, Callable[[torch.Tensor], object]]:
    """name -> function of a ``[batch, samples]`` CPU tensor."""
    fft = LogMelFrontend(n_mels=N_MELS, standardize=False, stft="fft").to(device).eval()
    conv = LogMelFrontend(n_mels=N_MELS, standardize=False, stft="conv").to(device).eval()

    def librosa_per_clip(x: torch.Tensor) -> object:
        out = []
        for clip in x.numpy():
            mel = librosa.feature.melspectrogram(
                y=clip,
                sr=SR,
                n_fft=N_FFT,
                hop_length=HOP,
                n_mels=N_MELS,
                fmax=F_MAX,
                htk=True,
                norm=None,
                pad_mode="reflect",
            )
            out.append(librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None))
        return np.stack(out)

    def on_device(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], object]:
        def run(x: torch.Tensor) -> object:
            with torch.inference_mode():
                y = fn(x.to(device))
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
            return y

        return run

    found = {"librosa (per clip)": librosa_per_clip}
    try:  # the `bench` extra; never a core dependency (see docs/install.md)
        import torchaudio

        ta_mel = torchaudio.transforms.MelSpectrogram(
            SR, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS, f_max=F_MAX, mel_scale="htk"
        ).to(device)
        ta_db = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=None).to(device)
        found["torchaudio"] = on_device(lambda x: ta_db(ta_mel(x)))
    except (ImportError, OSError) as err:  # OSError: a torchaudio built for another torch
        print(f"torchaudio row left out ({type(err).__name__}: {err}); pip install '.[bench]'")
    found["LogMelFrontend fft"] = on_device(fft)
    found["LogMelFrontend conv"] = on_device(conv)
    return found


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, nargs="+", default=None, help="default: N and 1")
    args = parser.parse_args(argv)

    x = torch.from_numpy(
        np.stack(
            [
                common.synth_track(args.seconds, SR, seed=i, channels=1)[:, 0]
                for i in range(args.batch)
            ]
        )
    )
    fns = methods(args.device)
    # the same features, whichever way (float32 round-off; librosa computes in float32 too)
    ref = fns["librosa (per clip)"](x[:2])
    for name, fn in fns.items():
        out = fn(x[:2])
        out = out.cpu().numpy() if isinstance(out, torch.Tensor) else out
        err = np.abs(out.reshape(ref.shape) - ref).max()
        assert err < 0.05, f"{name} differs from librosa by {err} dB"

    print(common.machine())
    print(f"batch of {args.batch} x {args.seconds:g} s at {SR} Hz on {args.device}")
    default_threads = torch.get_num_threads()
    rows = []
    for threads in args.threads or sorted({default_threads, 1}, reverse=True):
        torch.set_num_threads(threads)
        for fn in fns.values():  # warm-up: caches, FFT plans, CUDA kernels
            fn(x[:2])
        best = {name: float("inf") for name in fns}
        for _ in range(args.repeats):  # interleaved, so that load changes hit every method
            for name, fn in fns.items():
                start = time.perf_counter()
                fn(x)
                best[name] = min(best[name], time.perf_counter() - start)
        for name, seconds in best.items():
            rows.append(
                [
                    name,
                    threads,
                    seconds * 1e3,
                    args.batch / seconds,
                    best["librosa (per clip)"] / seconds,
                ]
            )
    torch.set_num_threads(default_threads)
    print(common.table(["method", "torch threads", "ms/batch", "clips/s", "vs librosa"], rows))
    print(f"load average after: {common.load()}")


if __name__ == "__main__":
    main()
