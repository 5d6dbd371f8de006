with

movies as (

    select * from {{ ref('dim_movies') }}

),

genome_scores as (

    select * from {{ ref('fct_genome_scores') }}

),

genome_tags as (

    select * from {{ ref('dim_genome_tags') }}

),

final as (

    select
        movies.movie_id,
        movies.movie_title,
        movies.genres,
        genome_tags.tag_id,
        genome_tags.tag_name,
        genome_scores.relevance_score

    from movies
    inner join genome_scores
        on movies.movie_id = genome_scores.movie_id
    inner join genome_tags
        on genome_scores.tag_id = genome_tags.tag_id

)

select * from final
