"""One module per stage: read inputs from the store, call refinery, write outputs.

`tasks.stages` declares the pipeline (the one list of stages); `tasks.entry.stage_task(name)`
is a stage's Prefect entry point. This package file imports nothing, so that each stage's code
dependencies are exactly the modules its own module imports.
"""
