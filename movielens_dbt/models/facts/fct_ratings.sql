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

    {% if is_incremental() %}
        -- Only what was loaded since the last run, by load time, not by rated_at: a late or
        -- corrected file carries old rated_at values. A re-rating replaces the row (unique_key).
        where _loaded_at > (
            select
                coalesce(
                    max(loaded_so_far._loaded_at), cast('1900-01-01' as timestamp)
                ) as max_loaded_at
            from {{ this }} as loaded_so_far
        )
    {% endif %}

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
