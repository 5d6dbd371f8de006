{#-
    MovieLens titles end with the release year in parentheses: "Toy Story (1995)". Returns that
    year as an integer, or null where the title has none ("Black Mirror", "(2006–2007)").
    The pattern avoids backslashes so it reads the same in every dialect's string literals.
-#}
{% macro release_year_from_title(title) -%}
    {{ return(adapter.dispatch('release_year_from_title', 'movielens_dbt')(title)) }}
{%- endmacro %}

{% macro default__release_year_from_title(title) -%}
    cast(substring(trim({{ title }}) from '[(]([0-9]{4})[)]$') as integer)
{%- endmacro %}

{% macro duckdb__release_year_from_title(title) -%}
    {#- regexp_extract returns '' (not null) when nothing matches -#}
    cast(nullif(regexp_extract(trim({{ title }}), '[(]([0-9]{4})[)]$', 1), '') as integer)
{%- endmacro %}

{% macro snowflake__release_year_from_title(title) -%}
    {#- 'e' extracts the first sub-match; null when nothing matches -#}
    cast(regexp_substr(trim({{ title }}), '[(]([0-9]{4})[)]$', 1, 1, 'e', 1) as integer)
{%- endmacro %}
