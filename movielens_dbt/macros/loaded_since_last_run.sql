{#
    The incremental filter of the fact tables: only rows loaded into RAW after the newest load
    already merged, by load time (`_loaded_at`), never by event time. A late or corrected file
    carries old `rated_at` values and would be lost by `rated_at > max(rated_at)`.
    Renders nothing on a first or full-refresh build.
#}
{% macro loaded_since_last_run() %}
    {% if is_incremental() %}
        where _loaded_at > (
            select
                coalesce(
                    max(loaded_so_far._loaded_at), cast('1900-01-01' as timestamp)
                ) as max_loaded_at
            from {{ this }} as loaded_so_far
        )
    {% endif %}
{% endmacro %}
