{{
    config(
        unique_key=['user_id', 'movie_id'],
        incremental_strategy='merge',
        on_schema_change='fail',
    )
}}

with

ratings as (

    select * from {{ ref('src_ratings') }}

    -- New loads only, by load watermark (see the macro); a re-rating replaces its row.
    {{ loaded_since_last_run() }}

),

final as (

    select
        user_id,
        movie_id,
        rating,
        rated_at,
        _loaded_at

    from ratings

)

select * from final
