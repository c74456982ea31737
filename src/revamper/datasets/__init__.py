"""Data sets that several tools share (the benchmark, the tuner, the experiments, the examples).

- :mod:`~revamper.datasets.builtin`: the built-in ImageNet-like JPEG data set, generated on first
  use from photographs that scikit-image and scikit-learn ship (no network);
- :mod:`~revamper.datasets.folder`: checks and a raw-bytes ``ImageFolder`` for a user's folder.

The runtime core never imports this package: a training job brings its own data set.
"""
