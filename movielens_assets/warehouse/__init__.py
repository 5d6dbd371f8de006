"""One warehouse interface, two sides: DuckDB (embedded default) and Snowflake."""
