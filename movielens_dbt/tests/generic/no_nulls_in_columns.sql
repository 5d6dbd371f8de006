{#-
    Fails for every row with a null in any column of the model (the columns are read from the
    warehouse when the test runs), apart from those named in `exclude`.
-#}
{% test no_nulls_in_columns(model, exclude=[]) %}

    {%- set excluded = exclude | map('lower') | list -%}
    {%- set checked = [] -%}
    {%- for column in adapter.get_columns_in_relation(model) -%}
        {%- if column.name | lower not in excluded -%}
            {%- do checked.append(column.quoted) -%}
        {%- endif -%}
    {%- endfor %}

    select *
    from {{ model }}
    where
        {%- for column in checked %}
        {{ column }} is null or
        {%- endfor %}
        false

{% endtest %}
