"""The launcher layer: one module per KFP component, each with one ``run(...)`` entry point.

A component body under ``components/<name>/`` imports ``docloop.steps.<name>`` and calls ``run``
with its parameters and artifact paths; ``run`` reads the configuration, resolves champions,
calls the stages and returns what the component writes into its outputs. Nothing but the
components and the CLI imports this package (``make lint`` checks it).
"""
