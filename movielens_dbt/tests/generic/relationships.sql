{#-
    dbt's relationships test (every non-null value of the column is a `field` of `to`), with the
    scope of the primary-key tests: given `changed_since` (a load-time column), the S3 sensor's
    runs (`tests_since()`) check only the rows loaded since then. The rows loaded before were
    checked by an earlier run, and both sides keep them valid: an incremental run replaces a
    re-rated pair's row with one of the same key and a new load time, and the dimensions only
    gain keys (built from RAW, which loads append only). Runs that are not the sensor's read whole tables.
-#}
{% test relationships(model, column_name, to, field, changed_since=none) %}

    {%- set since = tests_since() if changed_since else '' %}

    with child as (

        select {{ column_name }} as from_field
        from {{ model }}
        where {{ column_name }} is not null
        {%- if since %}
            and {{ changed_since }} > cast('{{ since }}' as timestamp)
        {%- endif %}

    ),

    parent as (

        select {{ field }} as to_field
        from {{ to }}

    )

    select from_field
    from child
    left join parent
        on child.from_field = parent.to_field
    where parent.to_field is null

{% endtest %}
