"""Training stage: data sources, models, losses, the loop, checkpoints and the `ganforge train` command."""
