"""`--executor ray`: one Ray task per run group, on a local Ray instance or a cluster.

The driver (the `python -m ablate.run` process) stays the only writer of results/<study>/: it
takes each run's claim, submits the group, and records rows and history as tasks return. Workers
load the data themselves (same data root on every node, or `[data].root` on shared storage; the
fingerprint they find must be the driver's) and save per-epoch checkpoints in the study's
checkpoints/ when they can see it (shared storage), so a retried task resumes from its last epoch;
otherwise in a node-local folder, so a retry on that node resumes and one elsewhere restarts.

Imported only for `--executor ray` (ray is the optional extra `ablate[ray]`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import ray
import torch
from tqdm import tqdm

from ablate.data import Dataset
from ablate.errors import StudyError
from ablate.executors import Outcome, claim_group, record_group, run_groups, summary, train_group
from ablate.results import Checkpoint, StudyResults
from ablate.study import DataSettings, RunSpec, Study


@dataclass(frozen=True)
class Fault:
    """Test hook: make the task of the group holding `run_key` fail on its first `times` attempts
    (None: always) by raising, or by killing its worker process (`kind = "exit"`). Attempts are
    counted in `folder` (a path every worker sees)."""

    run_key: str
    folder: str
    times: int | None = 1
    kind: str = "raise"

    def strike(self, run_keys: list[str]) -> None:
        if self.run_key not in run_keys:
            return
        tally = Path(self.folder) / f"{self.run_key}.attempts"
        with tally.open("a") as f:
            f.write("x")
        if self.times is None or len(tally.read_text()) <= self.times:
            if self.kind == "exit":
                os._exit(1)
            raise RuntimeError(f"injected failure of run {self.run_key}")


_DATA: dict[str, Dataset] = {}  # one dataset per worker process, reused by its later tasks


def _worker_data(settings: DataSettings, fingerprint: str) -> Dataset:
    from ablate.run import load_study_data

    key = settings.model_dump_json()
    if key not in _DATA:
        _DATA.clear()
        _DATA[key] = load_study_data(settings)
    data = _DATA[key]
    if data.meta["fingerprint"] != fingerprint:
        raise StudyError(
            f"data on node {ray.util.get_node_ip_address()}: fingerprint {data.meta['fingerprint']}, the "
            f"driver's data gives {fingerprint}: point [data].root at the same files on every node"
        )
    return data


def _checkpoint_folder(study_folder: str, token: str, study: str) -> Path:
    """The study's checkpoints/ when this node sees the driver's token in it (shared storage), else
    a node-local folder."""
    shared = Path(study_folder) / "checkpoints"
    if (shared / token).exists():
        return shared
    return Path(tempfile.gettempdir()) / "ablate-checkpoints" / study


def train_group_task(
    study: Study,
    specs: list[RunSpec],
    fingerprint: str,
    study_folder: str,
    token: str,
    threads: int,
    fault: Fault | None = None,
):
    """A Ray task's body: train one run group and return its (RunRow, [HistoryRow]) pairs."""
    torch.set_num_threads(threads)
    device = torch.device("cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu")
    folder = _checkpoint_folder(study_folder, token, study.name)
    checkpoints = [Checkpoint(folder / f"{spec.run_key}.pt") for spec in specs]
    if fault is not None:
        fault.strike([s.run_key for s in specs])
    data = _worker_data(study.data, fingerprint).to(device)
    outputs = train_group(specs, study, data, device, checkpoints)
    if folder.name != "checkpoints":  # node-local: the driver cannot remove them
        for checkpoint in checkpoints:
            checkpoint.remove()
    return outputs


