-- Movies with more than `movie_analysis_min_ratings` ratings (default 100), best average first.
-- Compile with `dbt compile --select movie_analysis`; the SQL is in target/compiled/.
with

ratings as (

    select * from {{ ref('fct_ratings') }}

),

movies as (

    select * from {{ ref('dim_movies') }}

),

ratings_summary as (

    select
        movie_id,
        avg(rating) as average_rating,
        count(*) as total_ratings

    from ratings
    group by movie_id
    having count(*) > {{ var('movie_analysis_min_ratings', 100) }}

),

final as (

    select
        movies.movie_title,
        ratings_summary.average_rating,
        ratings_summary.total_ratings

    from ratings_summary
    inner join movies
        on ratings_summary.movie_id = movies.movie_id

)

select * from final
order by average_rating desc
