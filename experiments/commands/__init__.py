"""The `w2svqa` commands, one module per family; `experiments.cli` imports a module only when one
of its commands runs, so each module imports at its top only what its signatures need."""
