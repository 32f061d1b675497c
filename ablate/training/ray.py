"""`--executor ray`: one Ray task per cohort, on a local Ray instance or a cluster.

The driver (the `python -m ablate.run` process) stays the only writer of results/<study>/: it
takes each run's claim, submits the group, and records rows and history as tasks return. Workers
load the data themselves (same data root on every node, or `[data].root` on shared storage; the
fingerprint they find must be the driver's) and save per-epoch checkpoints in the study's
checkpoints/ when they can see it (shared storage), so a retried task resumes from its last epoch;
otherwise in a node-local folder, so a retry on that node resumes and one elsewhere restarts.

Imported only for `--executor ray` (ray is the optional extra `ablate[ray]`).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ray
import torch

from ablate.data.sources import Dataset
from ablate.errors import StudyError
from ablate.models.spec import ArmSpec
from ablate.results import Checkpoint, StudyResults
from ablate.study.grid import RunSpec
from ablate.study.schema import DataSettings, Study
from ablate.training.fusion import CPU_FUSION, fusion_size
from ablate.training.runs import Outputs, absolute_data_paths, load_study_data, train_cohort


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


def node_checkpoints(store: StudyResults, token: str, run_keys: list[str]) -> tuple[list[Checkpoint], bool]:
    """The runs' checkpoints: the study's own when this node sees the driver's token in it
    (shared storage), else in a node-local folder; and whether they are the study's."""
    if store.sees_driver_token(token):
        return [store.checkpoint(key) for key in run_keys], True
    folder = Path(tempfile.gettempdir()) / "ablate-checkpoints" / store.dir.name
    return [Checkpoint(folder / f"{key}.pt") for key in run_keys], False


def train_group_task(
    study: Study,
    specs: list[RunSpec],
    fingerprint: str,
    results_root: str,
    token: str,
    threads: int,
    fault: Fault | None = None,
) -> Outputs:
    """A Ray task's body: train one cohort and return its (RunRow, [HistoryRow]) pairs."""
    torch.set_num_threads(threads)
    device = torch.device("cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu")
    store = StudyResults(results_root, study.name)
    checkpoints, shared = node_checkpoints(store, token, [s.run_key for s in specs])
    if fault is not None:
        fault.strike([s.run_key for s in specs])
    data = _worker_data(study.data, fingerprint).to(device)
    outputs = train_cohort(specs, study, data, device, checkpoints)
    if not shared:  # node-local: the driver cannot remove them
        for checkpoint in checkpoints:
            checkpoint.remove()
    return outputs


class RayExecutor:
    """Cohorts as Ray tasks (`--executor ray`); see the module docstring."""

    capacity = 1 << 30  # every group is submitted at once; Ray schedules them

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

    def fusion(self, study: Study, spec: ArmSpec, seeds: int, size: int) -> int:
        # the driver may see no GPU: on GPU workers a cell's seeds fuse whole, unmeasured
        wanted = study.run.fuse_seeds or (seeds if self.gpus else CPU_FUSION)
        return fusion_size(spec, seeds, size, wanted)

    def start(self, study: Study, data: Dataset, store: StudyResults) -> None:
        study = absolute_data_paths(study)  # workers need not share the driver's working directory
        self.study, self.fingerprint, self.store = study, data.meta["fingerprint"], store
        self.remote = ray.remote(train_group_task).options(
            num_cpus=self.cpus, num_gpus=self.gpus, max_retries=self.max_retries, retry_exceptions=True
        )
        self.token = store.put_driver_token(f".driver-{uuid.uuid4().hex}")
        self.pending: dict = {}  # task ref -> its runs

    def submit(self, cohort: list[RunSpec], on_epoch: Callable[[dict], None] | None) -> None:
        """As LocalExecutor.submit; `on_epoch` is not called (epochs run in the workers)."""
        root = str(self.store.dir.parent.resolve())
        args = (self.study, cohort, self.fingerprint, root, self.token, self.cpus, self.fault)
        self.pending[self.remote.remote(*args)] = cohort

    def collect(self) -> tuple[list[RunSpec], Outputs | str]:
        [ref], _ = ray.wait(list(self.pending), num_returns=1)
        cohort = self.pending.pop(ref)
        try:
            return cohort, ray.get(ref)
        except ray.exceptions.RayError as error:
            return cohort, _last_line(error)

    def stop(self) -> None:
        for ref in getattr(self, "pending", {}):
            ray.cancel(ref, force=True)
        if hasattr(self, "token"):
            self.store.remove_driver_token(self.token)
        if self.started:
            ray.shutdown()


def _last_line(error: Exception) -> str:
    """The last non-empty line of a task's error: the exception the worker raised, or why it died."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:200]
