"""Latency and load of `sdn serve` through its HTTP API, on localhost only.

Starts `sdn serve` on a free 127.0.0.1 port (a given --checkpoint, or an untrained generator of
the given shape with the real all-MiniLM-L6-v2 text encoder: latency depends on the shape, not on
the weights), then
  1. warm latency: N sequential requests of one caption each, p50 / p95 / max;
  2. load: C concurrent clients, each sending requests back to back for S seconds: answered,
     errors, latency under load, and the server's resident memory before and after.
A request is the whole round trip a script makes: POST /gradio_api/call/draw, read the event
stream to its result, download the PNG and decode it.

    python benchmarks/serve_latency.py --requests 50 --clients 32 --seconds 60
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from io import BytesIO
from pathlib import Path

import httpx
from PIL import Image

CAPTIONS = ["a flower with bright red petals", "this flower has large yellow petals and a dark center",
            "the petals are white and the stamen is long and yellow", "a purple flower with thin pointed petals",
            "this flower is pink with many layered petals", "an orange flower with spotted petals"]


def untrained_model(folder: Path, teacher: str, fc_dim: int, size: int) -> Path:
    from sdn.networks.generator import Generator
    from sdn.networks.teachers import teacher_taps
    from sdn.training.checkpoint import export_generator

    config = {"teacher": teacher, "resolution": size, "text_encoder": "all-minilm-l6-v2", "text_dim": 384,
              "fc_dim": fc_dim, "n_outputs": 1, "precision": "fp32", "step": 0}
    return export_generator(Generator(teacher_taps(teacher), size, 384, fc_dim, 1), config, folder / "generator.safetensors")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def draw(client: httpx.Client, base: str, caption: str, model: str) -> float:
    started = time.perf_counter()
    r = client.post(f"{base}/gradio_api/call/draw", json={"data": [caption, model]})
    r.raise_for_status()
    kind = data = None
    with client.stream("GET", f"{base}/gradio_api/call/draw/{r.json()['event_id']}") as stream:
        stream.raise_for_status()
        for line in stream.iter_lines():
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:") and kind in ("complete", "error"):
                data = line[5:].strip()
                break
    if kind != "complete":
        raise RuntimeError(f"{kind}: {data}")
    gallery, message = json.loads(data)
    if not gallery:
        raise RuntimeError(message)
    png = client.get(gallery[0]["image"]["url"])
    png.raise_for_status()
    Image.open(BytesIO(png.content)).load()  # a complete PNG, or an exception
    return time.perf_counter() - started


def percentiles(seconds: list[float]) -> dict:
    ms = sorted(s * 1000 for s in seconds)
    if not ms:
        return {}
    q = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else [ms[0]] * 99
    return {"n": len(ms), "p50_ms": round(q[49], 1), "p95_ms": round(q[94], 1), "max_ms": round(ms[-1], 1)}


def load(base: str, model: str, clients: int, seconds: float) -> dict:
    latencies, errors, lock = [], {}, threading.Lock()
    deadline = time.monotonic() + seconds

    def client_loop(k: int) -> None:
        with httpx.Client(timeout=120) as client:
            i = 0
            while time.monotonic() < deadline:
                try:
                    latency = draw(client, base, CAPTIONS[(k + i) % len(CAPTIONS)], model)
                    with lock:
                        latencies.append(latency)
                except Exception as e:  # counted and reported, the run goes on
                    with lock:
                        key = f"{type(e).__name__}: {str(e)[:120]}"
                        errors[key] = errors.get(key, 0) + 1
                i += 1

    threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    return {"clients": clients, "seconds": round(wall, 1), "answered": len(latencies), "errors": sum(errors.values()),
            "error_kinds": errors, "requests_per_s": round(len(latencies) / wall, 1), **percentiles(latencies)}


def start_server(model: str, port: int, max_batch_size: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "sdn", "serve", "--checkpoint", model, "--port", str(port), "--max-batch-size", str(max_batch_size)]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in server.stdout:  # the server says where it listens once it is ready
        print(f"  server: {line.rstrip()}", file=sys.stderr)
        if "listening on" in line:
            threading.Thread(target=server.stdout.read, daemon=True).start()  # keep draining its output
            return server
    raise RuntimeError(f"sdn serve exited with {server.wait()}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", help="a model to serve (default: an untrained generator of --teacher's shape)")
    p.add_argument("--teacher", default="efficientnet-lite0", help="shape of the untrained generator")
    p.add_argument("--fc-dim", type=int, default=1024)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--requests", type=int, default=50, help="sequential requests for the warm latency")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--rounds", type=int, default=1, help="load rounds, memory read after each (growth that stops is warm-up; growth that goes on is a leak)")
    p.add_argument("--max-batch-size", type=int, default=16)
    p.add_argument("--json", help="also write the results here")
    a = p.parse_args()
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    with tempfile.TemporaryDirectory() as tmp:
        model = a.checkpoint or str(untrained_model(Path(tmp), a.teacher, a.fc_dim, a.size))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = start_server(model, port, a.max_batch_size)
        base = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(timeout=120) as client:
                for caption in CAPTIONS:  # warm-up: first calls pay one-time costs
                    draw(client, base, caption, model)
                warm = percentiles([draw(client, base, CAPTIONS[i % len(CAPTIONS)], model) for i in range(a.requests)])
            rss = [rss_mib(server.pid)]
            rounds = []
            for _ in range(a.rounds if a.clients else 0):
                rounds.append(load(base, model, a.clients, a.seconds))
                time.sleep(2)
                rss.append(rss_mib(server.pid))
        finally:
            server.terminate()
            server.wait(timeout=30)
    result = {"model": a.checkpoint or f"untrained {a.teacher} generator, fc {a.fc_dim}, {a.size} px, all-minilm-l6-v2",
              "cpu_count": os.cpu_count(), "warm_latency": warm, "load_rounds": rounds,
              "rss_mib_before_and_after_each_round": [round(r, 1) for r in rss],
              "rss_change_percent": round(100 * (rss[-1] - rss[0]) / rss[0], 1)}
    print(json.dumps(result, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
