"""The training loop (``bench.train``) and the ``towers`` method family, on real MNIST."""

from __future__ import annotations

import math
import re

import pytest
import torch

from bench.config import Budget, RunConfig
from bench.errors import UserError
from bench.methods import parse_method
from bench.methods.towers import TorchMethod, format_value, parse_call
from bench.record import DIVERGED, DONE, FAILED
from bench.train import _finite_parameters, resolve_device, train

pytestmark = pytest.mark.usefixtures("bench_data_dir")

WORKLOAD = "mnist-mlp"


def config(
    method: str, budget: Budget, seed: int = 0, workload: str = WORKLOAD, **options: object
) -> RunConfig:
    return RunConfig(workload, parse_method(method).name, seed, budget, "cpu").with_options(
        **options
    )


def comparable(result) -> dict:
    """Everything a run produced except its timings (and provenance, which has the time)."""
    evals = [{k: v for k, v in p.items() if k != "cost_seconds"} for p in result.curves["eval"]]
    curves = {k: v for k, v in result.curves.items() if k != "eval"}
    return {
        "run_id": result.run_id,
        "status": result.status,
        "metrics": result.metrics,
        "evals": evals,
        "curves": curves,
        "steps": result.cost["steps"],
    }


# -- the loop ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_one_epoch_of_sgd_learns_mnist():
    result = train(config("torch.sgd(lr=0.1)", Budget(epochs=1)))
    assert result.status == DONE, result.error
    assert result.metrics["test_error"] < 0.15
    assert "val_error" not in result.metrics  # a single run holds nothing out by default
    assert result.curves["steps_per_epoch"] == math.ceil(60_000 / 256)
    assert result.metrics["hyper/0.lr"] == 0.1
    spe = result.curves["steps_per_epoch"]
    assert result.cost["steps"] == spe and result.cost["epochs"] == 1.0
    # one evaluation per epoch (the default), at the end; its train loss is the epoch's mean
    (point,) = result.curves["eval"]
    assert point["step"] == spe and point["epoch"] == 1.0
    losses = [loss for _, loss in result.curves["train_loss"]]
    assert losses[-1] < losses[0] and math.isclose(point["train_loss"], sum(losses) / len(losses))
    # the timer left the warm-up out; the cost counts every step
    assert result.timing["timed_steps"] == spe - result.timing["warmup_steps"]
    assert result.timing["train_seconds"] <= result.cost["device_seconds"]
    assert 0 < result.timing["step_time_p10"] <= result.timing["step_time_median"]
    assert result.timing["step_time_median"] <= result.timing["step_time_p90"]
    assert result.memory["optimizer_bytes"] == 0  # plain SGD holds no state
    assert result.memory["peak_rss_bytes"] > 0
    assert result.env["torch"] == torch.__version__ and result.env["started"] <= result.env["ended"]


def test_a_huge_step_size_diverges_with_its_step():
    # Logistic regression: mnist-mlp's tanh before log_softmax bounds its loss by about 4.3,
    # so only a non-finite weight could stop it.
    result = train(config("torch.sgd(lr=1e6)", Budget(steps=200), workload="mnist-logreg"))
    assert result.status == DIVERGED
    assert result.diverged_step == 2  # the first update already throws the loss up
    assert "step 2" in result.error
    assert result.cost["steps"] < 200  # stopped, not trained on
    assert result.metrics == {}  # a diverged run has no final numbers


def test_a_non_finite_loss_diverges_even_without_the_loss_limit():
    result = train(
        config("torch.sgd(lr=1e38, momentum=0.9)", Budget(steps=100), workload="mnist-logreg",
               diverge_factor=math.inf)
    )
    assert result.status == DIVERGED
    assert "non-finite" in result.error and result.diverged_step is not None


def test_a_non_finite_parameter_is_caught():
    model = torch.nn.Linear(3, 2)
    assert _finite_parameters(model)
    with torch.no_grad():
        model.weight[0, 1] = float("nan")
    assert not _finite_parameters(model)


def test_same_config_gives_same_id_and_bitwise_same_results():
    a = config("torch.adam(1e-3)", Budget(steps=30), eval_every=0.05, warmup_steps=2)
    b = RunConfig.from_dict(a.to_dict())
    assert a.run_id == b.run_id
    first, second = train(a), train(b)
    assert first.status == DONE
    assert comparable(first) == comparable(second)
    # and another seed is another run
    other = train(config("torch.adam(1e-3)", Budget(steps=30), 1, eval_every=0.05, warmup_steps=2))
    assert other.run_id != first.run_id and other.metrics != first.metrics


def test_steps_budget_is_respected_and_evaluations_follow_the_schedule():
    result = train(config("torch.sgd(0.1)", Budget(steps=17), eval_every=0.03))
    spe = result.curves["steps_per_epoch"]
    every = round(0.03 * spe)
    assert result.cost["steps"] == 17
    assert [p["step"] for p in result.curves["eval"]] == [*range(every, 17, every), 17]
    assert len(result.curves["train_loss"]) == 17
    assert result.curves["train_loss"][-1][0] == 17


