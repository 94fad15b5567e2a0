"""Benchmarks of manual-bp (issue 5): ``python -m benchmarks [--quick] [--out DIR]``.

Sections: 1. one SGD step against jax.jit and torch (:mod:`benchmarks.sgd_step`); 2. the cost of
the full gradient against finite differences and forward mode as the network grows
(:mod:`benchmarks.gradient_cost`); 3. verification throughput against the data-generation rate
(:mod:`benchmarks.verification_speed`). Nothing here is a test: each section prints a table and
writes JSON and PNG figures.
"""
