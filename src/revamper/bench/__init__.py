"""The benchmark behind ``revamper bench``: built-in data, scenarios, harness and report.

- :mod:`~revamper.bench.builtin`: the built-in ImageNet-like JPEG data set;
- :mod:`~revamper.bench.folder`: checks and a bytes reader for a user's ``--data`` folder;
- :mod:`~revamper.bench.scenarios`: standard, simplified, echoing, refurbishing, unbalanced;
- :mod:`~revamper.bench.harness`: interleaved runs with a simulated accelerator step;
- :mod:`~revamper.bench.summary` and :mod:`~revamper.bench.report`: medians, ratios, the
  analytic bound, the table, the JSON-lines file and the figure.
"""
