with

movies as (

    select * from {{ ref('dim_movies') }}

),

release_dates as (

    select * from {{ ref('seed_movie_release_dates') }}

),

final as (

    select
        movies.movie_id,
        movies.movie_title,
        movies.release_year,
        release_dates.release_date,
        release_dates.release_date is not null as has_known_release_date

    from movies
    left join release_dates
        on movies.movie_id = release_dates.movie_id

)

select * from final
