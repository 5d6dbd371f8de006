"""movielens: the MovieLens ELT pipeline (S3 -> warehouse RAW -> dbt) as Dagster assets."""
