with

genome_tags as (

    select * from {{ ref('src_genome_tags') }}

),

final as (

    select
        tag_id,
        tag as tag_name

    from genome_tags

)

select * from final
