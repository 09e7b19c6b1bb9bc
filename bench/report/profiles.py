"""The performance-profile figure of the equal-cost section (the profiles are ``scoring``'s)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.report import structure as st
from bench.report import style


def profile_figure(profiles: dict[float, pd.DataFrame], path: Path, r_max: float) -> Path:
    """AlgoPerf performance profiles ρ(τ), a panel per target (strict, then relaxed)."""
    style.theme()
    fig, axes = style.grid(len(profiles), 3, 3.6)
    methods = sorted(next(iter(profiles.values())).index, key=style.family_order)
    styles = style.family_styles(methods)
    for ax, (relax, prof) in zip(axes, profiles.items(), strict=True):
        taus = np.asarray(prof.columns, dtype=float)
        for method in methods:
            color, marker = styles[method]
            dashed = st.method_info(method).family == st.SEARCH
            ax.step(taus, prof.loc[method].to_numpy(), where="post", color=color,
                    linestyle="--" if dashed else "-", linewidth=1.4, label=method)
        ax.axvline(r_max, color="0.4", linewidth=0.8, linestyle=":")
        ax.set_xscale("log")
        ax.set_xlim(taus[0], taus[-1])
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("τ")
        ax.set_title("strict target" if relax == 1.0 else f"target × {relax:g}")
    axes[0].set_ylabel("fraction of workloads within τ")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3,
               fontsize="x-small",
               title=("τ: time to target ÷ the fastest method's (device-seconds); dashed: "
                      f"searches; dotted line: r_max = {r_max:g}"),
               title_fontsize="small", frameon=False)
    return style.save(fig, path)
