"""`python -m cluster status`: one look at a running cluster and what is wrong with it, in words.

Two halves, so the judgement can be tested without a cluster: `gather` (I/O: Patroni's REST API, HAProxy's stats
CSV, the coordinator's Citus metadata) fills a `Facts`; `diagnose` (pure) turns facts into findings.
"""

from cluster.status.diagnose import Facts, Finding, diagnose

__all__ = ["Facts", "Finding", "diagnose"]
