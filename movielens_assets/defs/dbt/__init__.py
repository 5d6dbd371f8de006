"""Stage 3, ``dbt``: the dbt project ``movielens_dbt`` as assets, every dbt test an asset check."""
