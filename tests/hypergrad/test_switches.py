"""torch.optim's switches with torch's meaning, for every family (table.SWITCH_ROWS, FAMILIES).

``maximize`` and Adam's ``amsgrad``/``decoupled_weight_decay`` equal torch.optim at height 0 on
both paths; at height 1 ``maximize`` is minimising the negated objective, bit for bit;
``foreach=False`` gives the numbers of the default; ``fused``, ``capturable`` and
``differentiable`` are accepted at torch's defaults and refused at ``True`` with a message; every
argument of torch's constructor is one of ours; a torch checkpoint saved with ``maximize=True``
goes on maximising.
"""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F

import hypergrad
from tests.hypergrad import helpers
from tests.hypergrad.table import FAMILIES, SWITCH_ROWS

STEPS = 12
CLASSES = {"sgd": hypergrad.SGD, "adam": hypergrad.Adam, "adamw": hypergrad.AdamW,
           "adagrad": hypergrad.Adagrad, "rmsprop": hypergrad.RMSprop}


def _family(spec: str) -> type[hypergrad.Tower]:
    return CLASSES[spec.partition("(")[0]]


def _run(opt, model, batches, steps, sign=1.0):
    """The ordinary loop on ``sign * cross_entropy``; the losses and learned values."""
    losses, hypers = [], []
    for s in range(steps):
        x, y = batches[s % len(batches)]
        opt.zero_grad()
        loss = sign * F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        hypers.append(opt.hyperparameters() if isinstance(opt, hypergrad.Tower) else {})
    return losses, hypers


@pytest.mark.parametrize(("spec", "make_torch"), SWITCH_ROWS, ids=[s for s, _ in SWITCH_ROWS])
def test_height_0_switches_equal_torch_optim(spec, make_torch, path):
    """Bit for bit on the float path (torch's for-loop, operation for operation); to float64
    rounding on the tensor path (a group steps as one flat vector)."""
    batches = helpers.random_batches(4, dtype=torch.float64)
    model = helpers.mlp(dtype=torch.float64)
    twin = helpers.clone_model(model)
    opt = hypergrad.tower(spec, model.parameters())
    ref = make_torch(twin.parameters())
    losses, _ = _run(opt, model, batches, STEPS)
    ref_losses, _ = _run(ref, twin, batches, STEPS)
    if path:
        assert losses == ref_losses
    helpers.assert_same_weights(model, twin, exact=path)
    if "maximize" in spec:
        assert losses[-1] > losses[0]  # it went uphill


@pytest.mark.parametrize(("spec", "kappa", "make_torch"), FAMILIES, ids=[f[0] for f in FAMILIES])
def test_maximize_at_height_1_is_minimising_the_negated_loss(spec, kappa, make_torch, path):
    batches = helpers.random_batches(4)
    tall = f"{spec}/sgd({kappa!r})"
    model = helpers.mlp(dtype=torch.float32)
    twin = helpers.clone_model(model)
    up = hypergrad.tower(helpers.with_args(tall, "maximize=true"), model.parameters())
    down = hypergrad.tower(tall, twin.parameters())
    assert up.param_groups[0]["maximize"] and not down.param_groups[0]["maximize"]
    up_losses, up_hypers = _run(up, model, batches, STEPS, sign=-1.0)
    down_losses, down_hypers = _run(down, twin, batches, STEPS)
    assert [-x for x in up_losses] == down_losses
    assert up_hypers == down_hypers
    assert down_hypers[-1]["0.lr"] != down_hypers[0]["0.lr"]  # the step size was learned
    helpers.assert_same_weights(model, twin)


