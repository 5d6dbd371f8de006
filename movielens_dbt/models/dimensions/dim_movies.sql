with

movies as (

    select * from {{ ref('src_movies') }}

),

final as (

    select
        movie_id,
        trim(title) as movie_title,
        genres,
        {{ genre_array('genres') }} as genre_array,
        {{ release_year_from_title('title') }} as release_year

    from movies

)

select * from final