def test_on_eval_can_stop_the_run_early():
    seen = []

    def stop_at_second(point: dict) -> bool:
        seen.append(point)
        return len(seen) == 2

    result = train(
        config("torch.sgd(0.1)", Budget(steps=100), eval_every=0.05, holdout=0.1),
        on_eval=stop_at_second,
    )
    assert result.status == DONE and result.curves["stopped_early"] is True
    assert result.cost["steps"] == seen[1]["step"] < 100
    assert {"step", "epoch", "cost_steps", "cost_seconds", "val_error", "test_error"} <= set(
        seen[0]
    )
    assert result.metrics["test_error"] == seen[1]["test_error"]


def test_seconds_budget_stops_the_run():
    result = train(config("torch.sgd(0.1)", Budget(steps=10_000, seconds=0.05), check_every=1))
    assert result.status == DONE
    assert result.cost["steps"] < 10_000
    assert result.cost["device_seconds"] >= 0.05
    assert result.curves["eval"][-1]["step"] == result.cost["steps"]  # evaluated where it stopped


def test_an_exception_during_the_run_is_recorded_as_failed():
    def broken(point: dict) -> bool:
        raise RuntimeError("the callback broke\nsecond line")

    result = train(config("torch.sgd(0.1)", Budget(steps=20), eval_every=0.05), on_eval=broken)
    assert result.status == FAILED
    assert result.error == "RuntimeError: the callback broke"
    assert "Traceback" in result.curves["traceback"]
    assert result.cost["steps"] > 0  # the partial cost is kept


def test_keyboard_interrupt_propagates():
    def interrupt(point: dict) -> bool:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config("torch.sgd(0.1)", Budget(steps=20), eval_every=0.05), on_eval=interrupt)


def test_progress_is_called_sparsely():
    calls = []
    train(
        config("torch.sgd(0.1)", Budget(steps=40)),
        progress=lambda step, total, info: calls.append((step, total, info)),
    )
    assert calls[0][0] == 0 and calls[0][2]["plan"].total_steps == 40
    assert [c[0] for c in calls[1:]] == [10, 20, 30, 40]
    assert all(c[1] == 40 and math.isfinite(c[2]["loss"]) for c in calls[1:])


def test_user_mistakes_raise_before_training():
    with pytest.raises(UserError, match="unknown workload 'mnist-mpl'.*mnist-mlp"):
        train(RunConfig("mnist-mpl", "torch.sgd(lr=0.1)"))
    with pytest.raises(UserError, match="unknown"):
        train(RunConfig(WORKLOAD, "no-such-method"))
    with pytest.raises(UserError, match="batch_size"):
        train(config("torch.sgd(0.1)", Budget(steps=1), batch_size=0))


def test_devices_are_checked():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(UserError, match="cpu, cuda or cuda:N"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            resolve_device("cuda:0")


# -- the towers family ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spelled", "canonical"),
    [
        ("torch.sgd(0.1)", "torch.sgd(lr=0.1)"),
        ("torch.sgd(lr=0.1, momentum=0)", "torch.sgd(lr=0.1)"),
        ("torch.SGD(lr=1, momentum=0.9)", "torch.sgd(lr=1.0, momentum=0.9)"),
        ("torch.adam(1e-5, betas=(0.9, 0.99))", "torch.adam(lr=1e-5, betas=(0.9, 0.99))"),
        ("torch.adamw()", "torch.adamw(lr=0.001)"),
        ("torch.rmsprop(lr=0.01, alpha=0.9)", "torch.rmsprop(lr=0.01, alpha=0.9)"),
        ("torch.adagrad(lr=0.01)", "torch.adagrad(lr=0.01)"),
    ],
)
def test_torch_names_are_canonical_and_round_trip(spelled, canonical):
    method = parse_method(spelled)
    assert isinstance(method, TorchMethod) and method.name == canonical
    assert parse_method(canonical).name == canonical


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("torch.sgdd(0.1)", "unknown torch optimizer 'torch.sgdd'.*torch.adam, torch.adamw"),
        ("torch.sgd(lr=0.1, beta=2)", "unknown argument 'beta' for torch.sgd; valid.*momentum"),
        ("torch.sgd(lr=-1)", "Invalid learning rate"),
        ("torch.sgd(0.1, lr=0.2)", "given twice"),
        ("torch.sgd(lr=x+1)", "not a number"),
        ("torch.sgd(lr=0.1", "malformed"),
    ],
)
def test_bad_torch_names_say_what_is_wrong(name, message):
    with pytest.raises(UserError, match=message):
        parse_method(name)


def test_spec_helpers():
    call = parse_call("adam(1e-3, learn=(lr, beta1))")
    assert (
        call.name == "adam" and call.args == (1e-3,) and call.kwargs == {"learn": ("lr", "beta1")}
    )
    assert [format_value(v) for v in (1e-5, 0.1, 1e20, (0.9, 0.999), True)] == [
        "1e-5",
        "0.1",
        "1e20",
        "(0.9, 0.999)",
        "True",
    ]


