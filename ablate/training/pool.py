"""`--jobs N`: cohorts trained N at a time in worker processes on this machine.

A small arm cannot fill the cores of a CPU (its convolutions are too small), so several runs
side by side, each with cores / N threads, finish a study sooner. The workers come from the
standard library's ProcessPoolExecutor (spawned, so no thread pool is forked); each loads the
study's data once and must find the driver's fingerprint. A worker writes only its runs'
checkpoints, through StudyResults, and returns rows; the driver claims, records and prints, as
for every executor. Workers die with the driver (kill -9 included), so a rerun never races an
orphan; Ctrl-C stops them, and their last epoch's checkpoints stay for the resume.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

import torch

from ablate.data.sources import Dataset
from ablate.errors import StudyError
from ablate.models.spec import ArmSpec
from ablate.results import StudyResults
from ablate.study.grid import RunSpec
from ablate.study.schema import Study
from ablate.training.fusion import CPU_FUSION, fusion_size
from ablate.training.loop import resolve_device
from ablate.training.runs import Outputs, absolute_data_paths, load_study_data, train_cohort

_WORKER: dict = {}  # this worker process's study, data and results store


def _die_with(parent: int) -> Callable[[dict], None]:
    """An on_epoch hook that ends the worker once its driver is gone (where prctl is missing)."""

    def check(_row: dict) -> None:
        if os.getppid() != parent:
            os._exit(1)

    return check


def _start_worker(study: Study, fingerprint: str, threads: int, results_root: str, parent: int) -> None:
    """Pool initializer: die with the driver, set threads, load the data once."""
    try:  # Linux: the kernel sends SIGKILL to this worker when its parent dies
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    if os.getppid() != parent:
        os._exit(1)
    torch.set_num_threads(threads)
    data = load_study_data(study.data)
    if data.meta["fingerprint"] != fingerprint:
        raise StudyError(
            f"data in a worker: fingerprint {data.meta['fingerprint']}, the driver's is {fingerprint}"
        )
    _WORKER.update(study=study, data=data, store=StudyResults(results_root, study.name), parent=parent)


def _train(cohort: list[RunSpec]) -> Outputs:
    """A worker's task: train one cohort, checkpointing in the study's folder."""
    store: StudyResults = _WORKER["store"]
    checkpoints = [store.checkpoint(spec.run_key) for spec in cohort]
    device = torch.device("cpu")
    return train_cohort(
        cohort, _WORKER["study"], _WORKER["data"], device, checkpoints, _die_with(_WORKER["parent"])
    )


def default_jobs(study: Study, cores: int | None = None) -> int:
    """Runs at a time when neither --jobs nor [run] jobs says: 1 on CUDA and for a study that
    fixes its threads ([run] threads, as before --jobs existed); else one run per core, up to four
    (a small arm does the most work per core on one thread; more runs at once add memory for
    little gain)."""
    cuda = study.run.device.startswith("cuda") or (study.run.device == "auto" and torch.cuda.is_available())
    if cuda or study.run.threads:
        return 1
    return max(1, min(cores or os.cpu_count() or 1, 4))


class PoolExecutor:
    """Cohorts trained `jobs` at a time in worker processes (CPU only)."""

    def __init__(self, jobs: int):
        if jobs < 1:
            raise StudyError(f"--jobs: expected a whole number >= 1, found {jobs}")
        self.capacity = jobs

    def check(self, study: Study, source: str) -> None:
        if resolve_device(study.run.device).type == "cuda":
            raise StudyError(
                f"{source}: run.device: --jobs > 1 trains on the CPU, found {study.run.device} with "
                'CUDA (set device = "cpu")'
            )
        cores = os.cpu_count() or 1
        self.threads = study.run.threads or max(1, cores // self.capacity)

    def describe(self) -> str:
        plural = "s" if self.threads > 1 else ""
        return f"cpu, {self.capacity} runs at a time with {self.threads} thread{plural} each"

    def fusion(self, study: Study, spec: ArmSpec, seeds: int, size: int) -> int:
        return fusion_size(spec, seeds, size, study.run.fuse_seeds or CPU_FUSION)

    def start(self, study: Study, data: Dataset, store: StudyResults) -> None:
        root = str(store.dir.parent.resolve())
        study = absolute_data_paths(study)  # workers need not share the driver's working directory
        self.pool = ProcessPoolExecutor(
            max_workers=self.capacity,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(study, data.meta["fingerprint"], self.threads, root, os.getpid()),
        )
        self.pending: dict[Future, list[RunSpec]] = {}

    def submit(self, cohort: list[RunSpec], on_epoch: Callable[[dict], None] | None) -> None:
        """As LocalExecutor.submit; `on_epoch` is not called (epochs run in the workers)."""
        self.pending[self.pool.submit(_train, cohort)] = cohort

    def collect(self) -> tuple[list[RunSpec], Outputs | str]:
        done, _ = wait(list(self.pending), return_when=FIRST_COMPLETED)
        future = next(iter(done))
        cohort = self.pending.pop(future)
        error = future.exception()
        if isinstance(error, KeyboardInterrupt):
            raise error
        if error is not None:
            return cohort, f"{type(error).__name__}: {error}".splitlines()[0][:200]
        return cohort, future.result()

    def stop(self) -> None:
        pool = getattr(self, "pool", None)
        if pool is None:
            return
        if self.pending:  # interrupted: end the workers now (their checkpoints stay for the resume)
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
