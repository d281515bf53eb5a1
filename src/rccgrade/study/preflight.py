"""Check a study's configuration in full before any work: run name, arms, params files, weights, sizes.

Everything that can be known to fail from the configuration (and, for the sizes, from the manifest's labels)
is reported here with the setting to change, instead of after synthesis and preprocessing or from inside
scikit-learn.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from rccgrade.config import StudyConfig
from rccgrade.errors import ConfigError
from rccgrade.features.naming import DEEP, FUSION_ARMS, check_arm, is_deep
from rccgrade.models.settings import ModelSettings
from rccgrade.safepath import check_identifier


def check_config(config: StudyConfig) -> None:
    """Raise a :class:`ConfigError` naming the setting when the configuration cannot run.

    Checks the run name (one safe folder name inside ``runs_dir``), every arm and fused source name, the
    per-arm classifier overrides, the radiomics parameter file (parsed and validated by PyRadiomics' schema)
    when an arm needs radiomics, a deep weights file when one is named, and — for a synthetic cohort, whose
    size is known — the training size against the folds.
    """
    check_run_name(config.name)
    m = config.models
    for arm in m.arms:
        check_arm(arm)
    for source in m.combined_sources:
        check_arm(source, fusion=False)
    for arm in m.stacked_arms or []:
        check_arm(arm)
        if arm == "stacked":
            raise ConfigError("models.stacked_arms cannot hold 'stacked' itself")
    unknown = [a for a in m.arm_classifiers if a not in m.arms and not (a.startswith("deep:") and "deep:*" in m.arms)]
    if unknown:
        raise ConfigError(f"models.arm_classifiers names arms that are not in models.arms: {unknown}")
    if needs_source(config, "kinetic") and not config.radiomics.kinetic.enabled:
        raise ConfigError(
            "an arm (or models.combined_sources) uses the 'kinetic' source but radiomics.kinetic.enabled is false; "
            "turn it on (with at least two radiomics.phases) or remove 'kinetic'"
        )
    if needs_source(config, "radiomics") or needs_source(config, "kinetic"):
        from rccgrade.radiomics.params import load_params

        load_params(config.radiomics.params)
    weights = str(config.deep.weights)
    if needs_source(config, "deep") and weights.lower() not in ("imagenet", "none") and not Path(weights).is_file():
        raise ConfigError(f"deep.weights: the weights file {weights!r} does not exist; use imagenet, none or a file")
    if config.synth is not None and config.cohort.manifest is None:
        n_train = int(config.synth.n - math.ceil(config.synth.n * m.test_size))
        need = min_per_class(m)
        if n_train < 2 * need:
            raise ConfigError(
                f"the cohort is too small for the folds: synth.n = {config.synth.n} gives about {n_train} training "
                f"patients, but models.cv_folds = {m.cv_folds}"
                + (" with nested out-of-fold tuning" if m.nested_oof else "")
                + f" needs at least {need} training patients of each grade ({2 * need} in all); "
                "raise synth.n, lower models.cv_folds or set models.nested_oof: false"
            )


def check_run_name(name: str) -> None:
    """The run name must be one safe folder name (no ``/``, ``..`` or absolute path), so the run folder
    ``<runs_dir>/<name>`` stays inside ``runs_dir``.

    Raises:
        ConfigError: naming the rule and the setting.
    """
    if check_identifier(name, what="run name") is not None:
        raise ConfigError(
            f"run name {name!r} is not one folder name: use 1–64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit (the run folder is <runs_dir>/<name>; set 'name' in the configuration or pass --name)"
        )


def needs_source(config: StudyConfig, source: str) -> bool:
    """Whether any configured arm uses ``source`` kind (``clinical``, ``radiomics`` or ``deep``).

    A single-source arm uses its own source; ``combined`` and ``stacked`` use ``models.combined_sources``.
    """
    arms = list(config.models.arms)
    if any(a in FUSION_ARMS for a in arms):
        arms += list(config.models.combined_sources)
    return source in {DEEP if is_deep(a) else a for a in arms}


def _train_part(m: int, k: int) -> int:
    """Patients of a class left in the training part of the worst fold of a k-fold CV (folds reduced to m)."""
    k = min(k, m)
    return m - math.ceil(m / k) if k >= 2 else 0


def fits_folds(m: int, settings: ModelSettings) -> bool:
    """Whether ``m`` training patients of the smaller class are enough for every cross-validation of the models.

    The tuning CV needs 2 of the class (its folds shrink to the class size:
    :func:`rccgrade.models.tuning.stratified_folds`);
    every fitted model needs the class in its training part (2 when LASSO runs its own inner CV there); with
    nested out-of-fold tuning, each out-of-fold training part is tuned again with the same rules.
    """
    inner = 2 if "lasso" in settings.selection.steps else 1
    if m < 2:
        return False
    part = _train_part(m, settings.cv_folds)  # a tuning fold's (and an out-of-fold) training part
    if part < inner:
        return False
    if settings.nested_oof:
        if part < 2:
            return False
        if _train_part(part, settings.cv_folds) < inner:
            return False
    return True


def min_per_class(settings: ModelSettings) -> int:
    """The fewest training patients of each class :func:`fits_folds` accepts."""
    m = 2
    while not fits_folds(m, settings):
        m += 1
    return m


def check_cohort_size(labels: pd.Series, splits: pd.Series, settings: ModelSettings, *, seed: int) -> None:
    """Raise a :class:`ConfigError` when the training patients are too few for the folds (numbers named).

    Args:
        labels: 0/1 label per patient (NaN: unlabelled, ignored).
        splits: The manifest's ``split`` per patient (NaN: none).
        settings: The model settings (folds, nested OOF, selection steps, test fraction).
        seed: The study seed (the split is the one the study will make).
    """
    from rccgrade.errors import RccgradeError
    from rccgrade.models.split import make_split

    labels = labels.copy()
    labels.index = labels.index.astype(str)
    try:
        split = make_split(labels, splits, test_size=settings.test_size, seed=seed)
    except RccgradeError:
        return  # the split stage reports its own problem with its own message
    train = labels.reindex(split.loc[split["split"] == "train", "patient_id"].astype(str)).dropna().astype(int)
    n_low, n_high = int((train == 0).sum()), int((train == 1).sum())
    need = min_per_class(settings)
    if min(n_low, n_high) < need:
        raise ConfigError(
            f"the cohort is too small for the folds: the {len(train)} training patients hold {n_low} low-grade and "
            f"{n_high} high-grade cases, but models.cv_folds = {settings.cv_folds}"
            + (" with nested out-of-fold tuning" if settings.nested_oof else "")
            + f" needs at least {need} of each grade; add patients, lower models.cv_folds or set "
            "models.nested_oof: false"
        )
