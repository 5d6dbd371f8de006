{#-
    Unix seconds to a UTC timestamp without time zone (DuckDB TIMESTAMP, Snowflake TIMESTAMP_NTZ).
    DuckDB's to_timestamp() returns TIMESTAMPTZ, so its body builds the value from microseconds.
-#}
{% macro epoch_to_timestamp(epoch_seconds) -%}
    {{ return(adapter.dispatch('epoch_to_timestamp', 'movielens_dbt')(epoch_seconds)) }}
{%- endmacro %}

{% macro default__epoch_to_timestamp(epoch_seconds) -%}
    cast('1970-01-01 00:00:00' as timestamp) + {{ epoch_seconds }} * interval '1 second'
{%- endmacro %}

{% macro duckdb__epoch_to_timestamp(epoch_seconds) -%}
    make_timestamp(cast({{ epoch_seconds }} as bigint) * 1000000)
{%- endmacro %}

{% macro snowflake__epoch_to_timestamp(epoch_seconds) -%}
    {#- scale 0: always seconds, never Snowflake's guess from the magnitude -#}
    to_timestamp_ntz({{ epoch_seconds }}, 0)
{%- endmacro %}
