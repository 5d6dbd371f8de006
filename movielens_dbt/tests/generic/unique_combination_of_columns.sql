{#-
    Fails for every combination of the given columns that occurs more than once: the primary key
    test for models whose grain is a composite key. (dbt_utils has the same test; no packages here.)

    `changed_since` (a load-time column) scopes the test on the runs the S3 sensor starts
    (`tests_since()`): only combinations that occur among rows loaded since then are counted,
    each over the whole table, so a new row repeating an old key still fails. Rows older than
    that were tested by an earlier run and no merge has touched them. With the column in the
    key itself, duplicates share its value, and the new rows alone are grouped.
-#}
{% test unique_combination_of_columns(model, combination_of_columns, changed_since=none) %}

    {%- set columns_csv = combination_of_columns | join(', ') %}
    {%- set since = tests_since() if changed_since else '' %}

    {%- if not since %}

    select
        {{ columns_csv }},
        count(*) as occurrences

    from {{ model }}
    group by {{ columns_csv }}
    having count(*) > 1

    {%- elif changed_since in combination_of_columns %}

    select
        {{ columns_csv }},
        count(*) as occurrences

    from {{ model }}
    where {{ changed_since }} > cast('{{ since }}' as timestamp)
    group by {{ columns_csv }}
    having count(*) > 1

    {%- else %}

    select
        {{ columns_csv }},
        count(*) as occurrences

    from {{ model }}
    where ({{ columns_csv }}) in (
        select {{ columns_csv }}
        from {{ model }}
        where {{ changed_since }} > cast('{{ since }}' as timestamp)
    )
    group by {{ columns_csv }}
    having count(*) > 1

    {%- endif %}

{% endtest %}
