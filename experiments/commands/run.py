"""`w2svqa run`, `w2svqa sweep` and `w2svqa ui`: experiments, grids of them, and their MLflow UI."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from datamodules.errors import UserError


def run_options(
    output_dir: str | None = None,
    tracking_uri: str | None = None,
    no_mlflow: bool = False,
    mlflow_fallback: bool = False,
    parent_run_id: str | None = None,
    run_name: str | None = None,
) -> None:
    """The run's own options, beside the experiment's keys.

    Args:
        output_dir: Where the run's tables, students and results go (default: runs/NAME).
        tracking_uri: MLflow store (default: sqlite:///mlruns/mlflow.db).
        no_mlflow: Log nothing to MLflow.
        mlflow_fallback: Use the local store if `tracking_uri` does not answer.
        parent_run_id: Log as a child of this MLflow run (sweeps set it).
        run_name: The MLflow run's name (default: the experiment's name).
    """


class Run:
    """Run a weak-to-strong experiment from a YAML file: teachers label, the student learns, round
    after round.

    Prints the results table and one verdict line per set, writes OUTPUT_DIR/results.json and
    logs to MLflow. Usage: `w2svqa run CONFIG.yaml [--KEY VALUE ...]` (or `--config
    CONFIG.yaml`); any key of the file can be overridden: `--rounds 2`, `--training.steps 50`,
    `--teachers.0.weight 0.5`, `--student.init_args.frames 4`.
    """

    def main(self, args: list[str], prog: str) -> None:
        """Parse `args` (file, overrides and run options) and run the experiment."""
        if LAUNCHER_PID in os.environ and "RANK" in os.environ:  # a rank that _launch started
            from datamodules._workers import follow_parent

            # first, before the imports and the parse that take seconds: a SIGKILLed torchrun
            # forwards nothing, and its ranks would run on, orphaned
            follow_parent(int(os.environ[LAUNCHER_PID]))
        from experiments.config import dump_config, experiment_parser, parse_experiment
        from experiments.parsing import bare_flags, underscored

        parser = experiment_parser(prog, run_options, description=Run.__doc__)
        if any(a in ("-h", "--help") for a in args):
            print(parser.format_help())
            return
        args = [underscored(a) for a in args]
        print_config = any(a.split("=")[0] == "--print_config" for a in args)
        args = bare_flags(parser, [a for a in args if a.split("=")[0] != "--print_config"])
        # printing the config checks it but builds nothing (no model is loaded)
        namespace, experiment = parse_experiment(
            args, instantiate=not print_config, options=run_options
        )
        options = {k: namespace.pop(k) for k in _option_names()}
        if experiment is None:
            sys.stdout.write(dump_config(namespace))
            return
        # under torchrun already (several nodes start it themselves): this process is one rank
        if "RANK" not in os.environ and (processes := _processes(experiment.training.trainer)) > 1:
            _launch(processes, args)  # does not return
        from experiments.runner import run_experiment

        output_dir = options["output_dir"] or f"runs/{experiment.name}"
        results = run_experiment(
            namespace, experiment, output_dir, tracking_uri=options["tracking_uri"],
            parent_run_id=options["parent_run_id"], run_name=options["run_name"],
            track=not options["no_mlflow"], mlflow_fallback=options["mlflow_fallback"],
        )  # fmt: skip
        print(f"\n{output_dir}/results.json written; final student {results['final_checkpoint']}; "
              f"{results['seconds']:.0f} s in all")  # fmt: skip
        if "mlflow" in results:
            mlflow = results["mlflow"]
            print(f"MLflow run {mlflow['run_id']} in {mlflow['tracking_uri']} (see it with "
                  "`w2svqa ui`)")  # fmt: skip


run = Run()


def _option_names() -> list[str]:
    import inspect

    return list(inspect.signature(run_options).parameters)


def _processes(trainer) -> int:
    """Training processes on this node that `trainer` asks for."""
    if trainer.num_nodes > 1:
        raise UserError(
            "for several nodes start it on each node with torchrun, e.g. "
            "`torchrun --nnodes N --nproc_per_node G --rdzv_endpoint HOST:PORT "
            "-m experiments.cli run CONFIG.yaml`"
        )
    devices = trainer.devices
    if devices in ("auto", -1, "-1"):
        import torch

        return torch.cuda.device_count() if trainer.accelerator != "cpu" else 1
    return int(devices) if str(devices).isdigit() else len(str(devices).split(","))


LAUNCHER_PID = "W2SVQA_LAUNCHER_PID"  # the pid of the torchrun that `w2svqa run` became


def _launch(processes: int, args: list[str]) -> None:
    """Run this same command as `processes` ranks under torchrun: all ranks train together (DDP
    over gloo on CPU, NCCL on GPUs, or DeepSpeed)."""
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={processes}", "-m", "experiments.cli", "run", *args]  # fmt: skip
    print(f"w2svqa run: starting {processes} processes (torchrun)", flush=True)
    sys.stdout.flush()
    os.environ[LAUNCHER_PID] = str(os.getpid())  # execv keeps the pid: the ranks' parent's
    os.execv(sys.executable, argv)


def sweep(
    sweep_file: Path,
    output_dir: Path | None = None,
    tracking_uri: str | None = None,
    parallel: int | None = None,
) -> None:
    """Run a sweep: a base experiment and a grid of overrides, one MLflow child run per trial.

    Usage: `w2svqa sweep experiments/sweeps/rounds.yaml`.

    Args:
        sweep_file: The sweep YAML (base, name, grid, parallel).
        output_dir: Folder of the trials (default: runs/NAME).
        tracking_uri: MLflow store (default: sqlite:///mlruns/mlflow.db).
        parallel: Trials at once (default: the file's `parallel`, else 1).
    """
    from experiments.sweep import run_sweep

    run_sweep(sweep_file, output_dir, tracking_uri, parallel)


def ui(tracking_uri: str = "sqlite:///mlruns/mlflow.db", host: str = "127.0.0.1", port: int = 5000):
    """Start the MLflow UI for the experiment store (Ctrl-C stops it); open the printed address.

    Args:
        tracking_uri: The store `w2svqa run` logged to.
        host: Interface to listen on (127.0.0.1: this machine only).
        port: Port to listen on.
    """
    from experiments.tracking import serve_ui

    serve_ui(tracking_uri, host, port)
