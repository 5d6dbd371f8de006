-- SCD2: a tag has at most one current version (dbt_valid_to is null) in snap_tags.
-- Returns every tag_key with more than one.
with

tag_history as (

    select * from {{ ref('snap_tags') }}

),

final as (

    select
        tag_key,
        count(*) as current_versions

    from tag_history
    where dbt_valid_to is null
    group by tag_key
    having count(*) > 1

)

select * from final
