with

source as (

    select * from {{ source('raw', 'raw_links') }}

),

latest as (

    select *
    from source
    {{ latest_row_per_key(['movieId']) }}

),

final as (

    select
        movieId as movie_id,
        imdbId as imdb_id,
        tmdbId as tmdb_id

    from latest

)

select * from final
