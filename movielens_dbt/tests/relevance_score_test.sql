-- Genome relevance is a share: every fct_genome_scores row needs a relevance_score in [0, 1].
-- Returns the rows that break it (null, negative or above 1).
with

genome_scores as (

    select * from {{ ref('fct_genome_scores') }}

),

final as (

    select
        movie_id,
        tag_id,
        relevance_score

    from genome_scores
    where
        relevance_score is null
        or relevance_score < 0
        or relevance_score > 1

)

select * from final
