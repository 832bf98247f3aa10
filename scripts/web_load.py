"""A class at once: simulated students posting drawings to ``serve``; the load figures in docs/web.md.

Each student is a thread with its own keep-alive connection that posts a drawing (an MNIST test digit as
the 140×140 RGBA PNG the page sends) every ``--every`` seconds for ``--seconds`` seconds, at a steady
pace (a late answer does not make the next one earlier). Prints the round trips' median, 95th percentile
and maximum, the errors, and the load average before and after.

    python scripts/web_load.py MODEL                  # starts `serve MODEL --port 0`, 30 students, 15 s
    python scripts/web_load.py --url http://127.0.0.1:8000/ --students 30
    python scripts/web_load.py MODEL --train          # the same while a training run goes (flux-tutorial)

Loopback only (it refuses any other address) and bounded: at most 200 students for at most 120 s, each
request with a 30 s timeout. Needs the MNIST files.
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import os
import statistics
import sys
import threading
import time
from urllib.parse import urlsplit

from local_server import drawing, start_serve, stop_serve

from pyflux_mnist.mnist import load_mnist

MAX_STUDENTS = 200
MAX_SECONDS = 120.0
TIMEOUT_S = 30.0


def loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Results:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ms: list[float] = []
        self.server_ms: list[float] = []
        self.errors: list[str] = []

    def add(self, ms: float | None, error: str | None = None, server_ms: float = 0.0) -> None:
        with self.lock:
            if error is None and ms is not None:
                self.ms.append(ms)
                self.server_ms.append(server_ms)
            else:
                self.errors.append(error or "?")


def student(
    host: str, port: int, bodies: list[bytes], start: float, every: float, end: float, out: Results
) -> None:
    """Posts ``bodies`` in turn at times start, start + every, ... until ``end``."""
    conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT_S)
    i = 0
    while True:
        due = start + i * every
        if due >= end:
            break
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        body = bodies[i % len(bodies)]
        t0 = time.perf_counter()
        try:
            conn.request("POST", "/api/predict?drawing=1", body, {"Content-Type": "image/png"})
            response = conn.getresponse()
            data = response.read()
            ms = (time.perf_counter() - t0) * 1000
            if response.status == 200:
                out.add(ms, server_ms=json.loads(data)["ms"])
            else:
                out.add(None, f"HTTP {response.status}: {data[:120]!r}")
        except (OSError, http.client.HTTPException) as e:
            out.add(None, f"{type(e).__name__}: {e}")
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT_S)
        i += 1
    conn.close()


def start_training(host: str, port: int, recipe: str, steps: int) -> dict:
    conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT_S)
    spec = {"recipe": recipe, "backend": "numpy", "steps": steps}
    conn.request("POST", "/api/train", json.dumps(spec), {"Content-Type": "application/json"})
    response = conn.getresponse()
    answer = json.loads(response.read())
    if response.status != 202:
        raise SystemExit(f"cannot start the training run: HTTP {response.status}: {answer}")
    return answer


def training_state(host: str, port: int) -> dict:
    conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT_S)
    conn.request("GET", "/api/train")
    return json.loads(conn.getresponse().read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", help="a model file: start `serve MODEL --port 0` for the test")
    parser.add_argument("--url", help="an already running server on this machine instead")
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--every", type=float, default=0.5, help="seconds between a student's drawings")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--train", action="store_true", help="start a training run as the class begins")
    parser.add_argument("--train-recipe", default="flux-tutorial")
    parser.add_argument("--train-steps", type=int, default=200)
    args = parser.parse_args()
    if not 1 <= args.students <= MAX_STUDENTS:
        parser.error(f"--students must be 1 to {MAX_STUDENTS}")
    if not 0 < args.seconds <= MAX_SECONDS:
        parser.error(f"--seconds must be above 0 and at most {MAX_SECONDS:g}")
    if not 0.05 <= args.every <= args.seconds:
        parser.error("--every must be at least 0.05 s and at most --seconds")
    if (args.model is None) == (args.url is None):
        parser.error("give a MODEL file to serve, or --url of a running server (not both)")

    data = load_mnist()
    bodies = [drawing(data.test_images[i]) for i in range(20)]
    proc, url = (None, args.url) if args.url else start_serve(args.model)
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 80
    if not loopback(host):
        raise SystemExit(f"this load test only talks to this machine (127.0.0.1, localhost), not {host!r}")
    try:
        print(f"{args.students} students, a drawing each every {args.every:g} s for {args.seconds:g} s")
        print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        if args.train:
            s = start_training(host, port, args.train_recipe, args.train_steps)
            print(f"training run started: {s['recipe']} on {s['backend']}, {args.train_steps} steps")
        out = Results()
        t0 = time.monotonic() + 0.5
        end = t0 + args.seconds
        threads = [
            threading.Thread(
                target=student,
                args=(host, port, bodies[k % 20 :] + bodies[: k % 20], t0 + k * args.every / args.students,
                      args.every, end, out),
                daemon=True,
            )
            for k in range(args.students)
        ]  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=args.seconds + TIMEOUT_S + 5)
        load_after = os.getloadavg()[0]
        ms = sorted(out.ms)
        if ms:
            p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
            print(
                f"{len(ms)} answers, {len(out.errors)} errors: "
                f"round trip median {statistics.median(ms):.1f} ms, "
                f"p95 {p95:.1f} ms, max {ms[-1]:.1f} ms; the server's own work: median "
                f"{statistics.median(out.server_ms):.1f} ms"
            )
        else:
            print(f"no answers, {len(out.errors)} errors")
        for e in sorted(set(out.errors))[:5]:
            print(f"  error: {e}")
        if args.train:
            s = training_state(host, port)
            print(
                f"training run: {s.get('state')}, step {s.get('step')} of {s.get('total')} "
                f"after {s.get('seconds')} s"
            )
        print(f"load average after: {load_after:.2f}")
        if out.errors:
            sys.exit(1)
    finally:
        if proc is not None:
            stop_serve(proc)


if __name__ == "__main__":
    main()
