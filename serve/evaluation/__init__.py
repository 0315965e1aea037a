"""`ganforge eval`: samples from fixed seeds through a Runner, scored with training's metrics (train/metrics)."""
