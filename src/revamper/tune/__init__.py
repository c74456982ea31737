"""Choose the split point and reuse factor from measurements, with the trade-off visible.

The paper leaves both to the user. :func:`recommend` measures the pipeline on the data set and
returns a :class:`Recommendation`: the transforms to give the loader, the reuse factor, and the
table of every (split, r) with its predicted samples/s, cache size and diversity, and why each
lost. :func:`tuned_loader` (spelled ``RevamperLoader.from_pipeline`` on the loader) builds a
loader from it; ``revamper tune`` (old name ``revamper plan``) prints it.

Modules, one concept each:

- :mod:`~revamper.tune.steps`: the pipeline as steps, or a clear error for an opaque callable;
- :mod:`~revamper.tune.profile`: CPU cost per step, cached entry size and store costs per split;
- :mod:`~revamper.tune.diversity`: the paper's diversity formula and the distinct-output count;
- :mod:`~revamper.tune.overhead`: the loader machinery's cost per sample, calibrated;
- :mod:`~revamper.tune.machine`: usable cores, and how busy other processes kept them;
- :mod:`~revamper.tune.predict`: throughput, cache bytes and diversity of every configuration;
- :mod:`~revamper.tune.verify`: a short real run that corrects the cached configurations' costs;
- :mod:`~revamper.tune.choice`: the choice and the reasons;
- :mod:`~revamper.tune.recommend`: the whole procedure;
- :mod:`~revamper.tune.recommendation`: what was measured and the :class:`Recommendation`;
- :mod:`~revamper.tune.tuned_loader`: the loader built from the choice (``from_pipeline``);
- :mod:`~revamper.tune.report` and :mod:`~revamper.tune.command`: ``revamper tune``.
"""

from revamper.tune.choice import Verdict, choose
from revamper.tune.diversity import (
    DiversityProfile,
    SplitDiversity,
    count_distinct,
    estimate_outcomes,
    fingerprint,
    measure_diversity,
    paper_diversity,
)
from revamper.tune.machine import BusyMeter, usable_cores
from revamper.tune.overhead import Overhead, calibrate_overhead
from revamper.tune.predict import Candidate, Parallelism, epoch_seconds, predict
from revamper.tune.profile import (
    Cost,
    PipelineProfile,
    ProfileError,
    SplitProfile,
    StepProfile,
    profile_pipeline,
)
from revamper.tune.recommend import recommend, recommend_from
from revamper.tune.recommendation import Measurements, Recommendation
from revamper.tune.steps import UnsplittableError, as_pipeline
from revamper.tune.tuned_loader import tuned_loader
from revamper.tune.verify import CheckRun, measure_refurbishing

__all__ = [
    "BusyMeter",
    "Candidate",
    "CheckRun",
    "Cost",
    "DiversityProfile",
    "Measurements",
    "Overhead",
    "Parallelism",
    "PipelineProfile",
    "ProfileError",
    "Recommendation",
    "SplitDiversity",
    "SplitProfile",
    "StepProfile",
    "UnsplittableError",
    "Verdict",
    "as_pipeline",
    "calibrate_overhead",
    "choose",
    "count_distinct",
    "epoch_seconds",
    "estimate_outcomes",
    "fingerprint",
    "measure_diversity",
    "measure_refurbishing",
    "paper_diversity",
    "predict",
    "profile_pipeline",
    "recommend",
    "recommend_from",
    "tuned_loader",
    "usable_cores",
]
