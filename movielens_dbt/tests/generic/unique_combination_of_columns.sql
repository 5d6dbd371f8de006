{#-
    Fails for every combination of the given columns that occurs more than once: the primary key
    test for models whose grain is a composite key. (dbt_utils has the same test; no packages here.)

    `changed_since` (a load-time column) scopes the test on the runs the S3 sensor starts
    (`tests_since()`): only combinations that occur among rows loaded since then are counted,
    each over the whole table, so a new row repeating an old key still fails. Rows older than
    that were tested by an earlier run and no merge has touched them. With the column in the
    key itself, duplicates share its value, and the new rows alone are grouped.

    `narrow_by` (some of the columns) groups by those first and groups by all of them only the
    rows whose narrow combination repeats: the same failing rows, since a repeat of the whole
    combination repeats every part of it. Name the cheap columns (integers, timestamps) when the
    others are long strings: on DuckDB a string longer than 12 bytes (an S3 key) is not inlined,
    and grouping 20M of them took 1.5 s more than grouping without them.
-#}
{% test unique_combination_of_columns(model, combination_of_columns, changed_since=none, narrow_by=none) %}

    {%- set columns_csv = combination_of_columns | join(', ') %}
    {%- set since = tests_since() if changed_since else '' %}
    {%- set recent = changed_since ~ " > cast('" ~ since ~ "' as timestamp)" %}

    {%- if not since %}
        {%- set scope = none %}
    {%- elif changed_since in combination_of_columns %}
        {%- set scope = recent %}
    {%- else %}
        {%- set scope = "(" ~ columns_csv ~ ") in (select " ~ columns_csv ~ " from " ~ model
            ~ " where " ~ recent ~ ")" %}
    {%- endif %}

    {%- set conditions = [scope] if scope else [] %}
    {%- if narrow_by %}
    {%- set narrow_csv = narrow_by | join(', ') %}
    {%- do conditions.insert(0, "(" ~ narrow_csv ~ ") in (select " ~ narrow_csv ~ " from repeated)") %}

    with repeated as (

        select {{ narrow_csv }}
        from {{ model }}
        {%- if scope %}
        where {{ scope }}
        {%- endif %}
        group by {{ narrow_csv }}
        having count(*) > 1

    )
    {%- endif %}

    select
        {{ columns_csv }},
        count(*) as occurrences

    from {{ model }}
    {%- if conditions %}
    where {{ conditions | join('\n        and ') }}
    {%- endif %}
    group by {{ columns_csv }}
    having count(*) > 1

{% endtest %}
