with

movies as (

    select * from {{ ref('dim_movies') }}

),

ratings as (

    select * from {{ ref('fct_ratings') }}

),

ratings_per_movie as (

    select
        movie_id,
        avg(rating) as average_rating,
        count(*) as total_ratings,
        min(rated_at) as first_rated_at,
        max(rated_at) as last_rated_at

    from ratings
    group by movie_id

),

final as (

    select
        movies.movie_id,
        movies.movie_title,
        movies.genres,
        movies.release_year,
        ratings_per_movie.average_rating,
        ratings_per_movie.first_rated_at,
        ratings_per_movie.last_rated_at,
        coalesce(ratings_per_movie.total_ratings, 0) as total_ratings

    from movies
    left join ratings_per_movie
        on movies.movie_id = ratings_per_movie.movie_id

)

select * from final
