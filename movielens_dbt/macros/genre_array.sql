{#-
    MovieLens genres are pipe-separated ("Adventure|Comedy"); a movie without genres says
    "(no genres listed)". Returns an array of genre names, empty for that marker or null
    (DuckDB VARCHAR[], Snowflake ARRAY).
-#}
{% macro genre_array(genres, no_genres_marker='(no genres listed)') -%}
    {{ return(adapter.dispatch('genre_array', 'movielens_dbt')(genres, no_genres_marker)) }}
{%- endmacro %}

{% macro default__genre_array(genres, no_genres_marker) -%}
    case
        when {{ genres }} is null or {{ genres }} = '{{ no_genres_marker }}'
            then cast(array[] as text [])
        else string_to_array({{ genres }}, '|')
    end
{%- endmacro %}

{% macro duckdb__genre_array(genres, no_genres_marker) -%}
    case
        when {{ genres }} is null or {{ genres }} = '{{ no_genres_marker }}'
            then cast([] as varchar [])
        else string_split({{ genres }}, '|')
    end
{%- endmacro %}

{% macro snowflake__genre_array(genres, no_genres_marker) -%}
    case
        when {{ genres }} is null or {{ genres }} = '{{ no_genres_marker }}'
            then array_construct()
        else split({{ genres }}, '|')
    end
{%- endmacro %}
