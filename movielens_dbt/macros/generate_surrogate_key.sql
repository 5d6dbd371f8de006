{#-
    md5 over the fields cast to text, nulls replaced by a marker and fields joined by '-', so
    (null, 'a') and ('a', null) differ. md5, cast and || mean the same on DuckDB and Snowflake;
    dbt.type_string() is the adapter's text type. Same idea as dbt_utils, without the package.
-#}
{% macro generate_surrogate_key(field_list) -%}
    {%- set fields = [] -%}
    {%- for field in field_list -%}
        {%- do fields.append(
            "coalesce(cast(" ~ field ~ " as " ~ dbt.type_string() ~ "), '_null_')"
        ) -%}
    {%- endfor -%}
    md5({{ fields | join(" || '-' || ") }})
{%- endmacro %}
