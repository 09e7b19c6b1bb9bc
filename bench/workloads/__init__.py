"""The registry of workloads: ``WORKLOADS`` (name -> class) and ``get_workload(name)``."""

from __future__ import annotations

from bench.errors import unknown_name
from bench.workloads.base import Data, Split, Workload
from bench.workloads.cifar import Cifar10ResNet20, Cifar10SubsetResNet20
from bench.workloads.mnist import FashionMLP, MnistLogReg, MnistMLP, MnistMLP1000
from bench.workloads.warpeace import WarPeaceLSTM

WORKLOADS: dict[str, type[Workload]] = {
    cls.name: cls
    for cls in (
        MnistMLP,
        MnistLogReg,
        MnistMLP1000,
        FashionMLP,
        Cifar10ResNet20,
        Cifar10SubsetResNet20,
        WarPeaceLSTM,
    )
}


def get_workload(name: str) -> Workload:
    """A fresh workload by name (cheap: no data is loaded until ``load_data``).

    Raises:
        UserError: ``name`` is not registered; the message lists the valid names.
    """
    try:
        cls = WORKLOADS[name]
    except KeyError:
        raise unknown_name("workload", name, list(WORKLOADS)) from None
    return cls()


__all__ = ["WORKLOADS", "Data", "Split", "Workload", "get_workload"]
