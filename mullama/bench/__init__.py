"""`mullama bench`: seeded benchmark workloads, their client, reports and plots (docs/bench.md).

workload.py (the TOML format) → trace.py (the seeded requests) → client.py (sending, measuring) →
run.py (configurations × phases, outputs) → report.py / plots.py / memory.py; servers.py starts or
reaches the servers; baselines.py builds llama.cpp's own tools. The supervisor never imports it.
"""
