"""The figures in docs/images.md for photos of a sheet on a desk (run by hand, not by pytest).

    python tests/photo_figures.py MODEL.npz [--n 200] [--mnist 10000] [--timing]

Prints Markdown tables: accuracy of MODEL on the raw 28×28 test digits and on desk photos of the same
digits (tests/desk_photos.py) per kind of disturbance; MNIST's own test digits through the pipeline vs the
arrays fed directly; the time to preprocess a 12 MP JPEG (median of 5).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from desk_photos import KINDS, desk_photo

from pyflux_mnist import photo
from pyflux_mnist.errors import ImageError
from pyflux_mnist.mnist import load_mnist
from pyflux_mnist.model import load_model


def read(model: object, images: list, labels: np.ndarray) -> tuple[float, int]:
    """Accuracy over all images (an error counts as wrong) and the number of errors."""
    digits, ok, errors = [], [], 0
    for i, img in enumerate(images):
        try:
            digits.append(photo.preprocess(img))
            ok.append(i)
        except ImageError:
            errors += 1
    right = 0
    if ok:
        pred = model.predict(np.stack(digits))  # type: ignore[attr-defined]
        right = int(np.sum(pred == labels[ok]))
    return right / len(images), errors


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--n", type=int, default=200, help="photos per kind (the first N test digits)")
    ap.add_argument("--mnist", type=int, default=10000, help="test digits through the pipeline")
    ap.add_argument("--timing", action="store_true")
    ap.add_argument("--kinds", default=",".join(KINDS))
    args = ap.parse_args()
    model = load_model(args.model)
    data = load_mnist(os.environ["PYFLUX_MNIST_DATA"], offline=True)
    x, y = data.test_images, data.test_labels
    n = args.n
    base = model.accuracy(x[:n], y[:n])
    print(f"| rendering ({n} test digits each) | accuracy | errors | vs raw |\n|---|---|---|---|")
    print(f"| raw 28×28 digits | {base:.3f} | | |")
    for kind in args.kinds.split(",") if args.kinds else []:
        rng = np.random.default_rng(1000 + KINDS.index(kind))
        t = time.time()
        photos = [desk_photo(x[i], rng, kind) for i in range(n)]
        acc, err = read(model, photos, y[:n])
        print(f"| {kind} | {acc:.3f} | {err} | {100 * (acc - base):+.1f} |  <!-- {time.time() - t:.0f} s -->")
        sys.stdout.flush()
    m = args.mnist
    if m:
        raw = model.accuracy(x[:m], y[:m])
        piped, err = read(model, list(x[:m]), y[:m])
        print(
            f"\nMNIST test digits ({m}): raw {raw:.4f}, through the pipeline {piped:.4f} ({err} errors), "
            f"{100 * (piped - raw):+.2f} points"
        )
    if args.timing:
        rng = np.random.default_rng(7)
        buf = io.BytesIO()
        desk_photo(x[0], rng, "noise", side=4000).save(buf, "JPEG", quality=90)  # 4000 x 3000, grainy
        path = Path("/tmp") / f"photo-figures-{os.getpid()}.jpg"
        path.write_bytes(buf.getvalue())
        times, cpu = [], []
        for _ in range(5):
            t, c = time.perf_counter(), time.process_time()
            photo.preprocess(path)
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        path.unlink()
        print(
            f"12 MP JPEG ({len(buf.getvalue()) / 1e6:.1f} MB): median {np.median(times):.3f} s of 5 "
            f"({', '.join(f'{s:.3f}' for s in times)}); CPU time median {np.median(cpu):.3f} s; "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        )


if __name__ == "__main__":
    main()
