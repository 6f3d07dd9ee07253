"""Benchmarks: the successors of the seed's benchmark.sh, worker-benchmark.sh and ha-benchmark.sh."""
