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

    -- New loads only, by load watermark (see the macro); a re-scored pair replaces its row.
    {{ loaded_since_last_run() }}

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
