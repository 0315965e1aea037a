"""The runtime: one Runner per backend (runners/), the model files a backend loads (model_files.py), and `--backend
auto`'s measured choice (auto.py). Sampling and the HTTP server both stand on it."""
