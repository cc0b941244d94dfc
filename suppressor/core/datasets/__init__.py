"""Data sets for replay and benchmarks.

`rees46` converts the real REES46 shop-traffic samples (CSV) into our JSONL events and
catalog; `synthetic` generates a large, seeded stream shaped like those samples.
"""
