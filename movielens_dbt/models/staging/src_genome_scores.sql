with

source as (

    select * from {{ source('raw', 'raw_genome_scores') }}

),

latest as (

    select *
    from source
    {{ latest_row_per_key(['movieId', 'tagId']) }}

),

final as (

    select
        movieId as movie_id,
        tagId as tag_id,
        relevance,
        _loaded_at

    from latest

)

select * from final
