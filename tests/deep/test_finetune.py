"""Fine-tuning without leakage: out-of-fold features for training patients; signal learned, noise not."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from rccgrade.deep import finetune as FT
from rccgrade.deep.features import extract_deep_features
from rccgrade.errors import ConfigError, ModelError

from .synthetic import blob_cohort, fast_settings


def delong_ci(y: np.ndarray, score: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """AUC with a DeLong 95% CI, written naively (all case/control pairs) for the test."""
    pos, neg = score[y == 1], score[y == 0]
    psi = (pos[:, None] > neg[None, :]).astype(float) + 0.5 * (pos[:, None] == neg[None, :])
    auc = psi.mean()
    var = psi.mean(axis=1).var(ddof=1) / len(pos) + psi.mean(axis=0).var(ddof=1) / len(neg)
    z = 1.959963984540054 if level == 0.95 else float("nan")
    half = z * math.sqrt(var)
    return auc, auc - half, auc + half


def test_delong_helper_matches_sklearn_auc() -> None:
    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 20)
    s = rng.random(40) + 0.3 * y
    assert delong_ci(y, s)[0] == pytest.approx(roc_auc_score(y, s))


LEARN = {
    "arch": "resnet_tiny",
    "input_size": 32,
    "mode": "finetune",
    "epochs": 8,
    "lr": 1e-2,
    "folds": 3,
    "patience": 3,
    "batch_size": 16,
}


def _run(images: dict[str, np.ndarray], labels: dict[str, int], train: list[str]) -> Any:
    return extract_deep_features({"box": images}, fast_settings(**LEARN), train_ids=train, labels=labels, seed=0)


@pytest.fixture(scope="module")
def cohort() -> tuple[dict[str, np.ndarray], dict[str, int], list[str], list[str]]:
    images, labels = blob_cohort(60, size=32, seed=1)
    ids = list(images)
    return images, labels, ids[:36], ids[36:]


def test_honest_signal_is_learned(cohort: Any) -> None:
    images, labels, train, test = cohort
    result = _run(images, labels, train)
    p = result.probabilities["box"]
    y_test = np.array([labels[i] for i in test])
    auc, lo, _ = delong_ci(y_test, p[test].to_numpy())
    assert auc > 0.8 and lo > 0.5, (auc, lo)
    oof_auc = roc_auc_score([labels[i] for i in train], p[train])
    assert oof_auc > 0.7, oof_auc
    assert (result.folds.loc[train, "box"] >= 0).all() and (result.folds.loc[test, "box"] == -1).all()
    assert result.table.shape == (60, 512) and np.isfinite(result.table.to_numpy()).all()
    assert result.metadata["finetune"]["box"]["n_folds"] == 3


def _balanced_permutation(labels: dict[str, int], groups: list[list[str]], seed: int) -> dict[str, int]:
    """A permutation of the labels that is independent of the true ones by construction.

    Within each split and true class, half the patients get 1 and half 0 (label counts are preserved), so the
    image signal (the blob) carries no information about the permuted label, not even by chance.
    """
    rng = np.random.default_rng(seed)
    out: dict[str, int] = {}
    for group in groups:
        for cls in (0, 1):
            members = list(rng.permutation([p for p in group if labels[p] == cls]))
            for j, p in enumerate(members):
                out[str(p)] = int(j < len(members) // 2)
    return out


def test_permuted_labels_give_chance_auc_out_of_fold_and_on_test(cohort: Any) -> None:
    images, labels, train, test = cohort
    permuted = _balanced_permutation(labels, [train, test], seed=6)
    assert sorted(permuted.values()) == sorted(labels.values())
    result = _run(images, permuted, train)
    p = result.probabilities["box"]
    for group in (train, test):
        auc, lo, hi = delong_ci(np.array([permuted[i] for i in group]), p[group].to_numpy())
        assert lo <= 0.5 <= hi and 0.3 < auc < 0.7, (auc, lo, hi)


def test_no_network_describes_a_patient_whose_label_it_saw(monkeypatch: pytest.MonkeyPatch) -> None:
    images, labels = blob_cohort(12, size=32, seed=2)
    ids = list(images)
    train, test = ids[:8], ids[8:]
    name_of = {id(a): pid for pid, a in images.items()}
    log: list[tuple[str, int, set[str]]] = []
    keep_alive: list[FT.CNNFineTuner] = []  # networks are identified by id(): keep them alive so no id is reused
    real_fit, real_embed = FT.CNNFineTuner.fit, FT.CNNFineTuner._embed

    def fit(self: FT.CNNFineTuner, X: list[np.ndarray], y: Any) -> FT.CNNFineTuner:
        keep_alive.append(self)
        log.append(("fit", id(self), {name_of[id(a)] for a in X}))
        return real_fit(self, X, y)

    def embed(self: FT.CNNFineTuner, X: list[np.ndarray]) -> Any:
        log.append(("embed", id(self), {name_of[id(a)] for a in X}))
        return real_embed(self, X)

    monkeypatch.setattr(FT.CNNFineTuner, "fit", fit)
    monkeypatch.setattr(FT.CNNFineTuner, "_embed", embed)
    settings = fast_settings(**{**LEARN, "epochs": 1, "folds": 2})
    result = extract_deep_features({"box": images}, settings, train_ids=train, labels=labels, seed=0)
    seen = {net: ids_ for kind, net, ids_ in log if kind == "fit"}
    described: dict[str, int] = {}
    for kind, net, ids_ in log:
        if kind == "embed":
            assert not (ids_ & seen[net]), "a network produced features for patients it was trained on"
            for pid in ids_:
                described[pid] = net
    assert set(described) == set(ids)
    assert len(seen) == 3  # 2 fold networks + the full network
    full_net = next(net for net, ids_ in seen.items() if ids_ == set(train))
    assert all(described[p] == full_net for p in test)
    assert all(described[p] != full_net for p in train)
    assert set(result.folds.loc[train, "box"]) == {0, 1}
    for ids_ in seen.values():
        assert not (ids_ & set(test))  # test patients never train anything


def test_finetune_cache_and_model_file(tmp_path: Path) -> None:
    images, labels = blob_cohort(8, size=32, seed=3)
    ids = list(images)
    settings = fast_settings(**{**LEARN, "epochs": 1, "folds": 2})
    a = extract_deep_features({"box": images}, settings, train_ids=ids[:6], labels=labels, cache_dir=tmp_path)
    b = extract_deep_features({"box": images}, settings, train_ids=ids[:6], labels=labels, cache_dir=tmp_path)
    np.testing.assert_array_equal(a.table.to_numpy(), b.table.to_numpy())
    np.testing.assert_array_equal(a.probabilities.to_numpy(), b.probabilities.to_numpy())
    c = extract_deep_features({"box": images}, settings, train_ids=ids[:6], labels=labels)  # no cache: recomputed
    np.testing.assert_array_equal(a.table.to_numpy(), c.table.to_numpy())  # fine-tuning repeats exactly on CPU
    np.testing.assert_array_equal(a.probabilities.to_numpy(), c.probabilities.to_numpy())
    model = FT.load_finetuned(b.model_files["box"], settings)
    assert model.fc.out_features == 1


def test_finetune_input_errors() -> None:
    images, _ = blob_cohort(6, size=32)
    settings = fast_settings(**{**LEARN, "epochs": 1})
    with pytest.raises(ConfigError, match="train_ids"):
        extract_deep_features({"box": images}, settings)
    with pytest.raises(ModelError, match="without a 0/1 label"):
        extract_deep_features({"box": images}, settings, train_ids=list(images), labels={})
    with pytest.raises(ModelError, match="both classes"):
        FT.CNNFineTuner(settings).fit(list(images.values()), [0] * len(images))
