"""The rules a published claim is checked by, on one setting's runs: one verdict per claim.

The claims are data (``[[claim]]`` in ``bench/published/*.toml``); ``bench.report.claims``
chooses which apply to a result set and calls the check of each claim's ``kind`` here on the runs
frame of ``bench.report.frame``.

Statistics: a side of a comparison is its finished runs (status ``done``): mean, sample std
(ddof 1; 0 with one seed) and number of seeds. ``k`` is the claim's ``sigmas`` (2 unless it says
otherwise). The **combined sd** of two sides is ``c = sqrt(sd_a² + sd_b²)``; a published value's
sd is its published std, else the reading precision of its figure, else 0. A claim's
``tolerance`` ``t`` is a floor under the noise where the sources give no spread: the **noise**
is ``max(k·c, t)``. The difference is reported in units of ``c``.

Rules, and the verdict each gives:

- ``match`` (a published number): **reproduced** when ``|ours − published| <= noise``.
- ``better`` (a's metric lower than b's: error, loss, bits per character): **reproduced** when
  ``mean_b − mean_a > noise``; **not reproduced** when the difference is within the noise or goes
  the other way (the reason says which).
- ``same`` (a as good as b): **reproduced** when ``|mean_a − mean_b| <= noise``.
- ``ratio`` (``mean_a / mean_b`` equals ``value``): with ``sd_r = r·sqrt((sd_a/mean_a)² +
  (sd_b/mean_b)²)``, **reproduced** when ``|r − value| <= max(k·sd_r, t)``.
- ``rerun_same``: ``same`` between a hyperoptimized row and the plain re-runs of it with its
  learned values, one row per parent (``parents = "table1"``: every italic row of Table 1).
- ``spread`` (taller towers less sensitive): per height, the spread is max − min over the grid
  of initial step sizes of the per-step-size mean (a grid point whose runs all diverged counts as
  ``diverged_score`` where the claim gives one, else is left out), and its noise is ``k`` × the
  mean per-point sd; **reproduced** when every height's spread is at most the one below's plus
  its noise and the tallest's is below height 0's by more than height 0's noise.
- ``overhead`` (each level adds little step time): per level, the median step time over its runs
  against the level below's; **reproduced** when every ratio is at most ``max_ratio``.

**Not run** (with the reason): a side has no finished run in the results, or the claim needs a
published number that could not be read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench import published as pub
from bench.report.frame import done

REPRODUCED, NOT_REPRODUCED, NOT_RUN = "reproduced", "not reproduced", "not run"
UNITS = {"error": "pp", "loss": "", "bpc": "bpc"}


@dataclass(frozen=True)
class Side:
    """The finished runs of one side of a comparison."""

    label: str
    values: tuple[float, ...]
    runs: int  # every run, finished or not

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def sd(self) -> float:
        return float(np.std(self.values, ddof=1)) if self.n > 1 else 0.0

    def text(self, digits: int = 2) -> str:
        if not self.values:
            label = f"{self.label.strip()}: " if self.label.strip() else ""
            return f"{label}no finished run" + (f" ({self.runs} runs)" if self.runs else "")
        spread = f" ± {self.sd:.{digits}f}" if self.n > 1 else ""
        return f"{self.label}{self.mean:.{digits}f}{spread} (n={self.n})"


@dataclass(frozen=True)
class ClaimRow:
    """One checked claim on one setting."""

    setting: str
    claim: pub.Claim
    text: str
    published: str
    ours: str
    sigmas: float | None
    verdict: str
    why: str
    detail: dict = field(default_factory=dict, compare=False)


# ---------------------------------------------------------------- selecting runs


def _value(row: pd.Series | tuple, metric: str) -> float | None:
    result = row.result
    if metric in ("error", "bpc"):
        value = row.score
    else:
        value = (result.metrics or {}).get(f"test_{metric}")
    if value is None or pd.isna(value) or not math.isfinite(float(value)):
        return None
    return float(value)


def select(frame: pd.DataFrame, spec: str) -> pd.DataFrame:
    """A setting's runs of ``spec`` (``rerun:SPEC``: the plain re-runs of SPEC's runs)."""
    if spec.startswith(pub.RERUN):
        parents = select(frame, spec.removeprefix(pub.RERUN))
        return frame[frame["parent"].isin(set(parents["run_id"]))]
    names = frame["method"].map(pub.canonical)
    return frame[(names == pub.canonical(spec)) & frame["parent"].isna()]


def side(frame: pd.DataFrame, spec: str, metric: str, label: str = "") -> Side:
    runs = select(frame, spec)
    values = [_value(r, metric) for r in done(runs).itertuples()]
    return Side(label, tuple(v for v in values if v is not None), len(runs))


def _short(spec: str) -> str:
    return spec if not spec.startswith(pub.RERUN) else (
        "re-run of " + spec.removeprefix(pub.RERUN))


# ---------------------------------------------------------------- the rules


def _noise(claim: pub.Claim, combined: float) -> float:
    return max(claim.sigmas * combined, claim.tolerance or 0.0)


def _units(claim: pub.Claim) -> str:
    unit = UNITS.get(claim.metric, "")
    return f" {unit}" if unit else ""


def _row(setting: str, claim: pub.Claim, text: str, published: str, ours: str,
         sigmas: float | None, verdict: str, why: str, **detail) -> ClaimRow:
    return ClaimRow(setting, claim, text, published, ours, sigmas, verdict, why, detail)


def _missing(sides: list[Side], specs: list[str]) -> str | None:
    gone = [f"`{_short(s)}`" for x, s in zip(sides, specs, strict=True) if not x.values]
    if not gone:
        return None
    return "no finished run of " + ", ".join(gone) + " in these results"


def _per(c: float, diff: float) -> float | None:
    return diff / c if c > 0 else None


def check_match(setting: str, frame: pd.DataFrame, claim: pub.Claim) -> list[ClaimRow]:
    ours = side(frame, claim.a, claim.metric)
    published = pub.Value(claim.mean, claim.sd)
    pub_text = published.text()
    missing = _missing([ours], [claim.a])
    if claim.mean is None:
        return [_row(setting, claim, claim.text, "not read", ours.text(), None, NOT_RUN,
                     "the published number could not be read")]
    if missing:
        return [_row(setting, claim, claim.text, pub_text, ours.text(), None, NOT_RUN, missing)]
    c = math.hypot(ours.sd, claim.sd or 0.0)
    diff = ours.mean - claim.mean
    noise = _noise(claim, c)
    ok = abs(diff) <= noise
    why = (f"ours is {diff:+.2f}{_units(claim)} from the published value; the noise is "
           f"{noise:.2f}{_units(claim)}")
    if not ok:
        why = (f"the published {pub_text} is not reproduced: ours is {ours.mean:.2f}, "
               f"{diff:+.2f}{_units(claim)} away, more than the noise of {noise:.2f}")
    return [_row(setting, claim, claim.text, pub_text, ours.text(), _per(c, diff),
                 REPRODUCED if ok else NOT_REPRODUCED, why, diff=diff, noise=noise)]


def check_pairs(setting: str, frame: pd.DataFrame, claim: pub.Claim) -> list[ClaimRow]:
    rows = []
    for a, b in claim.comparisons():
        sa, sb = side(frame, a, claim.metric, "A "), side(frame, b, claim.metric, "B ")
        text = f"{claim.text} (A `{_short(a)}`, B `{_short(b)}`)"
        ours = f"{sa.text()}; {sb.text()}"
        published = _published_pair(claim, a, b)
        missing = _missing([sa, sb], [a, b])
        if missing:
            rows.append(_row(setting, claim, text, published, ours, None, NOT_RUN, missing))
            continue
        c = math.hypot(sa.sd, sb.sd)
        noise = _noise(claim, c)
        u = _units(claim)
        if claim.kind == "better":
            diff = sb.mean - sa.mean
            ok = diff > noise
            if ok:
                why = f"A is {diff:.3g}{u} below B, more than the noise of {noise:.3g}"
            elif diff > 0:
                why = (f"not shown: A is only {diff:.3g}{u} below B, within the noise of "
                       f"{noise:.3g}")
            else:
                why = f"the opposite: A is {-diff:.3g}{u} above B (noise {noise:.3g})"
        else:  # same
            diff = sa.mean - sb.mean
            ok = abs(diff) <= noise
            why = (f"A − B = {diff:+.3g}{u}, " + ("within" if ok else "beyond")
                   + f" the noise of {noise:.3g}")
        rows.append(_row(setting, claim, text, published, ours, _per(c, diff),
                         REPRODUCED if ok else NOT_REPRODUCED, why, diff=diff, noise=noise))
    return rows


def _published_pair(claim: pub.Claim, a: str, b: str) -> str:
    """What the papers published for the two sides (``—`` where nothing of either is known)."""
    def cells(spec: str) -> str:
        if spec.startswith(pub.RERUN):
            found = pub.published_cells(claim.workload, "", parent=spec.removeprefix(pub.RERUN))
        else:
            found = pub.published_cells(claim.workload, spec)
        return "; ".join(found)

    ca, cb = cells(a), cells(b)
    known = [c for c in (ca, cb) if c and c != "not read"]
    return f"A {ca or '—'}; B {cb or '—'}" if known else "—"


def check_ratio(setting: str, frame: pd.DataFrame, claim: pub.Claim) -> list[ClaimRow]:
    sa, sb = side(frame, claim.a, claim.metric, "A "), side(frame, claim.b, claim.metric, "B ")
    text = f"{claim.text} (A `{_short(claim.a)}`, B `{_short(claim.b)}`)"
    ours = f"{sa.text()}; {sb.text()}"
    published = f"A/B = {claim.value:g}" + (f" ± {claim.tolerance:g}" if claim.tolerance else "")
    missing = _missing([sa, sb], [claim.a, claim.b])
    if missing or sb.mean == 0:
        return [_row(setting, claim, text, published, ours, None, NOT_RUN,
                     missing or "B's mean is 0: no ratio")]
    assert claim.value is not None
    r = sa.mean / sb.mean
    sd_r = abs(r) * math.hypot(sa.sd / sa.mean if sa.mean else 0.0, sb.sd / sb.mean)
    noise = max(claim.sigmas * sd_r, claim.tolerance or 0.0)
    diff = r - claim.value
    ok = abs(diff) <= noise
    why = (f"ours A/B = {r:.3f} ± {sd_r:.3f}, {diff:+.3f} from {claim.value:g}; "
           + ("within" if ok else "beyond") + f" the noise of {noise:.3f}")
    return [_row(setting, claim, text, published, ours + f"; A/B = {r:.3f}", _per(sd_r, diff),
                 REPRODUCED if ok else NOT_REPRODUCED, why, diff=diff, noise=noise)]


def check_reruns(setting: str, frame: pd.DataFrame, claim: pub.Claim,
                 parents: list[str]) -> list[ClaimRow]:
    """A row per parent with runs here; one ``not run`` row when none has any."""
    ran = [p for p in parents if len(select(frame, p))]
    if not ran:
        return [_row(setting, claim, claim.text, "—", "—", None, NOT_RUN,
                     f"no run of any of its {len(parents)} hyperoptimized rows in these results")]
    rows = []
    for parent in ran:
        single = pub.Claim(**{**claim.__dict__, "kind": "same", "a": pub.RERUN + parent,
                              "b": parent, "pairs": ()})
        for row in check_pairs(setting, frame, single):
            rows.append(_row(setting, claim, f"{claim.text}: `{parent}`", row.published,
                             row.ours, row.sigmas, row.verdict, row.why, **row.detail))
    return rows


def _height_runs(frame: pd.DataFrame, claim: pub.Claim, template: str) -> dict[float, Side]:
    return {lr: side(frame, pub.fill(template, lr), claim.metric) for lr in claim.grid}


def check_spread(setting: str, frame: pd.DataFrame, claim: pub.Claim) -> list[ClaimRow]:
    spreads, noises, parts, missing = [], [], [], []
    for h, template in enumerate(claim.heights):
        points = _height_runs(frame, claim, template)
        means, sds, diverged, absent = [], [], 0, 0
        for s in points.values():
            if s.values:
                means.append(s.mean)
                sds.append(s.sd)
            elif s.runs and claim.diverged_score is not None:
                means.append(claim.diverged_score)
                diverged += 1
            else:
                absent += 1
        if len(means) < 2:
            missing.append(f"height {h} (`{template}`)")
            continue
        spreads.append(max(means) - min(means))
        noises.append(claim.sigmas * (float(np.mean(sds)) if sds else 0.0))
        extra = (f", {diverged} diverged" if diverged else "") + (
            f", {absent} of {len(points)} points not run" if absent else "")
        parts.append(f"h{h}: {spreads[-1]:.3g}{extra}")
    text = f"{claim.text} (grid {min(claim.grid):g} … {max(claim.grid):g})"
    if missing:
        return [_row(setting, claim, text, "less spread with height", "; ".join(parts) or "—",
                     None, NOT_RUN, "too few finished grid points for " + ", ".join(missing))]
    u = _units(claim)
    rises = [h for h in range(1, len(spreads)) if spreads[h] > spreads[h - 1] + noises[h]]
    drop = spreads[0] - spreads[-1]
    ok = not rises and drop > noises[0]
    if ok:
        why = (f"the spread falls from {spreads[0]:.3g}{u} at height 0 to {spreads[-1]:.3g} at "
               f"height {len(spreads) - 1}, and no height rises beyond its noise")
    elif rises:
        why = ("the spread grows beyond the noise at height " + ", ".join(map(str, rises)))
    else:
        why = (f"the tallest tower's spread ({spreads[-1]:.3g}{u}) is not below height 0's "
               f"({spreads[0]:.3g}) by more than the noise ({noises[0]:.3g})")
    c = noises[0] / claim.sigmas if noises[0] else 0.0
    return [_row(setting, claim, text, "less spread with height",
                 "max − min" + (f" ({u.strip()})" if u else "") + ": " + "; ".join(parts),
                 _per(c, drop), REPRODUCED if ok else NOT_REPRODUCED, why,
                 spreads=spreads, noises=noises)]


def check_overhead(setting: str, frame: pd.DataFrame, claim: pub.Claim) -> list[ClaimRow]:
    medians, missing = [], []
    for h, template in enumerate(claim.heights):
        specs = [pub.fill(template, lr) for lr in claim.grid] if claim.grid else [template]
        times = pd.concat([done(select(frame, s))["step_time"] for s in specs]).dropna()
        if times.empty:
            missing.append(f"height {h} (`{template}`)")
        medians.append(float(times.median()) if len(times) else math.nan)
    text = f"{claim.text}"
    limit = f"each level ≤ {claim.max_ratio:g}× the level below"
    if missing:
        return [_row(setting, claim, text, limit, "—", None, NOT_RUN,
                     "no step time of " + ", ".join(missing))]
    ratios = [medians[h] / medians[h - 1] for h in range(1, len(medians))]
    assert claim.max_ratio is not None
    over = [h + 1 for h, r in enumerate(ratios) if r > claim.max_ratio]
    ours = "step (ms): " + ", ".join(f"h{h} {m * 1e3:.3g}" for h, m in enumerate(medians)) + (
        "; × level below: " + ", ".join(f"{r:.2f}" for r in ratios))
    why = (f"every level ≤ {claim.max_ratio:g}×" if not over else
           f"level(s) {', '.join(map(str, over))} cost more than {claim.max_ratio:g}× the level "
           "below")
    return [_row(setting, claim, text, limit, ours, None,
                 NOT_REPRODUCED if over else REPRODUCED, why, ratios=ratios)]