def _losses(result) -> list[float]:
    return [loss for _, loss in result.curves["train_loss"]]


def test_height_zero_tower_trains_like_torch_sgd():
    tower = train(config("sgd(0.1)", Budget(steps=30)))
    plain = train(config("torch.sgd(0.1)", Budget(steps=30)))
    assert tower.config["method"] == "sgd(0.1)" and tower.status == DONE
    assert _losses(tower) == pytest.approx(_losses(plain), rel=1e-5)
    assert tower.metrics["test_error"] == pytest.approx(plain.metrics["test_error"], abs=2e-4)


def test_a_tower_records_its_learned_hyperparameters():
    result = train(config("sgd(0.1)/sgd(1e-4)", Budget(steps=40), hyper_every=10))
    assert result.status == DONE
    steps = [step for step, _ in result.curves["hyper"]["0.lr"]]
    assert steps == [0, 10, 20, 30, 40]
    assert result.curves["hyper"]["0.lr"][0][1] == pytest.approx(0.1)
    assert result.metrics["hyper/0.lr"] != pytest.approx(0.1)  # it learned
    # learning a step size keeps one parameter-sized buffer (the last update), not a graph
    n_params = 784 * 128 + 128 + 128 * 10 + 10
    assert 4 * n_params <= result.memory["optimizer_bytes"] < 4 * n_params + 1024


@pytest.mark.parametrize(
    "spec",
    ["sgd(0.1)/sgd(1e-4)", "sgd(0.1, momentum=0.5)/sgd(1e-4)/sgd(1e-4)", "adam(v0=1e-8)/sgd(1e-5)"],
)
def test_the_gdtuo_reference_gives_the_same_numbers(spec):
    ours = train(config(spec, Budget(steps=30), hyper_every=5))
    reference = train(config(f"gdtuo:{spec}", Budget(steps=30), hyper_every=5))
    assert reference.status == DONE, reference.error
    assert reference.config["method"] == "gdtuo:" + ours.config["method"]
    assert _losses(reference) == pytest.approx(_losses(ours), rel=1e-5)
    assert reference.curves["hyper"].keys() == ours.curves["hyper"].keys()
    for name, points in ours.curves["hyper"].items():
        assert [v for _, v in reference.curves["hyper"][name]] == pytest.approx(
            [v for _, v in points], rel=1e-5
        )
    # the reference keeps the graph of the update: more memory than the tower
    assert reference.memory["optimizer_bytes"] > ours.memory["optimizer_bytes"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("gdtuo:adamw(0.001)/sgd(1e-5)", "unknown gdtuo optimizer 'adamw'"),
        ("gdtuo:sgd(0.1, nesterov=true, momentum=0.9)/sgd(1e-4)", "gdtuo's sgd has no nesterov"),
        ("gdtuo:sgd(0.1, lr_per=tensor)/sgd(1e-4)", "drop lr_per"),
        ("gdtuo:adam(0.001, learn=beta1)/sgd(1e-5)", "no reference implementation"),
        ("gdtuo:adam(0.001, v0=0.5)/sgd(1e-5)", "starts v at eps"),
        ("gdtuo:sgd(0.1/sgd", "invalid tower"),
        ("sgd(-1)/sgd(1e-4)", "sgd"),
    ],
)
def test_bad_tower_names_say_what_is_wrong(name, message):
    with pytest.raises(UserError, match=re.escape(message)):
        parse_method(name)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("method", ["torch.sgd(lr=0.1)", "sgd(0.1)/sgd(1e-4)"])
def test_a_run_on_the_gpu_is_timed_and_measured(method):
    run = RunConfig(WORKLOAD, parse_method(method).name, 0, Budget(steps=60), "cuda")
    result = train(run.with_options(eval_every=0.1))
    assert result.status == DONE, result.error
    assert result.metrics["test_error"] < 0.5
    assert result.memory["cuda_peak_bytes"] > result.memory["cuda_baseline_bytes"] > 0
    assert 0 < result.timing["step_time_median"] < 1.0
    assert result.env["device_name"] == torch.cuda.get_device_name(0)
    assert result.cost["device_seconds"] >= result.timing["train_seconds"]
    again = train(run.with_options(eval_every=0.1))
    assert again.run_id == result.run_id and again.cost["steps"] == 60


def test_holdout_carves_validation_from_the_training_split():
    result = train(config("torch.sgd(0.1)", Budget(steps=5), holdout=0.1))
    assert result.status == DONE, result.error
    assert result.curves["steps_per_epoch"] == math.ceil(54_000 / 256)
    assert 0 <= result.metrics["val_error"] <= 1


@pytest.mark.parametrize("bad", [1.0, -0.1, "0.1", True])
def test_holdout_must_be_a_fraction(bad):
    with pytest.raises(UserError, match="holdout must be a number in"):
        train(config("torch.sgd(0.1)", Budget(steps=5), holdout=bad))
