with

source as (

    select * from {{ source('raw', 'raw_genome_scores') }}

),

final as (

    select
        movieId as movie_id,
        tagId as tag_id,
        relevance,
        _loaded_at,
        _source_file

    from source

)

select * from final
