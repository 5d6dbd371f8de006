with

ratings as (

    select * from {{ ref('src_ratings') }}

),

tags as (

    select * from {{ ref('src_tags') }}

),

users_seen as (

    select user_id from ratings

    union

    select user_id from tags

),

final as (

    select user_id
    from users_seen

)

select * from final
