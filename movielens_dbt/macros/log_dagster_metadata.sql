{#
    A post-hook of every model, seed and snapshot: logs the relation's row count and columns as
    one line, `movielens-metadata {"row_count": ..., "columns": [...]}`. The dbt step turns it
    into the `dagster/row_count` and `dagster/column_schema` of the node's materialization, which
    reaches Dagster as soon as dbt finishes the node: the queries run in dbt's own process and
    connection, so nothing else has to open the warehouse (a DuckDB file) while dbt writes it.
    Views are skipped: counting one would run its whole query.
#}
{% macro log_dagster_metadata() %}
    {% if execute and config.get('materialized') not in ('view', 'ephemeral') %}
        {% set counted = run_query('select count(*) as row_count from ' ~ this) %}
        {% set columns = [] %}
        {% for column in adapter.get_columns_in_relation(this) %}
            {% do columns.append({'name': column.name | lower, 'type': column.data_type | lower}) %}
        {% endfor %}
        {% set payload = {'row_count': counted.columns[0].values()[0] | int, 'columns': columns} %}
        {% do log('movielens-metadata ' ~ tojson(payload), info=true) %}
    {% endif %}
{% endmacro %}
