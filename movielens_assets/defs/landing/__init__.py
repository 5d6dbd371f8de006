"""Stage 1, ``landing``: the MovieLens CSV files in the S3 landing bucket, one asset per dataset."""
