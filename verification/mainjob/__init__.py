"""The main job: every formula of ``manual_bp`` checked against JAX.

``checks`` (the check registry: one ``Check`` per formula, ``run_check``, ``format_table``),
``_jobs`` (the checks split into tasks, shards and parallel workers), ``_results`` (a run as
JSON and the merge of sharded runs), ``twin`` (a training run repeated with ``jax.grad``).
Its command lines are ``verification.cli.report`` and ``verification.mainjob.twin.main``.
"""
