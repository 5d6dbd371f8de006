"""What the code location loads, one folder per stage in the order data flows.

``landing`` (S3) -> ``raw`` (warehouse RAW) -> ``dbt`` (models, seed, snapshot, tests) ->
``automation`` (the sensor, jobs and schedules that run them).
"""
