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

latest as (

    -- One row per key among the new loads: the latest delivery wins. Deduplicating after the
    -- watermark filter keeps an incremental run proportional to the new files, not the table.
    select *
    from genome_scores
    {{ latest_row_per_key(['movie_id', 'tag_id']) }}

),

final as (

    select
        movie_id,
        tag_id,
        relevance as relevance_score,
        _loaded_at

    from latest

)

select * from final