@pytest.mark.parametrize("height", [0, 1])
@pytest.mark.parametrize(("spec", "kappa", "make_torch"), FAMILIES, ids=[f[0] for f in FAMILIES])
def test_foreach_false_gives_the_same_numbers(spec, kappa, make_torch, height, path):
    """Tensor by tensor (torch's for-loop) instead of the flat group: the same trajectory, to
    float64 rounding; bit for bit on the float path, whose default (one ``torch._foreach_*``
    call per operation) runs the for-loop's kernels tensor by tensor."""
    batches = helpers.random_batches(4, dtype=torch.float64)
    tall = spec + f"/sgd({kappa!r})" * height
    model = helpers.mlp(dtype=torch.float64)
    twin = helpers.clone_model(model)
    default = hypergrad.tower(tall, model.parameters())
    loop = _family(spec)(twin.parameters(), **_kwargs(default), foreach=False,
                         hyper=None if height == 0 else f"sgd({kappa!r})")
    assert loop.param_groups[0]["foreach"] is False
    losses, hypers = _run(default, model, batches, STEPS)
    loop_losses, loop_hypers = _run(loop, twin, batches, STEPS)
    if path:
        assert (losses, hypers) == (loop_losses, loop_hypers)
    else:
        torch.testing.assert_close(torch.tensor(losses), torch.tensor(loop_losses), rtol=1e-12,
                                   atol=0)
        for key in hypers[0]:
            assert hypers[-1][key] == pytest.approx(loop_hypers[-1][key], rel=1e-10)
    helpers.assert_same_weights(model, twin, exact=path)


def _kwargs(opt: hypergrad.Tower) -> dict:
    """The constructor arguments of level 0 of ``opt`` (its config, without torch's switches)."""
    return {k: v for k, v in opt._config.items() if k not in ("foreach", "fused", "capturable",
                                                              "differentiable")}


UNSUPPORTED = [(cls_name, switch) for cls_name, cls in CLASSES.items()
               for switch in ("fused", "capturable", "differentiable")
               if switch in inspect.signature(getattr(torch.optim, cls.__name__)).parameters]


@pytest.mark.parametrize(("name", "switch"), UNSUPPORTED, ids=[f"{n}-{s}" for n, s in UNSUPPORTED])
def test_fused_capturable_differentiable_at_true_raise_with_a_message(name, switch):
    cls = CLASSES[name]
    model = helpers.mlp(dtype=torch.float32)
    for height in (0, 1):
        hyper = None if height == 0 else "sgd(1e-5)"
        opt = cls(model.parameters(), **{switch: False}, hyper=hyper)  # torch's default: fine
        assert opt.param_groups[0][switch] is False
        with pytest.raises(hypergrad.UnsupportedError,
                           match=rf"{name}: {switch}=True is not supported.*use {switch}="):
            cls(model.parameters(), **{switch: True}, hyper=hyper)
    with pytest.raises(RuntimeError):  # torch's type for an unsupported switch, too
        cls(model.parameters(), **{switch: True})


@pytest.mark.parametrize("name", list(CLASSES))
def test_every_argument_of_torchs_constructor_is_accepted(name):
    """torch's signature is a subset of ours (same names), so a drop-in call never fails on a
    keyword; the positional arguments are in torch's order."""
    ours = inspect.signature(CLASSES[name].__init__).parameters
    torch_cls = getattr(torch.optim, CLASSES[name].__name__)
    theirs = inspect.signature(torch_cls.__init__).parameters
    assert set(theirs) <= set(ours), set(theirs) - set(ours)
    positional = [n for n, p in theirs.items() if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert [n for n, p in ours.items() if p.kind is p.POSITIONAL_OR_KEYWORD][:len(positional)] \
        == positional


@pytest.mark.parametrize("height", [0, 1])
def test_a_torch_sgd_checkpoint_saved_with_maximize_loads_and_maximises(height, path):
    batches = helpers.random_batches(4, dtype=torch.float64)
    model = helpers.mlp(dtype=torch.float64)
    ref = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, maximize=True)
    _run(ref, model, batches, 3)
    twin = helpers.clone_model(model)
    opt = hypergrad.SGD(twin.parameters(), lr=0.05, momentum=0.9,
                        hyper=None if height == 0 else "sgd(1e-30)")  # (1e-30: barely moves)
    opt.load_state_dict(helpers.saved(ref.state_dict()))
    assert opt.param_groups[0]["maximize"] is True
    losses, _ = _run(opt, twin, batches, STEPS)
    ref_losses, _ = _run(ref, model, batches, STEPS)
    assert losses[-1] > losses[0]
    if height == 0 and path:
        assert losses == ref_losses
        helpers.assert_same_weights(model, twin)
    else:
        torch.testing.assert_close(torch.tensor(losses), torch.tensor(ref_losses), rtol=1e-9,
                                   atol=0)
