"""Training throughput of the presynaptic MLP (784-200-200-10, batch 100) on MNIST.

Prints, measured in this one process: the machine's dense-matmul GFLOP/s, a plain deterministic
PyTorch loop of the same MLP (nn.Linear + SGD: the floor the matmuls set), our engine for one
presynaptic run (eager and compiled), and R runs batched into one computation against R runs one
after another. Usage: ``python benchmarks/throughput.py [--runs 18] [--steps 600]``.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace

import torch

from lib.bgd import BGD_SETTINGS, BayesianMLP
from lib.data import write_atomic
from lib.experiments import machine, results_root
from lib.model import StochasticMLP, presynaptic
from lib.tasks import Benchmark, Task, make_benchmark
from lib.train import compile_available, default_device, fit

SIZES = [784, 200, 200, 10]
BATCH = 100
FLOP_PER_SAMPLE = 6 * sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:]))  # forward 2, backward 4 per weight


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_gflops(device: torch.device, n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return repeats * 2 * n**3 / (time.perf_counter() - start) / 1e9


def plain_loop(x: torch.Tensor, y: torch.Tensor, steps: int, device: torch.device) -> float:
    """Samples/s of a textbook deterministic PyTorch loop (autograd, torch.optim.SGD)."""
    torch.manual_seed(0)
    layers = [torch.nn.Linear(a, b) for a, b in zip(SIZES[:-1], SIZES[1:])]
    net = torch.nn.Sequential(layers[0], torch.nn.ReLU(), layers[1], torch.nn.ReLU(), layers[2]).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    order = torch.randperm(x.shape[0], device=device)

    def step(i: int) -> None:
        idx = order[(i * BATCH) % (x.shape[0] - BATCH):][:BATCH]
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
        opt.step()

    for i in range(20):
        step(i)
    sync(device)
    start = time.perf_counter()
    for i in range(steps):
        step(i)
    sync(device)
    return steps * BATCH / (time.perf_counter() - start)


def engine(task: Task, runs: int, steps: int, compile: bool, device: torch.device, bgd: bool = False) -> float:
    """Samples/s (summed over runs) of :func:`lib.train.fit` without evaluation (presynaptic or BGD runs)."""
    n = steps * BATCH
    part = Benchmark("throughput", (Task("mnist", task.train_x[:n], task.train_y[:n], task.test_x, task.test_y),), 10)
    warm = Benchmark("warm-up", (Task("mnist", task.train_x[: 20 * BATCH], task.train_y[: 20 * BATCH], task.test_x, task.test_y),), 10)

    def network() -> StochasticMLP:
        if bgd:
            return BayesianMLP(SIZES, [replace(BGD_SETTINGS["perm_mnist"], seed=s) for s in range(runs)], device, compile)
        return StochasticMLP(SIZES, [presynaptic(seed=s) for s in range(runs)], device)

    seconds = []
    for bench in (warm, part):
        net = network()
        step = net.train_step if bgd else None
        seconds.append(fit(net, bench, epochs=1, eval_every="never", compile=compile, progress=False, step=step).seconds)
        sync(device)
    return runs * steps * BATCH / seconds[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=18, help="runs trained together in the batched measurement")
    parser.add_argument("--steps", type=int, default=600, help="mini-batch steps per measurement (600 = one epoch)")
    args = parser.parse_args()
    device = default_device()
    task = make_benchmark("mnist", device=device).tasks[0]
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"{platform.processor() or platform.machine()} CPU"
    print(f"device: {name}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    gflops = matmul_gflops(device)
    print(f"dense matmul (2048x2048): {gflops:.0f} GFLOP/s")
    plain = plain_loop(task.train_x, task.train_y, args.steps, device)
    print(f"plain PyTorch loop (nn.Linear + SGD, deterministic): {plain:,.0f} samples/s")
    compiled = compile_available()
    eager = engine(task, 1, args.steps, False, device)
    print(f"presynaptic, 1 run, eager: {eager:,.0f} samples/s")
    single = eager
    if compiled:
        single = engine(task, 1, args.steps, True, device)
        print(f"presynaptic, 1 run, compiled: {single:,.0f} samples/s")
    batch_steps = max(1, args.steps // args.runs * 3)
    batched = engine(task, args.runs, batch_steps, compiled, device)
    print(f"presynaptic, {args.runs} runs batched: {batched:,.0f} samples/s in all")
    print(f"batched / sequential: {batched / single:.2f}x")
    bgd_samples = BGD_SETTINGS["perm_mnist"].mc_samples
    bgd = engine(task, 1, max(1, args.steps // 5), compiled, device, bgd=True)
    print(f"BGD ({bgd_samples} Monte-Carlo samples), 1 run: {bgd:,.0f} samples/s = {bgd / plain:.1%} of the plain loop "
          f"(target: 1/{bgd_samples} = {1 / bgd_samples:.0%})")
    single_peak, plain_peak = (rate * FLOP_PER_SAMPLE / 1e9 / gflops for rate in (single, plain))
    print(f"share of the plain loop: {single / plain:.0%}; of the matmul peak: {single_peak:.0%} "
          f"(plain loop: {plain_peak:.0%}; {FLOP_PER_SAMPLE / 1e6:.2f} MFLOP per training sample)")
    print(f"single run: {single:.0f} samples/s")
    measured = {
        "device": f"{machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "dense matmul (GFLOP/s)": round(gflops),
        "plain PyTorch loop (samples/s)": round(plain),
        "presynaptic, 1 run (samples/s)": round(single),
        f"presynaptic, {args.runs} runs batched (samples/s in all)": round(batched),
        "batched / sequential": round(batched / single, 2),
        "presynaptic / plain loop": round(single / plain, 2),
        "plain loop / matmul peak": round(plain_peak, 2),
        "presynaptic / matmul peak": round(single_peak, 2),
        f"BGD, {bgd_samples} samples, 1 run (samples/s)": round(bgd),
        "BGD / plain loop": round(bgd / plain, 3),
    }
    write_atomic(results_root() / "benchmarks" / "throughput.json", json.dumps(measured, indent=1).encode())


if __name__ == "__main__":
    main()
