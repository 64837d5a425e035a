"""Run a batch on a Dask cluster: each recording is one task, done whole on a worker; the client writes the manifest.

``batch.run_batch`` calls :func:`run_on_cluster` instead of its local loops when given a :class:`Cluster`. Like
``batch.py`` this module knows nothing of EEG: a job (``screening.ScreenJob``, ``embedding.EmbedJob``) says how a
worker loads what it needs (``load()``, once per worker, by a worker plugin) and what must be equal on every worker
(``identity``: lumamba's version, recipe hashes, head and encoder sha256). A worker whose identity differs from the
client's is refused: the run stops before any work when it is connected at the start, and a worker that joins
later fails every recording it is given with that reason instead of writing different results.

A worker process that dies mid-recording (out of memory, killed by the queue system) has written no report, since
every report is renamed into place whole; Dask gives the recording to another worker, at most ``RETRIES`` more
times, after which it is a failed entry that names the reason. Ctrl-C cancels what is queued and closes the cluster.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
import warnings
from typing import Any, Callable, Sequence

from lumamba_cli import threads
from lumamba_cli.batch import (
    Cluster,
    FileOutcome,
    FileResult,
    FoundRecording,
    LoadedJob,
    Progress,
    WorkerJob,
    outcome_of,
)
from lumamba_cli.errors import ExitCode, LumambaError, UsageError, WeightsError

try:
    import distributed

    _HAS_DASK = True
except ImportError:  # the optional [dask] extra
    _HAS_DASK = False

RETRIES = 2  # a recording whose worker died is given to another worker this many more times, then recorded failed
IN_FLIGHT_PER_WORKER = 2  # queued tasks per worker: enough to keep each busy, few enough to start in seconds


def require_dask() -> None:
    if not _HAS_DASK:
        raise UsageError("--executor dask needs Dask: pip install 'lumamba[dask]' (dask[distributed])")


def requested_threads() -> int | None:
    """The model threads asked for on the command line (``--threads``, ``$LUMAMBA_THREADS``): every worker uses
    them, so that a cluster run gives the bytes a local run with that count gives."""
    plan = threads.chosen()
    return plan.threads if plan is not None and plan.requested else None


def local_workers(requested: int | None) -> tuple[int, int]:
    """(worker processes, threads each) for a LocalCluster: the requested count, else one worker per two cores
    (decode and preprocessing are single-threaded; the model uses the second core), sharing the cores evenly
    unless ``--threads`` fixes the count."""
    cores = threads.available_cores()
    workers = requested or max(1, cores // 2)
    return workers, requested_threads() or max(1, cores // workers)


# --------------------------------------------------------------------------------------------- worker side

# What each worker process loaded, per run (a long-lived cluster serves many runs): the job, or why it refused.
_LOADED: dict[str, LoadedJob] = {}
_REFUSED: dict[str, str] = {}


def _differences(mine: dict[str, Any], theirs: dict[str, Any]) -> str:
    keys = sorted(set(mine) | set(theirs), key=str)
    return "; ".join(f"{key}: {theirs.get(key)!r} on the worker, {mine.get(key)!r} on the client"
                     for key in keys if mine.get(key) != theirs.get(key))


class _LoadJob(distributed.WorkerPlugin if _HAS_DASK else object):
    """Loads the job's models once when a worker starts (or when the plugin is registered), and checks the
    worker's identity against the client's."""

    def __init__(self, run_id: str, job: WorkerJob, identity: dict[str, Any], threads_per_worker: int | None):
        self.name = f"lumamba-{run_id}"
        self.run_id, self.job, self.identity, self.threads = run_id, job, identity, threads_per_worker

    def setup(self, worker) -> None:
        if self.threads:
            threads.configure(self.threads, jobs=2)
        try:
            loaded = self.job.load()
        except Exception as exc:  # noqa: BLE001 - reported per recording with the reason
            _REFUSED[self.run_id] = f"worker {worker.address} cannot load the job: {exc}"
            return
        different = _differences(self.identity, loaded.identity)
        if different:
            _REFUSED[self.run_id] = f"worker {worker.address} refused: {different}"
        else:
            _LOADED[self.run_id] = loaded

    def teardown(self, worker) -> None:
        _LOADED.pop(self.run_id, None)
        _REFUSED.pop(self.run_id, None)


def _state(run_id: str) -> str | None:
    """None when this worker is ready for the run, else why not (client.run calls this on every worker)."""
    if run_id in _LOADED:
        return None
    return _REFUSED.get(run_id, "the job was not loaded on this worker")


# A worker process does one recording at a time, whatever its Dask thread count: the model already uses the
# process's CPU threads, and one set of loaded heads serves the process.
_ONE_AT_A_TIME = threading.Lock()


def _do(run_id: str, item: FoundRecording) -> FileOutcome:
    problem = _state(run_id)
    if problem is not None:
        return outcome_of(item, _raiser(WeightsError(problem)), time.perf_counter())
    with _ONE_AT_A_TIME:
        outcome = outcome_of(item, lambda: _LOADED[run_id](item), time.perf_counter())
    if outcome.exception is not None and not isinstance(outcome.exception, LumambaError):
        outcome.exception = None  # a bug's exception may not pickle; its line and code travel
    return outcome


def _raiser(error: Exception) -> Callable[[], FileResult]:
    def work() -> FileResult:
        raise error

    return work


# --------------------------------------------------------------------------------------------- client side


def _client(cluster: Cluster):
    """A client of the given scheduler, or of a new LocalCluster (closed with the client)."""
    import dask

    if cluster.scheduler is not None:
        try:
            return distributed.Client(cluster.scheduler, timeout="30s"), None, requested_threads()
        except (OSError, TimeoutError) as exc:
            raise UsageError(f"cannot reach the Dask scheduler at {cluster.scheduler}: {exc}") from None
    workers, per_worker = local_workers(cluster.workers)
    # The scheduler is created here, so this config reaches it: how often a task may lose its worker.
    # With no dashboard the scheduler still opens an HTTP port for health checks; another cluster on this
    # machine holding the default port is harmless, so its warning would only confuse.
    with dask.config.set({"distributed.scheduler.allowed-failures": RETRIES}), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Port .* is already in use", category=UserWarning)
        local = distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
            silence_logs=logging.ERROR,
            # Each worker's OpenMP threads, fixed before torch starts in it; passive: workers share the cores.
            env={"OMP_NUM_THREADS": str(per_worker), "OMP_WAIT_POLICY": "PASSIVE",
                 threads.THREADS_ENV: str(per_worker)},
        )
    return distributed.Client(local), local, per_worker


def run_on_cluster(cluster: Cluster, found: Sequence[FoundRecording], todo: Sequence[int],
                   record: Callable[[int, FileOutcome], None], progress: Progress) -> None:
    """Do the recordings ``todo`` (indices into ``found``) on the cluster, calling ``record`` as each finishes."""
    require_dask()
    if not todo:
        return
    client, local, per_worker = _client(cluster)
    run_id = uuid.uuid4().hex[:12]
    futures: dict[str, tuple[int, Any]] = {}  # key -> (index into found, future)
    try:
        client.wait_for_workers(1, timeout=120)
        client.register_plugin(_LoadJob(run_id, cluster.job, cluster.identity, per_worker))
        refused = {address: why for address, why in client.run(_state, run_id).items() if why is not None}
        if refused:
            raise WeightsError(next(iter(refused.values()))
                               + (f" (and {len(refused) - 1} more worker(s))" if len(refused) > 1 else ""))
        queue = list(todo)
        window = IN_FLIGHT_PER_WORKER * max(1, len(client.scheduler_info()["workers"]))
        completed = distributed.as_completed()

        def submit_next() -> None:
            if queue:
                index = queue.pop(0)
                future = client.submit(_do, run_id, found[index], key=f"lumamba-{run_id}-{index}", pure=False)
                futures[future.key] = (index, future)
                completed.add(future)

        for _ in range(window):
            submit_next()
        for future in completed:
            index, _ = futures.pop(future.key)
            item = found[index]
            try:
                outcome = future.result()
            except distributed.KilledWorker:
                outcome = FileOutcome(item, "failed", error=f"{item.path}: a worker process died while doing this "
                                      "recording, on every retry the scheduler allows (out of memory, or killed); "
                                      "no report of it was left half-written; rerun with --skip-existing to try "
                                      "again", error_code=int(ExitCode.INTERNAL))
            except Exception as exc:  # noqa: BLE001 - a scheduling failure is this recording's outcome
                outcome = FileOutcome(item, "failed", error=f"{item.path}: Dask: {type(exc).__name__}: {exc}",
                                      error_code=int(ExitCode.INTERNAL))
            progress.file_started(item)
            progress.windows_done(outcome.windows)
            record(index, outcome)
            submit_next()
    except BaseException:  # Ctrl-C included: nothing queued may run on after the client has gone
        if futures:
            client.cancel([future for _, future in futures.values()], force=True)
        raise
    finally:
        try:
            client.unregister_worker_plugin(f"lumamba-{run_id}")
        except Exception:  # noqa: BLE001 - a closing cluster may not answer; nothing depends on it
            pass
        client.close()
        if local is not None:
            local.close()
