{#
    Snowflake's QUERY_TAG of each node's queries: JSON naming the app, the Dagster run and the
    dbt node, e.g. {"app":"movielens","dagster_run_id":"...","dbt_node":"model.movielens_dbt.fct_ratings","tool":"dbt"}.

    Overrides dbt-snowflake's `set_query_tag` / `unset_query_tag`, which every materialization
    (models, seeds, snapshots, tests) calls around its queries. The run's part comes from
    DBT_QUERY_TAG, read here, when the node runs. The profile and the project read nothing that
    changes per run, so dbt keeps its partial parse from one run to the next (dbt records the
    env vars read while parsing; these macros only run at execution time). After the node the
    session goes back to the run's tag, so the connection's later queries still name the run.
#}
{% macro run_query_tag() %}
    {% set tag = {'app': 'movielens', 'tool': 'dbt'} %}
    {% set given = fromjson(env_var('DBT_QUERY_TAG', '') or '{}', {}) %}
    {% if given is mapping %}
        {% do tag.update(given) %}
    {% endif %}
    {{ return(tag) }}
{% endmacro %}

{% macro alter_session_query_tag(tag) %}
    {% set text = tojson(tag, sort_keys=true) | replace("'", "''") %}
    {% do run_query("alter session set query_tag = '" ~ text ~ "'") %}
{% endmacro %}

{% macro snowflake__set_query_tag() %}
    {% set tag = run_query_tag() %}
    {% do tag.update({'dbt_node': model.unique_id}) %}
    {% do alter_session_query_tag(tag) %}
    {{ return(none) }}
{% endmacro %}

{% macro snowflake__unset_query_tag(original_query_tag) %}
    {% do alter_session_query_tag(run_query_tag()) %}
{% endmacro %}
