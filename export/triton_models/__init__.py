"""The model.py files of ganforge's Triton repository (Triton's Python backend runs them; nothing imports them here).

Each is copied as ``REPO/<model>/1/model.py``. Both read their settings from the model's ``parameters``; the
``python_path`` parameter lists site directories (os.pathsep-separated) that give the backend's interpreter the
packages the model needs (the exporting Python's site-packages by default; missing folders are skipped, so the same
repository also runs where the packages are already importable, as in an execution environment).
"""
