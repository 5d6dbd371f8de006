"""The embedded warehouse: one DuckDB file, RAW loaded from S3 objects streamed to disk.

One job per module:

- ``sql.py``: the statements a load runs (RAW tables, the strict ``read_csv``, value rules);
- ``errors.py``: DuckDB's errors explained as ``BadFileError``s;
- ``file_checks.py``: the empty-file, gzip and header checks on a downloaded file;
- ``loader.py``: the load algorithm (ledger, one transaction per file, rejections);
- ``resource.py``: ``DuckDBWarehouse``, the Dagster resource built from settings.
"""
