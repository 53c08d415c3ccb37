"""MLflow tracking for the round runner: runs, params, metrics, plots, and the UI server.

Everything goes through an explicit `MlflowClient` (never the fluent, process-global API), so a
sweep's parent run, its trial runs and several trackers can live side by side in one process.
The runner calls this only on global rank 0.

The default store is `sqlite:///mlruns/mlflow.db`: three slashes make the path relative to the
current directory (four would make it absolute). A `Tracker` resolves it once, so a later `chdir`
does not move the store, and keeps artifacts next to the database (`mlruns/artifacts/`) as plain
files, which the UI server reads directly.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any, Literal

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from scipy.stats import spearmanr

from datamodules.errors import UserError

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
DEFAULT_ARTIFACT_ROOT = "mlruns/artifacts"

# MLflow's limits (mlflow.utils.validation): characters in a param value, params and metrics in
# one log_batch.
_MAX_PARAM_LENGTH = 6000
_PARAMS_PER_BATCH = 100
_METRICS_PER_BATCH = 1000

RunStatus = Literal["FINISHED", "FAILED", "KILLED"]

# The experiment tag that picks the UI's view; without it MLflow 3 opens a new experiment in its
# GenAI view (traces, "Evaluation runs"). Ours are model-training experiments: runs, charts.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"


class UIError(UserError, RuntimeError):
    """The MLflow UI server could not start; the message says why and what to do."""


def flatten_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config as MLflow params: `{"a.b": "x", "teachers.0.weight": "0.5"}`.

    Mappings and lists/tuples nest (dataclass instances count as mappings); every leaf is
    `str()`-ed, None becomes "null", and a value longer than MLflow allows is cut and ends in "...".
    """
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        if isinstance(value, Mapping) and value:
            flat.update(flatten_params(value, f"{name}."))
        elif isinstance(value, list | tuple) and value:
            flat.update(flatten_params(dict(enumerate(value)), f"{name}."))
        else:
            text = "null" if value is None else str(value)
            if len(text) > _MAX_PARAM_LENGTH:
                text = text[: _MAX_PARAM_LENGTH - 3] + "..."
            flat[name] = text
    return flat


