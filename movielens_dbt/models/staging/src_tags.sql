with

source as (

    select * from {{ source('raw', 'raw_tags') }}

),

latest as (

    select *
    from source
    {{ latest_row_per_key(['userId', 'movieId', 'tag']) }}

),

final as (

    select
        {{ generate_surrogate_key(['userId', 'movieId', 'tag']) }} as tag_key,
        userId as user_id,
        movieId as movie_id,
        tag,
        {{ epoch_to_timestamp('timestamp') }} as tagged_at,
        _loaded_at

    from latest

)

select * from final
