with

movies_with_tags as (

    select * from {{ ref('dim_movies_with_tags') }}

),

final as (

    select
        movie_id,
        movie_title,
        genres,
        tag_id,
        tag_name,
        relevance_score

    from movies_with_tags

)

select * from final
