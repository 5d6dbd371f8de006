{#-
    RAW tables are append-only history: a corrected file re-delivers rows. This renders the
    `qualify` clause that keeps, per key, the row from the latest load (ties broken by the S3 key,
    whose names sort by delivery). Needs `_loaded_at` and `_source_file` from RAW.
    QUALIFY works on DuckDB and Snowflake.
-#}
{% macro latest_row_per_key(key_columns) -%}
    qualify row_number() over (
        partition by {{ key_columns | join(', ') }}
        order by _loaded_at desc, _source_file desc
    ) = 1
{%- endmacro %}
