"""Real parts in one process: loopback S3, DuckDB files, dbt, fakesnow (the Snowflake emulator)."""
