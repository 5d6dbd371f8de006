{#-
    Models and seeds go to the target schema (`dev`); a custom schema (the snapshot's `snapshots`)
    is used verbatim instead of dbt's default `<target schema>_<custom schema>`, so the schemas are
    exactly `raw`, `dev` and `snapshots` on every target.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
