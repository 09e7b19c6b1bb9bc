"""Towers inside the frameworks people train with, a tiny model a few steps on the CPU:
PyTorch Lightning's ``Trainer`` and Hugging Face's ``Trainer`` (the ``dev`` extra installs
both; each test skips with the reason when its framework is missing).

In both: the step size is learned under the framework's schedule (Hugging Face's default
linear decay for ``optimizers=(tower, None)``, a StepLR in Lightning), and a run resumed from a
checkpoint with its scheduler continues bit for bit as the uninterrupted run.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hypergrad

SPEC = "adam(0.01)/sgd(1e-4)"
LR = 0.01


def _data(n: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 6, generator=g)
    return x, (x[:, :2].sum(1) > 0).long()


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 2))


# ---------------------------------------------------------------------------------------------
# Lightning


def _lightning_fit(tmp_path, epochs: int, ckpt=None, save=None):
    L = pytest.importorskip("lightning", reason="needs lightning (pip install -e .[dev])")

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = _net()

        def training_step(self, batch, _):
            x, y = batch
            return F.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            opt = hypergrad.tower(SPEC, self.parameters())
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    x, y = _data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    module = Module()
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice on workers and logging
        trainer.fit(module, loader, ckpt_path=ckpt)
    if save is not None:
        trainer.save_checkpoint(save)
    return module, trainer


def test_lightning_learns_the_step_size_and_resumes_bit_for_bit(tmp_path):
    straight, trainer = _lightning_fit(tmp_path / "a", epochs=2)
    learned = hypergrad.hyperparameters(trainer.optimizers[0])
    assert learned["0.lr"] != LR
    assert trainer.optimizers[0].param_groups[0]["lr"] == LR * 0.5**3  # 6 steps of StepLR(2)
    ckpt = tmp_path / "epoch1.ckpt"
    _lightning_fit(tmp_path / "b", epochs=1, save=ckpt)
    resumed, trainer2 = _lightning_fit(tmp_path / "c", epochs=2, ckpt=str(ckpt))
    assert hypergrad.hyperparameters(trainer2.optimizers[0]) == learned
    for p, q in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q)


# ---------------------------------------------------------------------------------------------
# Hugging Face


class _HFNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = _net()

    def forward(self, x, labels=None):
        logits = self.net(x)
        return {"loss": F.cross_entropy(logits, labels), "logits": logits}


class _Rows(torch.utils.data.Dataset):
    def __init__(self) -> None:
        self.x, self.y = _data()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}


def _hf_train(tmp_path, max_steps: int, resume=None):
    transformers = pytest.importorskip("transformers", reason="needs transformers and "
                                       "accelerate (pip install -e .[dev])")
    pytest.importorskip("accelerate", reason="needs accelerate (pip install -e .[dev])")
    model = _HFNet()
    opt = hypergrad.tower(SPEC, model.parameters())
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), max_steps=max_steps, per_device_train_batch_size=8,
        learning_rate=LR, save_steps=3, save_strategy="steps", logging_strategy="no",
        report_to=[], use_cpu=True, disable_tqdm=True, seed=0, dataloader_num_workers=0)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=_Rows(),
                                   optimizers=(opt, None))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train(resume_from_checkpoint=resume)
    return model, trainer


def test_hf_trainer_learns_the_step_size_under_its_default_schedule_and_resumes(tmp_path):
    straight, trainer = _hf_train(tmp_path / "a", max_steps=6)
    assert isinstance(hypergrad.unwrap(trainer.optimizer), hypergrad.Tower)  # (accelerate's)
    learned = hypergrad.hyperparameters(trainer.optimizer)
    assert learned["0.lr"] != pytest.approx(LR, rel=1e-6)  # learned, not the schedule's value
    assert trainer.lr_scheduler is not None  # HF's default: linear decay, a factor on it
    assert trainer.optimizer.param_groups[0]["lr"] == 0.0  # the end of the linear decay
    resumed, trainer2 = _hf_train(tmp_path / "a", max_steps=6,
                                  resume=str(tmp_path / "a" / "checkpoint-3"))
    assert hypergrad.hyperparameters(trainer2.optimizer) == learned
    for p, q in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q)
