{{
    config(
        unique_key=['movie_id', 'tag_id'],
        incremental_strategy='merge',
        on_schema_change='fail',
    )
}}

with

genome_scores as (

    select * from {{ ref('src_genome_scores') }}

    {% if is_incremental() %}
        -- Only what was loaded since the last run (see fct_ratings); a re-scored pair replaces
        -- its row (unique_key).
        where _loaded_at > (
            select
                coalesce(
                    max(loaded_so_far._loaded_at), cast('1900-01-01' as timestamp)
                ) as max_loaded_at
            from {{ this }} as loaded_so_far
        )
    {% endif %}

),

final as (

    select
        movie_id,
        tag_id,
        relevance as relevance_score,
        _loaded_at

    from genome_scores

)

select * from final
