"""Assets by pipeline stage: landing (S3), raw (warehouse), dbt."""
