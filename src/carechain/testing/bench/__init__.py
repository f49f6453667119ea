"""``carechain bench``: floors of this machine and the node's workloads, in one run.

Modules: ``floors`` (verify, hash and SQLite floors), ``mix`` (the realistic transaction mix),
``ingest`` (in-process ingest, paced ingest, RSS sampling), ``http`` (the ingest over the
node's API), ``reads`` (audited FHIR reads), ``proofs`` (a 1M-leaf log), ``suite`` (the run,
sizes, ratios and targets). See docs/PERFORMANCE.md for the method and the latest figures.
"""

from carechain.testing.bench.floors import measure_floors
from carechain.testing.bench.suite import SIZES, WORKLOADS, BenchResult, evaluate, run_bench

__all__ = ["SIZES", "WORKLOADS", "BenchResult", "evaluate", "measure_floors", "run_bench"]