def _sqlite_file(tracking_uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI (relative or absolute), None for anything else."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    path = tracking_uri.removeprefix("sqlite:///").split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


class StoreError(UserError, RuntimeError):
    """The tracking store cannot be used; the message names it, says why and what to do."""


def check_store(tracking_uri: str | None, timeout: float = 30.0) -> str:
    """The store's URI once it answers within `timeout` seconds: a server's REST API, or a
    sqlite file that is writable and not locked; else StoreError (before any heavy work). The
    wait is long enough for parallel trials that write to one sqlite file at the same time."""
    import sqlite3

    uri = tracking_uri or DEFAULT_TRACKING_URI
    fix = "start it, point --tracking_uri elsewhere, or run with --no_mlflow (or --mlflow_fallback)"
    if uri.startswith(("http://", "https://")):
        probe = uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1"
        try:
            urllib.request.urlopen(probe, timeout=timeout).close()  # noqa: S310 - http(s) only
        except (urllib.error.URLError, OSError) as err:
            raise StoreError(f"MLflow server {uri} does not answer ({err}); {fix}") from err
        return uri
    db = _sqlite_file(uri)
    if db is None:
        return uri  # another backend: MLflow reports its own errors
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(db, timeout=timeout) as connection:
            connection.execute("BEGIN IMMEDIATE")  # waits `timeout` for a writer's lock
            connection.rollback()
    except (sqlite3.Error, OSError) as err:
        raise StoreError(f"MLflow store {db} cannot be written ({err}); {fix}") from err
    return uri


def _absolute_uri(tracking_uri: str) -> str:
    """The same store with its sqlite path made absolute, so it no longer depends on the cwd."""
    db = _sqlite_file(tracking_uri)
    if db is None:
        return tracking_uri
    query = tracking_uri.partition("?")[1:]
    return f"sqlite:///{db.resolve()}" + "".join(query)


def _artifact_root(tracking_uri: str) -> Path:
    """Where runs of this store keep their artifacts: `artifacts/` next to the sqlite file."""
    db = _sqlite_file(tracking_uri)
    return (db.parent / "artifacts" if db is not None else Path(DEFAULT_ARTIFACT_ROOT)).resolve()


class Tracker:
    """Runs of one MLflow experiment, created when missing; every call names its run explicitly."""

    enabled = True

    def __init__(self, experiment: str, tracking_uri: str | None = None) -> None:
        uri = _absolute_uri(tracking_uri or DEFAULT_TRACKING_URI)
        db = _sqlite_file(uri)
        location = None
        if db is not None:
            db.parent.mkdir(parents=True, exist_ok=True)
            # Runs share the folder safely: each keeps its files under <run_id>/artifacts.
            folder = re.sub(r"[^A-Za-z0-9_-]+", "_", experiment)
            location = (_artifact_root(uri) / folder).as_uri()
        self._uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        self.experiment_id = self._experiment_id(experiment, location)

    def _experiment_id(self, name: str, location: str | None) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is None:
            try:
                return self.client.create_experiment(
                    name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING}
                )
            except MlflowException:  # another process created it between our two calls
                found = self.client.get_experiment_by_name(name)
                if found is None:
                    raise
        if found.lifecycle_stage == "deleted":
            raise ValueError(
                f"MLflow experiment {name!r} is deleted: restore it in the UI, "
                "or purge it with `mlflow gc`, or choose another name"
            )
        if EXPERIMENT_KIND_TAG not in found.tags:  # made by an older version; a user's choice stays
            self.client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
        return found.experiment_id

    @property
    def tracking_uri(self) -> str:
        """The store's URI, with a sqlite path made absolute."""
        return self._uri

    def run_url(self, run_id: str, ui_url: str = "http://127.0.0.1:5000") -> str:
        """The run's page in an MLflow UI served at `ui_url`."""
        return f"{ui_url.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{run_id}"

    def start_run(
        self,
        run_name: str,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        parent_run_id: str | None = None,
    ) -> str:
        """Start a run, log its flattened `params`, and return its id; end it with `end_run`."""
        all_tags = dict(tags or {})
        if parent_run_id is not None:
            all_tags["mlflow.parentRunId"] = parent_run_id  # nests it under the parent in the UI
        run = self.client.create_run(self.experiment_id, tags=all_tags, run_name=run_name)
        run_id = run.info.run_id
        items = [Param(k, v) for k, v in flatten_params(params or {}).items()]
        for i in range(0, len(items), _PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=items[i : i + _PARAMS_PER_BATCH])
        return run_id

    @contextmanager
    def run(
        self,
        run_name: str,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        parent_run_id: str | None = None,
    ) -> Iterator[str]:
        """`start_run` as a context: ends FINISHED, or FAILED on an error, KILLED on Ctrl-C."""
        run_id = self.start_run(run_name, params, tags, parent_run_id)
        try:
            yield run_id
        except KeyboardInterrupt:
            self.end_run(run_id, "KILLED")
            raise
        except BaseException:
            self.end_run(run_id, "FAILED")
            raise
        self.end_run(run_id)

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        """Log `metrics` (keys such as "test_ood/srcc") at `step`; NaN and inf are skipped."""
        now = int(time.time() * 1000)
        items = [
            Metric(key, float(value), now, step)
            for key, value in metrics.items()
            if math.isfinite(float(value))
        ]
        for i in range(0, len(items), _METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=items[i : i + _METRICS_PER_BATCH])

    def log_artifact(
        self, run_id: str, path: str | os.PathLike, artifact_path: str | None = None
    ) -> None:
        """Copy a file or a folder (kept under its own name) into the run's artifacts."""
        self.client.log_artifact(run_id, os.fspath(path), artifact_path)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        """Set (or overwrite) tags of a run."""
        for key, value in tags.items():
            self.client.set_tag(run_id, key, value)

    def end_run(self, run_id: str, status: RunStatus = "FINISHED") -> None:
        """Mark the run ended with `status`."""
        self.client.set_terminated(run_id, status)

    def find_run(self, tags: Mapping[str, str], status: str | None = "FINISHED") -> str | None:
        """Id of the newest run of this experiment whose tags all match (and with `status`)."""
        clauses = [f"tags.`{key}` = {_quote(value)}" for key, value in tags.items()]
        if status is not None:
            clauses.append(f"attributes.status = {_quote(status)}")
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=" and ".join(clauses),
            max_results=1,
            order_by=["attributes.start_time DESC"],
        )
        return runs[0].info.run_id if runs else None


class NullTracker:
    """A tracker that logs nothing: the runner's with `--no_mlflow`, and on ranks other than 0, so
    that its stages log unconditionally."""

    enabled = False
    tracking_uri: str | None = None

    def start_run(self, run_name: str, *args: Any, **kwargs: Any) -> str:
        return ""

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        pass

    def log_artifact(self, run_id: str, path: str | os.PathLike, artifact_path: str | None = None):
        pass

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        pass

    def end_run(self, run_id: str, status: RunStatus = "FINISHED") -> None:
        pass


