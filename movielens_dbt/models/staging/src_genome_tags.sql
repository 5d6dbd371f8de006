with

source as (

    select * from {{ source('raw', 'raw_genome_tags') }}

),

latest as (

    select *
    from source
    {{ latest_row_per_key(['tagId']) }}

),

final as (

    select
        tagId as tag_id,
        tag

    from latest

)

select * from final
