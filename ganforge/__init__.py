"""ganforge: train a GAN, export it, sample and serve it fast, and measure it.

The stages live in their own packages and depend on each other one way only:
``ganforge.train`` -> ``ganforge.export`` -> ``ganforge.serve`` -> ``ganforge.benchmarks``.
"""

__version__ = "0.1.0"
