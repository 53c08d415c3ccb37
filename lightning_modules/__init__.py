"""What learns or scores: students, teachers, rank losses, metrics and the LightningModules."""
