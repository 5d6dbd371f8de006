with

source as (

    select * from {{ source('raw', 'raw_ratings') }}

),

latest as (

    select *
    from source
    {{ latest_row_per_key(['userId', 'movieId']) }}

),

final as (

    select
        userId as user_id,
        movieId as movie_id,
        rating,
        {{ epoch_to_timestamp('timestamp') }} as rated_at,
        _loaded_at

    from latest

)

select * from final
