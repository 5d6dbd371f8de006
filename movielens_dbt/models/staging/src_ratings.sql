with

source as (

    select * from {{ source('raw', 'raw_ratings') }}

),

final as (

    select
        userId as user_id,
        movieId as movie_id,
        rating,
        {{ epoch_to_timestamp('timestamp') }} as rated_at,
        _loaded_at,
        _source_file

    from source

)

select * from final
