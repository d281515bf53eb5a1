"""Permuted labels: no arm may find signal that is not there (issue 14, the benchmark's negative control).

A synthetic feature table carries real grade signal (radiomics-like and clinical columns driven by a latent
score); the labels are then permuted, which removes every link between features and labels. Each arm of the
shipped configurations' model chain (``configs/paper.yaml``, and ``configs/extended.yaml`` when present) is
fitted by ``fit_arms`` on the training patients; its test AUC's 95% DeLong CI (``rccgrade.stats``) must
contain 0.5.

What it catches: any leak of test patients' labels into fitting — selection, scaling, tuning or stacking
fitted on all patients instead of the training split. ``test_a_leak_is_caught`` plants one (the radiomics
columns are pre-selected by a univariate test on *all* patients, as a hand-written script often does) and
shows the same check then fails for at least one arm, so the negative control has teeth.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.stats import mannwhitneyu

from rccgrade.models.arms import fit_arms
from rccgrade.models.settings import ModelSettings
from rccgrade.stats.roc import auc_ci

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = [p for p in (ROOT / "configs/paper.yaml", ROOT / "configs/extended.yaml") if p.is_file()]
ARMS = ["clinical", "radiomics", "combined", "stacked"]
N, N_RAD = 240, 300


def _table(seed: int) -> tuple[pd.DataFrame, pd.Series]:
    """Features with real signal about ``y`` (before permutation): 10 informative radiomics columns of 300."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal(N)
    y = (rng.random(N) < 1.0 / (1.0 + np.exp(-2.0 * latent))).astype(int)
    rad = rng.standard_normal((N, N_RAD))
    rad[:, :10] += latent[:, None]
    ids = pd.Index([f"p{i:03d}" for i in range(N)], name="patient_id")
    table = pd.DataFrame(rad, index=ids, columns=[f"rad:arterial:f{i:03d}" for i in range(N_RAD)])
    table["clin:age"] = 60 + 10 * rng.standard_normal(N) + 3 * latent
    table["clin:crp"] = np.exp(rng.normal(1.0 + 0.5 * latent, 0.5))
    table["clin:sex"] = np.where(rng.random(N) < 0.6, "M", "F")
    return table, pd.Series(y, index=ids, name="high_grade")


def _settings(config: Path) -> ModelSettings:
    raw = yaml.safe_load(config.read_text()).get("models", {})
    raw.update(arms=ARMS, combined_sources=["clinical", "radiomics"])
    raw.pop("stacked_arms", None)
    raw["nested_oof"] = False  # the test AUC does not depend on it; keeps the test fast
    return ModelSettings(**raw)


def _split(y: pd.Series, seed: int) -> tuple[list[str], list[str]]:
    from sklearn.model_selection import train_test_split

    tr, te = train_test_split(list(y.index), test_size=0.3, stratify=y.to_numpy(), random_state=seed)
    return sorted(tr), sorted(te)


def _test_cis(table: pd.DataFrame, y: pd.Series, config: Path, seed: int) -> dict[str, tuple[float, float, float]]:
    train, test = _split(y, seed)
    res = fit_arms(table, y, train, settings=_settings(config), seed=seed, test_ids=test)
    out = {}
    for arm in res.arms:
        ci = auc_ci(y.loc[test].to_numpy(), res.test_proba[arm].to_numpy(), method="delong")
        out[arm] = (ci.auc, ci.lower, ci.upper)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_permuted_labels_no_arm_finds_signal(config: Path) -> None:
    table, y = _table(seed=11)
    permuted = pd.Series(np.random.default_rng(12).permutation(y.to_numpy()), index=y.index, name=y.name)
    cis = _test_cis(table, permuted, config, seed=3)
    assert set(cis) == set(ARMS)
    for arm, (auc, lo, hi) in cis.items():
        assert lo <= 0.5 <= hi, (
            f"{arm}: test AUC {auc:.3f}, 95% CI [{lo:.3f}, {hi:.3f}] excludes 0.5 on permuted labels"
        )


@pytest.mark.slow
def test_real_labels_have_signal() -> None:
    """Positive control of the table: with the true labels the radiomics arm's CI lies above 0.5."""
    table, y = _table(seed=11)
    cis = _test_cis(table, y, CONFIGS[0], seed=3)
    assert cis["radiomics"][1] > 0.5, cis


@pytest.mark.slow
def test_a_leak_is_caught() -> None:
    """Planted leak: radiomics pre-selected on all patients (train + test) by a U test on the permuted labels."""
    table, y = _table(seed=11)
    permuted = pd.Series(np.random.default_rng(12).permutation(y.to_numpy()), index=y.index, name=y.name)
    rad = [c for c in table.columns if c.startswith("rad:")]
    p = {c: mannwhitneyu(table.loc[permuted == 1, c], table.loc[permuted == 0, c]).pvalue for c in rad}
    leaked = sorted(rad, key=p.__getitem__)[:15]
    leaky = table[[*leaked, *[c for c in table.columns if not c.startswith("rad:")]]]
    cis = _test_cis(leaky, permuted, CONFIGS[0], seed=3)
    assert any(not (lo <= 0.5 <= hi) for _, lo, hi in cis.values()), cis
