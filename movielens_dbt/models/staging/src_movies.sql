with

source as (

    select * from {{ source('raw', 'raw_movies') }}

),

latest as (

    select *
    from source
    {{ latest_row_per_key(['movieId']) }}

),

final as (

    select
        movieId as movie_id,
        title,
        genres

    from latest

)

select * from final