def _quote(value: str) -> str:
    """A string literal for an MLflow filter, which has no escapes: pick the quote it lacks."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"MLflow cannot search for a value holding both quote kinds: {value!r}")


def scatter_plot(pred: Sequence[float], mos: Sequence[float], title: str, out: Path) -> Path:
    """PNG of predictions (x) against labels (y), with their SRCC in the title; returns `out`."""
    srcc = spearmanr(pred, mos, nan_policy="omit").statistic if len(pred) > 1 else float("nan")
    fig = Figure(figsize=(4.5, 4), layout="constrained")  # no pyplot: no global backend state
    ax = fig.subplots()
    ax.scatter(pred, mos, s=12, alpha=0.7)
    ax.set(xlabel="prediction", ylabel="label (MOS)", title=f"{title}  SRCC {srcc:.3f}")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out


def curve_plot(rows: Sequence[Mapping[str, Any]], out: Path, metric: str = "srcc") -> Path:
    """PNG of `metric` per round, one line per set, from rows like `{"round", "set", metric}`."""
    lines: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        if row.get(metric) is not None:
            lines.setdefault(str(row["set"]), []).append((int(row["round"]), float(row[metric])))
    fig = Figure(figsize=(5.5, 4), layout="constrained")
    ax = fig.subplots()
    for name, points in sorted(lines.items()):
        rounds, values = zip(*sorted(points), strict=True)
        ax.plot(rounds, values, marker="o", label=name)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="round", ylabel=metric, title=f"{metric} per round")
    if lines:
        ax.legend()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out


def ui_command(
    tracking_uri: str,
    host: str = "127.0.0.1",
    port: int = 5000,
    artifact_root: str | os.PathLike | None = None,
) -> list[str]:
    """The argv of an MLflow server (UI and REST API) for this store.

    Runs logged by `Tracker` have file:// artifact locations, which the server reads directly.
    `--default-artifact-root` (default: `artifacts/` next to the sqlite file, i.e.
    DEFAULT_ARTIFACT_ROOT for the default store) gives experiments created in the UI a file://
    location there too, so a `Tracker` on the sqlite store can log into them; the server's
    mlflow-artifacts:/ proxy would not accept a sqlite client, hence `--no-serve-artifacts`.
    One uvicorn worker: a viewer needs no more, and each worker is a ~5 s start on 2 cores.
    """
    root = Path(artifact_root) if artifact_root else _artifact_root(tracking_uri)
    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", _absolute_uri(tracking_uri),
        "--default-artifact-root", root.resolve().as_uri(),
        "--no-serve-artifacts",
        "--host", host,
        "--port", str(port),
        "--workers", "1",
    ]  # fmt: skip


def _server_env() -> dict[str, str]:
    """The server's environment: without MLflow's GenAI job runner unless the user asked for it.

    The job runner starts 8 more processes (~0.6 GB) and doubles startup time (5 s -> 10 s here)
    for scorer jobs a viewer never runs.
    """
    return {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}


def _url(host: str, port: int) -> str:
    reach = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{reach}]:{port}" if ":" in reach else f"http://{reach}:{port}"


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def serve_ui(
    tracking_uri: str = DEFAULT_TRACKING_URI, host: str = "127.0.0.1", port: int = 5000
) -> None:
    """Serve the MLflow UI for this store in the foreground until Ctrl-C (`w2svqa ui`)."""
    db = _sqlite_file(tracking_uri)
    if db is not None and not db.is_file():
        raise UIError(
            f"no runs yet ({db} does not exist): run `w2svqa run experiments/quickstart.yaml` first"
        )
    if not _port_free(host, port):
        raise UIError(f"port {port} on {host} is busy: pick another with --port")
    print(f"MLflow UI for {tracking_uri}: {_url(host, port)} (Ctrl-C stops it)", flush=True)
    # Its own process group, stopped with one SIGTERM: uvicorn answers the terminal's SIGINT with
    # a traceback. A hang-up or SIGTERM sent to us stops it like Ctrl-C does.
    proc = subprocess.Popen(
        ui_command(tracking_uri, host, port), env=_server_env(), start_new_session=True
    )
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        return
    finally:
        _stop_group(proc)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if code != 0:
        raise UIError(f"the MLflow server exited with code {code} (its log is above)")


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextmanager
def running_ui(
    tracking_uri: str, host: str = "127.0.0.1", port: int | None = None, timeout: float = 60
) -> Iterator[str]:
    """Run an MLflow server in the background; yields its base URL once its REST API answers.

    The server, its worker and anything they start share a new process group, which is
    terminated (then killed) on exit. POSIX only.
    """
    if port is None:
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
    url = _url(host, port)
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: nobody reads it until it fails
        proc = subprocess.Popen(
            ui_command(tracking_uri, host, port),
            env=_server_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_for_api(url, proc, log, timeout)
            yield url
        finally:
            _stop_group(proc)


def _wait_for_api(url: str, proc: subprocess.Popen, log: IO[bytes], timeout: float) -> None:
    probe = f"{url}/api/2.0/mlflow/experiments/search?max_results=1"
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(probe, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        exited = proc.poll() is not None
        if exited or time.monotonic() > deadline:
            log.seek(0)
            tail = log.read().decode(errors="replace")[-3000:]
            why = f"exited with code {proc.returncode}" if exited else f"no answer in {timeout} s"
            raise UIError(f"MLflow server for {url}: {why}\n{tail}")
        time.sleep(0.2)


def _stop_group(proc: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM the server's process group, wait, then SIGKILL whatever is left of it."""
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # workers the server did not take down with it
    proc.wait()
