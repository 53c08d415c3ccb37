"""Typed experiment configs, the round runner, sweeps, MLflow tracking and the `w2svqa` CLI."""
