"""MLflow tracking against a real sqlite store (and a real UI server) in a temporary folder."""

from __future__ import annotations

import json
import socket
import urllib.parse
import urllib.request
from pathlib import Path

import matplotlib.image
import psutil
import pytest
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

from experiments.tracking import (
    DEFAULT_ARTIFACT_ROOT,
    Tracker,
    UIError,
    curve_plot,
    flatten_params,
    running_ui,
    scatter_plot,
    serve_ui,
    ui_command,
)

# MLflow's own deprecation, raised inside its sqlalchemy store.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A folder whose mlruns/ store is shared by the module (creating one costs 1-2 s)."""
    return tmp_path_factory.mktemp("store")


@pytest.fixture
def tracker(store, monkeypatch, request) -> Tracker:
    """A Tracker on the default (relative) store inside `store`, one experiment per test."""
    monkeypatch.chdir(store)
    return Tracker(request.node.name)


def test_flatten_params_nests_dicts_and_lists():
    config = {
        "seed": 7,
        "student": {"class_path": "Compact", "init_args": {"width": 32, "dropout": None}},
        "teachers": [{"name": "niqe", "weight": 0.5}, {"name": "vmaf", "weight": 1.5}],
        "sizes": (224, 224),
        "empty": {},
        "long": "x" * (MAX_PARAM_VAL_LENGTH + 10),
    }
    flat = flatten_params(config)
    assert flat["seed"] == "7"
    assert flat["student.class_path"] == "Compact"
    assert flat["student.init_args.width"] == "32"
    assert flat["student.init_args.dropout"] == "null"
    assert flat["teachers.0.weight"] == "0.5"
    assert flat["teachers.1.name"] == "vmaf"
    assert flat["sizes.1"] == "224"
    assert flat["empty"] == "{}"
    assert len(flat["long"]) == MAX_PARAM_VAL_LENGTH and flat["long"].endswith("...")
    assert flatten_params({"a": 1}, prefix="cfg.") == {"cfg.a": "1"}


def test_run_round_trip(tracker, store, tmp_path):
    assert (store / "mlruns" / "mlflow.db").is_file()
    params = {f"p{i}": i for i in range(150)} | {"nested": {"k": [1, None]}}  # > one log_batch
    run_id = tracker.start_run("round-1", params=params, tags={"sweep": "s1"})
    for step in (1, 2, 3):
        tracker.log_metrics(run_id, {"test_ood/srcc": 0.1 * step, "loss": float("nan")}, step)
    report = tmp_path / "report.txt"
    report.write_text("hello")
    tracker.log_artifact(run_id, report)
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "a.png").write_bytes(b"png")
    tracker.log_artifact(run_id, tmp_path / "plots", artifact_path="figures")
    tracker.set_tags(run_id, {"stage": "done"})
    tracker.end_run(run_id)

    client = MlflowClient(tracker.tracking_uri)  # a fresh reader of the same store
    run = client.get_run(run_id)
    assert run.data.params == flatten_params(params)
    assert run.data.tags["sweep"] == "s1" and run.data.tags["stage"] == "done"
    assert run.data.tags["mlflow.runName"] == "round-1"
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run_id, "test_ood/srcc")
    assert [m.step for m in history] == [1, 2, 3]
    assert history[-1].value == pytest.approx(0.3)
    assert "loss" not in run.data.metrics  # NaN is skipped
    assert [a.path for a in client.list_artifacts(run_id)] == ["figures", "report.txt"]
    plots = client.list_artifacts(run_id, "figures/plots")
    assert [a.path for a in plots] == ["figures/plots/a.png"]
    # Artifacts are plain files under mlruns/artifacts, whatever the current directory is later.
    folder = (store / DEFAULT_ARTIFACT_ROOT / "test_run_round_trip").resolve()
    assert run.info.artifact_uri == f"{folder.as_uri()}/{run_id}/artifacts"
    assert (folder / run_id / "artifacts" / "report.txt").read_text() == "hello"
    assert tracker.run_url(run_id).endswith(f"/#/experiments/{tracker.experiment_id}/runs/{run_id}")


def test_same_experiment_is_reused(tracker, request):
    again = Tracker(request.node.name, tracker.tracking_uri)
    assert again.experiment_id == tracker.experiment_id


def test_deleted_experiment_is_not_silently_reused(tracker, request):
    tracker.client.delete_experiment(tracker.experiment_id)
    with pytest.raises(ValueError, match="is deleted"):
        Tracker(request.node.name, tracker.tracking_uri)


