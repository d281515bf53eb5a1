"""Stage ``cohort``: load (or generate) the cohort, validate every case, checksum every input file."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from rccgrade.cache import stable_hash
from rccgrade.errors import ConfigError, RccgradeError
from rccgrade.safepath import remove_tree_inside
from rccgrade.study.context import StageRecord, StudyContext, log
from rccgrade.study.outputs import CohortOutput
from rccgrade.study.preflight import check_cohort_size
from rccgrade.study.stages.validation_cache import load_report, report_path, save_report, validation_key


def _rel(path: Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return str(Path(path).resolve())


def synth_cohort(ctx: StudyContext) -> Path:
    """Generate the configured synthetic cohort under ``<run_dir>/cohort`` once; return its manifest."""
    from rccgrade.synth.writer import write_cohort

    synth = ctx.config.synth
    if synth is None:
        raise RuntimeError("synth_cohort called without a synth section")
    folder = ctx.run_dir / "cohort"
    stamp = folder / "study-synth.json"
    wanted = synth.model_dump(mode="json")
    manifest = folder / "manifest.csv"
    if stamp.is_file() and manifest.is_file() and json.loads(stamp.read_text()) == wanted:
        log.info("synthetic cohort found at %s", folder)
        return manifest
    if folder.exists():
        remove_tree_inside(folder, ctx.run_dir)
    manifest = write_cohort(
        folder,
        n=synth.n,
        seed=synth.seed,
        size=synth.size,
        fmt=synth.format,
        parallel=ctx.case_parallel(),
        progress=ctx.progress("cohort"),
    )
    stamp.write_text(json.dumps(wanted, indent=1))
    return manifest


class CohortStage:
    """Load, validate and checksum the cohort (always runs; an unchanged cohort's validation is reused)."""

    name = "cohort"
    description = "load, validate and checksum the cohort"
    requires: tuple[str, ...] = ()
    version = "cohort-1"

    def __init__(self, check_folds: bool = True) -> None:
        self.check_folds = check_folds

    def run(self, ctx: StudyContext, record: StageRecord) -> CohortOutput:
        """Validate the manifest's cases; the usable ones go on."""
        from rccgrade.cohort.manifest import load_cohort
        from rccgrade.cohort.validate import validate_cohort
        from rccgrade.provenance import ChecksumCache

        cfg = ctx.config
        manifest = cfg.cohort.manifest
        if manifest is None or not Path(manifest).is_file():
            if cfg.synth is None:
                raise ConfigError(
                    "the study has no cohort: set cohort.manifest to your manifest CSV"
                    + (f" (not found: {manifest})" if manifest else "")
                    + ", or add a 'synth:' section to generate a synthetic cohort"
                )
            manifest = synth_cohort(ctx)
            record.detail = "synthetic cohort"
        manifest = Path(manifest).resolve()
        cohort = load_cohort(manifest, settings=cfg.cohort)
        # the sizes against the folds, from the labels alone: before any image is read
        if self.check_folds:
            check_cohort_size(cohort.labels(), cohort.splits(), cfg.models, seed=ctx.seed)
        cache = ChecksumCache(ctx.run_dir / "cache" / "checksums.json")
        inputs = {"manifest": manifest, "clinical_csv": cfg.cohort.clinical_csv}
        stored = report_path(ctx.run_dir, validation_key(cohort, cfg.cohort, inputs, cache.checksum))
        report = None if "cohort" in ctx.force else load_report(stored)
        if report is None:  # per-case work: the cluster (if any) starts here
            report = validate_cohort(
                cohort, settings=cfg.cohort, parallel=ctx.case_parallel(), progress=ctx.progress("cohort")
            )
            save_report(report, stored)
        else:
            log.info("cohort unchanged since %s: its validation is reused", stored.name)
            record.detail = "; ".join(filter(None, [record.detail, "validation reused"]))
        report.write_csv(ctx.run_dir / "validation.csv")
        usable = set(report.usable)
        seen: set[str] = set()
        keep = []
        for case in cohort.cases:
            if case.patient_id in usable and case.patient_id not in seen:
                keep.append(case.patient_id)
                seen.add(case.patient_id)
        bad = report.cases[report.cases["status"] != "usable"]
        for row in bad.itertuples(index=False):
            codes = str(getattr(row, "codes", ""))
            ctx.failures.append({"stage": "validate", "patient_id": str(row.patient_id), "error": f"unusable: {codes}"})
        record.n_failures = len(bad)
        if not keep:
            raise RccgradeError(
                f"no usable case in the cohort ({report.summary()}); see validation.csv",
                path=ctx.run_dir / "validation.csv",
            )
        usable_cohort = cohort.subset(keep)

        root = manifest.parent
        image_sums: dict[str, dict[str, str]] = {}
        sums: dict[str, str] = {_rel(manifest, root): cache.checksum(manifest)}
        if cfg.cohort.clinical_csv is not None:
            sums[_rel(Path(cfg.cohort.clinical_csv), root)] = cache.checksum(cfg.cohort.clinical_csv)
        for i, case in enumerate(usable_cohort.cases):
            per: dict[str, str] = {}
            for name, path in [*case.images.items(), ("mask", case.mask)]:
                digest = cache.checksum(path)
                per[name] = digest
                sums[_rel(Path(path), root)] = digest
            image_sums[case.patient_id] = per
            ctx.observer.stage_progress("cohort", i + 1, len(usable_cohort.cases))
        cache.save()
        geometry = {
            "mask_phase": cfg.cohort.mask_phase,
            "label": cfg.cohort.label,
            "labels": {c.patient_id: c.label for c in usable_cohort.cases},
        }
        labels = usable_cohort.labels()
        clin = usable_cohort.clinical_frame()
        record.detail = f"{len(keep)} usable of {len(cohort.cases)} cases" + (
            f"; {record.detail}" if record.detail else ""
        )
        return CohortOutput(
            manifest=manifest,
            cohort=usable_cohort,
            validation=report,
            checksums=sums,
            images_key=stable_hash(image_sums, geometry),
            labels_key=stable_hash({str(k): (None if pd.isna(v) else int(v)) for k, v in labels.items()}),
            clinical_key=stable_hash(
                clin.astype("object").where(clin.notna(), None).to_dict(orient="index"),
                dict(usable_cohort.clinical_types),
            ),
        )
