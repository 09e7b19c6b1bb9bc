"""Baselines for hyperoptimizer towers, as a reusable library.

- ``baselines.hd``: hand-derived hypergradient descent (Baydin et al. 2018): SGD-HD, SGDN-HD,
  Adam-HD as ``torch.optim.Optimizer`` subclasses.
- ``baselines.schedules``: fixed learning-rate schedules over ``torch.optim`` optimizers.
- ``baselines.lrfree``: learning-rate-free peers (Prodigy, D-Adaptation, Schedule-Free).
- ``baselines.search``: an Optuna search driver over a declared space, given a trial function.
- ``baselines.spec``: the ``name(key=value, ...)`` grammar their names share.
"""
