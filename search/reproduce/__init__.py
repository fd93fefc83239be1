"""The out-of-the-box profiles paper's experiments (Venkatesan et al., "Out-of-the-box channel
pruned networks", arXiv:2004.14584), one command each.

- :mod:`prunetune.search.reproduce.criteria`: does the channel-selection criterion matter once the
  profile is fixed? The same profiles pruned with several criteria (the paper's claim: random
  selection inside a layer is as good as a metric).
- :mod:`prunetune.search.reproduce.transfer`: do good profiles on one data set stay good on another?
  Sampled profiles evaluated on two data sets (the paper's claims: the top profiles of one data
  set rank near the top on another, and some profiles beat uniform ones).

Each writes a Markdown report, its numbers as JSON and PNG plots into its results folder and
attaches them to the run's MLflow parent run.
"""

from prunetune.search.reproduce.criteria import CriteriaSettings, run_criteria
from prunetune.search.reproduce.transfer import TransferSettings, run_transfer

__all__ = ["CriteriaSettings", "TransferSettings", "run_criteria", "run_transfer"]
