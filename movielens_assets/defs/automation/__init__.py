"""Stage 4, ``automation``: the S3 landing sensor, the jobs and the schedules."""
