"""Where a tower's ``step()`` spends its time on a GPU: aten calls, CUDA kernels and CPU time per
step, and the slowest calls, for a few towers on ResNet-20 (a diagnostic, not a test)::

    python tests/benchmarks/profile_step.py [--device cuda] [SPEC ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import hypergrad  # noqa: E402
from bench.models import ResNet20  # noqa: E402

SPECS = ("sgd(0.01)/sgd(1e-5)", "adam(1e-3, learn=lr)/sgd(1e-5)", "adam(1e-3)/sgd(1e-5)")


def sync_points(opt: torch.optim.Optimizer) -> None:
    """Print where a ``step()`` waits for the device (a hidden ``.item()`` or a host copy), if
    anywhere: torch's sync debug mode turned into an error, with its traceback."""
    import traceback

    torch.cuda.set_sync_debug_mode("error")
    try:
        opt.step()
        print("  no device sync in step()")
    except RuntimeError:
        print("  step() syncs with the device here:")
        traceback.print_exc(limit=-6, file=sys.stdout)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("specs", nargs="*", default=list(SPECS))
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        hypergrad.Tower.cpu_floats = False  # the accelerator's path
    x = torch.randn(128, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (128,), device=device)
    for spec in args.specs:
        torch.manual_seed(0)
        model = ResNet20().to(device)
        if spec.startswith("torch."):  # a plain torch.optim optimizer: torch.Adam, torch.SGD
            opt = getattr(torch.optim, spec[6:])(model.parameters(), lr=1e-3)
        else:
            opt = hypergrad.tower(spec, model.parameters())
        for _ in range(3):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        if device.type == "cuda":
            sync_points(opt)
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        sync()
        start, n = time.perf_counter(), 20
        for _ in range(n):
            opt.step()
        sync()
        ms = (time.perf_counter() - start) / n * 1e3
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA]
                                               if device.type == "cuda" else [])
        with profile(activities=activities) as prof:
            opt.step()
            sync()
        events = prof.events()
        aten = [e for e in events if e.name.startswith("aten::") and (
            e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))]
        kernels = [e for e in events if e.device_type.name == "CUDA"]
        print(f"{spec}: step() {ms:.2f} ms; {len(aten)} top-level aten calls, "
              f"{len(kernels)} CUDA kernels/copies")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
