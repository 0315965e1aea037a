"""`ganforge bench`: every backend x precision x batch size x scenario (offline, single-stream, server), measured in
child processes, reported as JSON, Markdown and plots. The scripts beside this package (benchmarks/*.py) make the
docs' tables and use its scenarios and machine facts."""
