"""The command lines of ``python -m verification``, one module per command.

``report`` (the main job and ``merge``), ``audit`` (a gradient function of your own),
``audit_vjp`` (a backward pass against the VJP of a forward). The dispatcher is
``verification.__main__`` (its ``COMMANDS`` table); the twin's command line is
``verification.mainjob.twin.main``.
"""
