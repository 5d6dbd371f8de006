{#
    Where a test scoped to changed rows starts: rows whose load time is after this timestamp are
    the ones no earlier run has tested. The dbt step sets MOVIELENS_DBT_TESTS_SINCE for the runs
    the S3 sensor starts (the load watermark of the incremental models before the run); empty on
    full builds, the daily run and runs started by hand: the tests then read whole tables.

    Read only when the test runs (`execute`), never while dbt parses: dbt records the env vars
    read during parsing and re-parses when they change, and this one changes every run.
#}
{% macro tests_since() %}
    {% if execute %}
        {% set since = env_var('MOVIELENS_DBT_TESTS_SINCE', '') %}
        {% if since and not modules.re.match('^[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9:.]+$', since) %}
            {{ exceptions.raise_compiler_error(
                "MOVIELENS_DBT_TESTS_SINCE must be a timestamp such as 2026-01-31 12:00:00, not '"
                ~ since ~ "': leave it unset to test whole tables"
            ) }}
        {% endif %}
        {{ return(since) }}
    {% endif %}
    {{ return('') }}
{% endmacro %}
