"""Wall time of a ``mnist-mlp`` SGD run through ``python -m bench run`` against the reference
package's own loop (issue 14's target: at most 1.10x).

The reference is the training loop of the README of PyPI ``gradient-descent-the-ultimate-optimizer``
1.0 ("Example"), run as written there: torchvision's ``MNIST`` with ``transforms.ToTensor()``, a
``DataLoader(batch_size=256, shuffle=True)``, ``MNIST_FullyConnected`` wrapped in
``gdtuo.ModuleWrapper`` with ``gdtuo.SGD(0.01)`` (height 0: the table's SGD row), ``mw.begin()``,
``loss.backward(create_graph=True)``, ``mw.step()``, ``loss.item()`` every step; then one
evaluation of the 10,000 test images (the number Table 1 reports). Ours is the same run,
``--method "sgd(lr=0.01)"``, evaluating test once per epoch as the harness does. Both are whole
commands in fresh processes (start-up included), alternated, each round's ratio taken within the
round, the median over rounds::

    BENCH_DATA_DIR=../shared/data python tests/benchmarks/reference_loop_speed.py [--epochs 30]

torchvision reads MNIST from ``ROOT/MNIST/raw`` uncompressed: the script unpacks the idx files of
``$BENCH_DATA_DIR/mnist`` into a temporary folder first (not timed).
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# The README's example, verbatim but for the data root (offline), the epoch count and a final
# test evaluation; the seed makes each round's two runs comparable.
REFERENCE = '''
import math, sys, time
import torch, torchvision
import torch.nn as nn
import torch.nn.functional as F
from gradient_descent_the_ultimate_optimizer import gdtuo

class MNIST_FullyConnected(nn.Module):
    def __init__(self, num_inp, num_hid, num_out):
        super(MNIST_FullyConnected, self).__init__()
        self.layer1 = nn.Linear(num_inp, num_hid)
        self.layer2 = nn.Linear(num_hid, num_out)

    def initialize(self):
        nn.init.kaiming_uniform_(self.layer1.weight, a=math.sqrt(5))
        nn.init.kaiming_uniform_(self.layer2.weight, a=math.sqrt(5))

    def forward(self, x):
        x = self.layer1(x)
        x = torch.tanh(x)
        x = self.layer2(x)
        x = torch.tanh(x)
        x = F.log_softmax(x, dim=1)
        return x

root, EPOCHS = sys.argv[1], int(sys.argv[2])
torch.manual_seed(0)
BATCH_SIZE = 256
DEVICE = 'cpu'
mnist_train = torchvision.datasets.MNIST(root, train=True, download=False,
                                         transform=torchvision.transforms.ToTensor())
mnist_test = torchvision.datasets.MNIST(root, train=False, download=False,
                                        transform=torchvision.transforms.ToTensor())
dl_train = torch.utils.data.DataLoader(mnist_train, batch_size=BATCH_SIZE, shuffle=True)
dl_test = torch.utils.data.DataLoader(mnist_test, batch_size=10000, shuffle=False)
model = MNIST_FullyConnected(28 * 28, 128, 10).to(DEVICE)
optim = gdtuo.SGD(0.01)
mw = gdtuo.ModuleWrapper(model, optimizer=optim)
mw.initialize()
for i in range(1, EPOCHS+1):
    running_loss = 0.0
    for j, (features_, labels_) in enumerate(dl_train):
        mw.begin()
        features, labels = torch.reshape(features_, (-1, 28 * 28)).to(DEVICE), labels_.to(DEVICE)
        pred = mw.forward(features)
        loss = F.nll_loss(pred, labels)
        mw.zero_grad()
        loss.backward(create_graph=True)
        mw.step()
        running_loss += loss.item() * features_.size(0)
    train_loss = running_loss / len(dl_train.dataset)
wrong = 0
with torch.no_grad():
    for features_, labels_ in dl_test:
        pred = mw.forward(torch.reshape(features_, (-1, 28 * 28)))
        wrong += (pred.argmax(dim=1) != labels_).sum().item()
print(f"reference: train loss {train_loss:.4f}, test error {wrong / len(mnist_test):.4f}")
'''


def unpack_mnist(folder: Path) -> Path:
    """``$BENCH_DATA_DIR/mnist/*.gz`` as torchvision expects them, under ``folder/MNIST/raw``."""
    source = Path(os.environ.get("BENCH_DATA_DIR", ROOT.parent / "shared" / "data")) / "mnist"
    raw = folder / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in FILES:
        with gzip.open(source / f"{name}.gz") as src, open(raw / name, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return folder


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    """Seconds for the whole command, which must succeed, and its last line of output."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{command[:4]} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return seconds, (done.stdout.strip().splitlines() or [""])[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        data_root = unpack_mnist(Path(tmp) / "data")
        script = Path(tmp) / "reference_loop.py"
        script.write_text(REFERENCE)
        for r in range(args.rounds):
            store = Path(tmp) / f"round-{r}" / "bench.sqlite"
            store.parent.mkdir()
            ours, line = timed([sys.executable, "-m", "bench", "run", "--workload", "mnist-mlp",
                                "--method", "sgd(lr=0.01)", "--epochs", str(args.epochs),
                                "--store", str(store)])
            ref, ref_line = timed([sys.executable, str(script), str(data_root), str(args.epochs)])
            ratios.append(ours / ref)
            print(f"round {r}: bench run {ours:.1f} s, reference loop {ref:.1f} s, "
                  f"ratio {ours / ref:.3f}\n  ours: {line}\n  {ref_line}", flush=True)
    print(f"median ratio (bench run / reference loop), {args.epochs} epochs, {args.rounds} "
          f"rounds: {statistics.median(ratios):.3f} (target <= 1.10)")


if __name__ == "__main__":
    main()
