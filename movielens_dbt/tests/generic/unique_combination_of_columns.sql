{#-
    Fails for every combination of the given columns that occurs more than once: the primary key
    test for models whose grain is a composite key. (dbt_utils has the same test; no packages here.)
-#}
{% test unique_combination_of_columns(model, combination_of_columns) %}

    {%- set columns_csv = combination_of_columns | join(', ') %}

    select
        {{ columns_csv }},
        count(*) as occurrences

    from {{ model }}
    group by {{ columns_csv }}
    having count(*) > 1

{% endtest %}
