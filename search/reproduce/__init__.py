"""The third seed's experiments (arXiv 2004.14584), one command each.

- :mod:`prunetune.search.reproduce.criteria`: the same profiles pruned with several channel criteria
  (claim a: random selection inside a layer is as good as a metric).
- :mod:`prunetune.search.reproduce.transfer`: sampled profiles evaluated on two data sets (claim c: the
  top profiles of one data set rank near the top on another; claim b: some profiles beat
  uniform ones).

Each writes a Markdown report, its numbers as JSON and PNG plots into its results folder and
attaches them to the run's MLflow parent run.
"""

from prunetune.search.reproduce.criteria import CriteriaSettings, run_criteria
from prunetune.search.reproduce.transfer import TransferSettings, run_transfer

__all__ = ["CriteriaSettings", "TransferSettings", "run_criteria", "run_transfer"]
