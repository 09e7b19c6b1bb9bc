"""Golden behaviour of names (issue 17): the canonical name and run id of every method of every
shipped suite, and ``str()`` of a table of towers, pinned before the code that makes them moved.

Run ids are the keys of every results store: a change here orphans stored runs. When a change is
meant (a new suite, a new CODE_VERSION), regenerate with ``python tests/test_golden_names.py``
and say why in the commit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

GOLDEN = Path(__file__).parent / "golden" / "names.json"

# A table of towers: each family at heights 0-2, spellings with defaults, positional step
# sizes, options and aliases, so that every formatting path prints.
TOWER_SPECS = (
    "sgd(0.1)", "sgd(lr=0.1, momentum=0.9)", "sgd(0.01)/sgd(0.01)", "sgd(0.05)/sgd(0.01)/sgd(1e-4)",
    "sgd(lr=0.1, momentum=0.9, nesterov=true, weight_decay=1e-4)/sgd(1e-4)",
    "adam(1e-3)", "adam(lr=0.001, beta2=0.99, v0=1e-8)/sgd(1e-5)",
    "adam(lr=0.001, learn=lr)/adam(lr=1e-4)", "adamw(lr=0.001, weight_decay=0.01)/sgd(1e-5)",
    "adagrad(lr=0.01, initial_accumulator_value=0.1, eps_inside=true)/sgd(0.01)",
    "rmsprop(lr=0.001)/sgd(1e-4)", "rmsprop(lr=0.01, eps_inside=true)/adam(0.1)/sgd(1e-5)",
    "sgd(lr=1.0)/adam(lr=1.0)/sgd(lr=0.00001)",
)


def current() -> dict:
    from bench.methods import parse_method
    from bench.suite import available_suites, load_suite
    from hypergrad import tower

    suites = {}
    for name in sorted(available_suites()):
        plan = load_suite(name).plan()
        suites[name] = [[c.workload, parse_method(c.method).name, c.seed, c.run_id] for c in plan]
    params = [torch.nn.Parameter(torch.zeros(2))]
    towers = {spec: str(tower(spec, params)) for spec in TOWER_SPECS}
    return {"suites": suites, "towers": towers}


@pytest.mark.parametrize("part", ["suites", "towers"])
def test_names_and_run_ids_are_unchanged(part: str):
    expected = json.loads(GOLDEN.read_text())[part]
    got = current()[part]
    if part == "suites":
        assert sorted(got) == sorted(expected), "the shipped suites changed"
        for name in expected:
            assert got[name] == expected[name], f"suite {name}: names or run ids changed"
    else:
        assert got == expected


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    GOLDEN.write_text(json.dumps(current(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
