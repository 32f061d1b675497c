"""Executors: how cohorts get trained (the driver claims, submits, collects and records).
`LocalExecutor` trains in this process, `training.pool.PoolExecutor` in worker processes
(`--jobs`), `training.ray.RayExecutor` on a Ray cluster; `make_executor` chooses one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from tqdm import tqdm

from ablate.data.sources import Dataset
from ablate.errors import StudyError
from ablate.models.spec import ArmSpec
from ablate.results import StudyResults
from ablate.study.grid import RunSpec
from ablate.study.schema import Study
from ablate.training.fusion import device_fusion, fusion_size
from ablate.training.loop import resolve_device
from ablate.training.runs import Outputs, train_cohort


class Executor(Protocol):
    """How cohorts get trained. `capacity`: groups in flight at once."""

    capacity: int

    def check(self, study: Study, source: str) -> None:
        """StudyError when the study cannot run here (before any data is loaded)."""

    def describe(self) -> str:
        """Where the runs train, for the first line of output, e.g. 'cpu'."""

    def fusion(self, study: Study, spec: ArmSpec, seeds: int, size: int) -> int:
        """Seeds per cohort of a cell of `seeds` runs of `spec` on size x size images:
        [run].fuse_seeds, else the executor's default (training.fusion)."""

    def start(self, study: Study, data: Dataset, store: StudyResults) -> None:
        """Get ready to train this study's cohorts (once, before the first submit)."""

    def submit(self, cohort: list[RunSpec], on_epoch: Callable[[dict], None] | None) -> None:
        """Start training a cohort whose claims the driver holds."""

    def collect(self) -> tuple[list[RunSpec], Outputs | str]:
        """One submitted cohort that ended: its outputs, or the one-line reason it failed."""

    def stop(self) -> None:
        """Cancel what is still in flight and let go of the executor's resources."""


class LocalExecutor:
    """Cohorts trained one after another in this process (the default)."""

    capacity = 1

    def check(self, study: Study, source: str) -> None:
        self.device = resolve_device(study.run.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise StudyError(
                f"{source}: run.device: expected an available CUDA device, found none "
                f'(use device = "cpu" or "auto")'
            )
        if study.run.threads:
            torch.set_num_threads(study.run.threads)

    def describe(self) -> str:
        return str(self.device)

    def fusion(self, study: Study, spec: ArmSpec, seeds: int, size: int) -> int:
        wanted = study.run.fuse_seeds or device_fusion(spec, seeds, self.device, size)
        return fusion_size(spec, seeds, size, wanted)

    def start(self, study: Study, data: Dataset, store: StudyResults) -> None:
        self.study, self.data, self.store = study, data.to(self.device), store
        self.queue: list[tuple[list[RunSpec], Callable | None]] = []
        self.epochs = tqdm(desc="epochs", position=1, leave=False)

    def submit(self, cohort: list[RunSpec], on_epoch: Callable[[dict], None] | None) -> None:
        self.queue.append((cohort, on_epoch))

    def collect(self) -> tuple[list[RunSpec], Outputs]:
        cohort, on_epoch = self.queue.pop(0)

        def progress(row: dict) -> None:
            self.epochs.update(1)
            if on_epoch is not None:
                on_epoch(row)

        self.epochs.reset(total=self.study.train.epochs * len(cohort))
        checkpoints = [self.store.checkpoint(s.run_key) for s in cohort]
        return cohort, train_cohort(cohort, self.study, self.data, self.device, checkpoints, progress)

    def stop(self) -> None:
        self.epochs.close()


EXECUTORS = ("local", "ray")


def local_executor(study: Study, jobs: int | None = None) -> Executor:
    """This machine's executor: `jobs` runs at a time (else [run] jobs, else the machine's default)."""
    from ablate.training.pool import PoolExecutor, default_jobs

    jobs = jobs if jobs is not None else (study.run.jobs or default_jobs(study))
    return LocalExecutor() if jobs == 1 else PoolExecutor(jobs)


def make_executor(study: Study, kind: str = "local", jobs: int | None = None, **ray_options) -> Executor:
    """The executor `kind` names: "local" (`jobs` at a time) or "ray" (ray_options: address,
    gpus_per_task, cpus_per_task, max_retries; Ray is imported only here, an optional extra)."""
    if kind == "local":
        given = [
            f"--{k.replace('_', '-')}" for k, v in ray_options.items() if v is not None and k != "max_retries"
        ]
        if given:
            raise StudyError(f"{given[0]}: only with --executor ray, found --executor local")
        return local_executor(study, jobs)
    if jobs is not None:
        raise StudyError("--jobs: only with --executor local, found --executor ray (use --cpus-per-task)")
    from ablate.training.ray import RayExecutor

    return RayExecutor(**{k: v for k, v in ray_options.items() if v is not None})
