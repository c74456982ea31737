"""The benchmark behind ``revamper bench``: scenarios, harness and report.

Its data (the built-in JPEG set, a user's ``--data`` folder) is in :mod:`revamper.datasets`.

- :mod:`~revamper.bench.scenarios`: the loader variants of :mod:`revamper.baselines.variants`
  (standard, simplified, echoing, refurbishing, unbalanced) and the peers;
- :mod:`~revamper.bench.peers`: FFCV and DALI, when installed;
- :mod:`~revamper.bench.harness`: interleaved runs with a simulated accelerator step;
- :mod:`~revamper.bench.summary` and :mod:`~revamper.bench.report`: medians, ratios, the
  analytic bound, the table, the JSON-lines file and the figure.
"""
