"""The Snowflake warehouse: RAW loaded with ``COPY INTO`` from a stage on the landing bucket.

One job per module:

- ``quoting.py``: values and names written into SQL text (literals, identifiers, object names);
- ``sql.py``: the statements a load runs (RAW tables, ``COPY INTO``, value-rule queries);
- ``setup_sql.py``: the account objects ``snowflake/setup.sql`` creates (tests only);
- ``copy_results.py``: a COPY's per-file results, matched to the S3 objects;
- ``errors.py``: Snowflake's errors explained as ``BadFileError``s;
- ``file_checks.py``: the empty-file and header checks before any COPY;
- ``loader.py``: the load algorithm (ledger, batches, transactions, rollback, rejections);
- ``resource.py``: ``SnowflakeWarehouse``, the Dagster resource built from settings.
"""
