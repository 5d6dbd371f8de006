{#-
    dbt's accepted_values test (every value of the column is one of `values`), scoped like the
    primary-key tests: given `changed_since` (a load-time column), the S3 sensor's runs
    (`tests_since()`) read only the rows loaded since then. A row that an incremental run
    replaces gets a new load time, so every value no earlier run read is read.
-#}
{% test accepted_values(model, column_name, values, quote=true, changed_since=none) %}

    {%- set since = tests_since() if changed_since else '' %}

    with all_values as (

        select
            {{ column_name }} as value_field,
            count(*) as n_records

        from {{ model }}
        {%- if since %}
        where {{ changed_since }} > cast('{{ since }}' as timestamp)
        {%- endif %}
        group by {{ column_name }}

    )

    select *
    from all_values
    where value_field not in (
        {%- for value in values %}
        {%- if quote %}'{{ value }}'{% else %}{{ value }}{% endif %}{{ ", " if not loop.last }}
        {%- endfor %}
    )

{% endtest %}