class RayExecutor:
    """Run groups as Ray tasks (`--executor ray`); see the module docstring."""

    def __init__(
        self,
        address: str | None = None,
        gpus_per_task: float | None = None,
        cpus_per_task: int | None = None,
        max_retries: int = 2,
        fault: Fault | None = None,
    ):
        if gpus_per_task is not None and gpus_per_task < 0:
            raise StudyError(f"--gpus-per-task: expected a number >= 0, found {gpus_per_task}")
        if cpus_per_task is not None and cpus_per_task < 1:
            raise StudyError(f"--cpus-per-task: expected a whole number >= 1, found {cpus_per_task}")
        if max_retries < 0:
            raise StudyError(f"--max-retries: expected a whole number >= 0, found {max_retries}")
        self.address, self.max_retries, self.fault = address, max_retries, fault
        self.gpus, self.cpus = gpus_per_task, cpus_per_task or 1

    def check(self, study: Study, source: str) -> None:
        self.started = not ray.is_initialized()
        if self.started:  # "local": a new instance, not the latest `ray start` on this machine
            # Ray runs workers at nice 15 by default, so anything else on the machine starves the
            # training; a local instance exists only to train, so its workers run at normal priority.
            os.environ.setdefault("RAY_worker_niceness", "0")
            try:
                ray.init(address=self.address or "local", include_dashboard=False, log_to_driver=True)
            except (ConnectionError, RuntimeError, ValueError) as error:
                where = f"--address {self.address}" if self.address else "ray"
                raise StudyError(f"{where}: cannot start or join a Ray cluster ({error})") from None
        cluster_gpus = ray.cluster_resources().get("GPU", 0)
        device = study.run.device
        if self.gpus is None:
            self.gpus = 1.0 if cluster_gpus and device != "cpu" else 0.0
        if device.startswith("cuda") and not (self.gpus and cluster_gpus):
            raise StudyError(
                f"{source}: run.device: expected GPUs for the Ray tasks, found {cluster_gpus:g} in the "
                f"cluster and --gpus-per-task {self.gpus:g}"
            )
        if device == "cpu":
            self.gpus = 0.0

    def describe(self) -> str:
        resources = ray.cluster_resources()
        per_task = f"{self.cpus} CPU" + (f", {self.gpus:g} GPU" if self.gpus else "")
        return (
            f"Ray ({resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs in the cluster; "
            f"{per_task} per task)"
        )

    def train(self, todo, study, data, store: StudyResults, force, on_epoch) -> Outcome:
        """As LocalExecutor.train; `on_epoch` is not called (epochs run in the workers)."""
        fingerprint, outcome = data.meta["fingerprint"], Outcome()
        if study.data.root:  # workers need not share the driver's working directory
            root = str(Path(study.data.root).expanduser().resolve())
            study = study.model_copy(update={"data": study.data.model_copy(update={"root": root})})
        fuse = study.run.fuse_seeds or (len(study.train.all_seeds) if self.gpus else 1)
        remote = ray.remote(train_group_task).options(
            num_cpus=self.cpus, num_gpus=self.gpus, max_retries=self.max_retries, retry_exceptions=True
        )
        token = f".driver-{uuid.uuid4().hex}"
        (store.dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        (store.dir / "checkpoints" / token).touch()
        pending: dict = {}  # task ref -> (its runs, the ExitStack holding their claims)

        def submit(group: list[RunSpec], wait: bool) -> list[RunSpec]:
            claims = contextlib.ExitStack()
            mine, busy = claim_group(store, group, claims, wait)
            finished_now = store.finished_keys(fingerprint)
            mine = [s for s in mine if force or s.run_key not in finished_now]
            if not mine:
                claims.close()
                return busy
            args = (study, mine, fingerprint, str(store.dir.resolve()), token, self.cpus, self.fault)
            pending[remote.remote(*args)] = (mine, claims)
            return busy

        def collect(bar: tqdm) -> None:
            """Record each task's runs as it returns, until none is pending."""
            while pending:
                [ref], _ = ray.wait(list(pending), num_returns=1)
                group, claims = pending.pop(ref)
                with claims:
                    try:
                        outputs = ray.get(ref)
                    except ray.exceptions.RayError as error:
                        reason = _last_line(error)
                        outcome.failed.extend((spec, reason) for spec in group)
                        bar.update(len(group))
                        continue
                    record_group(store, outputs)
                for row, _ in outputs:
                    outcome.diverged += row.status != "ok"
                    tqdm.write(summary(row))
                bar.update(len(group))

        try:
            with tqdm(total=len(todo), desc="runs") as bar:
                waited = []
                for group in run_groups(todo, store, fuse):
                    waited += submit(group, wait=False)
                collect(bar)
                for spec in waited:  # held by another process: wait for it, train it if unfinished
                    submit([spec], wait=True)
                    collect(bar)
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        finally:
            for _, claims in pending.values():
                claims.close()
            (store.dir / "checkpoints" / token).unlink(missing_ok=True)
            if self.started:
                ray.shutdown()
        return outcome


def _last_line(error: Exception) -> str:
    """The last non-empty line of a task's error: the exception the worker raised, or why it died."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:200]