def test_parent_and_child_runs(tracker):
    parent = tracker.start_run("sweep")
    child = tracker.start_run("trial-0", parent_run_id=parent)
    tracker.end_run(child)
    tracker.end_run(parent)
    assert tracker.client.get_run(child).data.tags["mlflow.parentRunId"] == parent


def test_run_context_ends_failed_on_error(tracker):
    with pytest.raises(RuntimeError), tracker.run("broken") as run_id:
        raise RuntimeError("boom")
    assert tracker.client.get_run(run_id).info.status == "FAILED"


def test_find_run_skips_failed_runs(tracker):
    tags = {"trial": "lr=0.1", "note": "it's"}
    assert tracker.find_run(tags) is None
    finished = tracker.start_run("first", tags=tags)
    tracker.end_run(finished)
    failed = tracker.start_run("second", tags=tags)  # newer, but it failed
    tracker.end_run(failed, "FAILED")
    other = tracker.start_run("other", tags={"trial": "lr=0.2", "note": "it's"})
    tracker.end_run(other)
    assert tracker.find_run(tags) == finished
    assert tracker.find_run(tags, status="FAILED") == failed
    assert tracker.find_run(tags, status=None) == failed  # newest of any status
    assert tracker.find_run({"trial": "lr=0.3"}) is None


def test_plots_are_readable_pngs(tmp_path):
    scatter = scatter_plot(
        [0.1, 0.4, 0.3, 0.9], [1.0, 2.5, 2.0, 4.5], "test_ood", tmp_path / "s.png"
    )
    rows = [
        {"round": r, "set": s, "srcc": 0.1 * r + (0.05 if s == "val" else 0.0)}
        for r in (0, 1, 2)
        for s in ("val", "test_ood")
    ]
    curve = curve_plot(rows, tmp_path / "plots" / "curve.png")
    for path in (scatter, curve):
        assert path.stat().st_size > 0
        assert matplotlib.image.imread(path).ndim == 3


def test_ui_command_points_at_the_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ui_command("sqlite:///mlruns/mlflow.db", port=5123)
    assert argv[1:4] == ["-m", "mlflow", "server"]

    def option(name: str) -> str:
        return argv[argv.index(name) + 1]

    assert option("--backend-store-uri") == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"
    assert option("--default-artifact-root") == (tmp_path / "mlruns/artifacts").resolve().as_uri()
    assert option("--port") == "5123" and option("--workers") == "1"


def test_serve_ui_explains_why_it_cannot_start(tmp_path, monkeypatch, tracker):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(UIError, match="busy"):
            serve_ui(tracker.tracking_uri, port=busy.getsockname()[1])
    monkeypatch.chdir(tmp_path)  # no store here
    with pytest.raises(UIError, match="no runs yet.*w2svqa run experiments/quickstart.yaml"):
        serve_ui()


@pytest.mark.slow  # the server imports MLflow and FastAPI: 5-11 s on 2 cores
def test_running_ui_serves_logged_runs(tracker, tmp_path):
    run_id = tracker.start_run("served", params={"lr": 0.1})
    tracker.log_metrics(run_id, {"test_ood/srcc": 0.75}, step=1)
    (tmp_path / "note.txt").write_text("artifact body")
    tracker.log_artifact(run_id, tmp_path / "note.txt")
    tracker.end_run(run_id)

    with running_ui(tracker.tracking_uri) as url:
        (server,) = [p for p in psutil.Process().children() if "mlflow" in p.cmdline()]
        group = [server, *server.children(recursive=True)]
        body = json.dumps({"experiment_ids": [tracker.experiment_id]}).encode()
        request = urllib.request.Request(
            f"{url}/api/2.0/mlflow/runs/search",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            runs = json.load(response)["runs"]
        assert [r["info"]["run_id"] for r in runs] == [run_id]
        assert {"key": "test_ood/srcc", "value": 0.75, "step": 1}.items() <= (
            runs[0]["data"]["metrics"][0].items()
        )
        # The UI fetches artifacts through this endpoint.
        query = urllib.parse.urlencode({"run_uuid": run_id, "path": "note.txt"})
        with urllib.request.urlopen(f"{url}/get-artifact?{query}", timeout=10) as response:
            assert response.read() == b"artifact body"

    _, alive = psutil.wait_procs(group, timeout=5)
    assert not alive, f"server processes left running: {alive}"
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/health", timeout=2)
