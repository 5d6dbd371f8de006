"""The SELECT writing each of the six GroupLens files, over the catalogues' tables.

Ratings keep each (userId, movieId) pair unique without a dedupe: user ``u`` rates ``n`` movies,
the ``k``-th of which is drawn, by jittered stratified sampling, from the ``k``-th of ``n`` equal
slices of a Zipf-like popularity distribution over ``m - n + 1`` ranks. The draws are therefore
non-decreasing in ``k``, and adding ``k`` turns them into strictly increasing ranks in ``[0, m)``
(the classic bijection between multisets of size ``n`` and sets of size ``n``).
"""

from __future__ import annotations

import math

from movielens_assets.tools.generate.plan import Plan
from movielens_assets.tools.generate.shape import FIRST_TAGGED_AT, LAST_RATED_AT, RATING_WEIGHTS
from movielens_assets.tools.generate.vocabulary import USER_TAG_VOCABULARY


def dataset_queries(sizes: Plan) -> dict[str, str]:
    """The SELECT producing each GroupLens file, by dataset name, in the order they are written."""
    return {
        "movies": _MOVIES_QUERY,
        "ratings": _ratings_query(sizes),
        "tags": _tags_query(sizes),
        "links": _LINKS_QUERY,
        "genome_tags": GENOME_TAGS_QUERY,
        "genome_scores": _genome_scores_query(sizes),
    }


_MOVIES_QUERY = """
    select movie_id as "movieId", title, genres from movies order by movie_id
"""

_LINKS_QUERY = """
    select movie_id as "movieId", imdb_id as "imdbId", tmdb_id as "tmdbId"
    from movies order by movie_id
"""

GENOME_TAGS_QUERY = """
    select tag_id as "tagId", tag from genome_tags order by tag_id
"""


def _ratings_query(sizes: Plan) -> str:
    """SELECT for ``ratings.csv``: each user's distinct, popularity-skewed movies, user by user."""
    movies = sizes.movies
    return f"""
    with picks as (
        select user_id, n_ratings, first_rated_at, rating_span, unnest(range(n_ratings)) as k
        from users
    ),
    ranked as (
        select
            user_id,
            k,
            first_rated_at,
            rating_span,
            -- k-th of n slices of the popularity distribution over m - n + 1 ranks, plus k:
            -- strictly increasing in k, so a user never rates a movie twice.
            k + least(
                {movies} - n_ratings,
                floor(({movies} - n_ratings + 1)
                    * popular((k + uniform2('pick', user_id, k)) / n_ratings))::bigint
            ) as popularity_rank
        from picks
    )
    select
        user_id as "userId",
        movie_id as "movieId",
        star_rating(uniform_mix(
            {RATING_WEIGHTS[0]} * uniform('quality', movie_id)
            + {RATING_WEIGHTS[1]} * uniform('leniency', user_id)
            + {RATING_WEIGHTS[2]} * uniform2('rating', user_id, movie_id)
        )) as rating,
        first_rated_at + floor(rating_span * uniform2('rated_at', user_id, k))::bigint
            as "timestamp"
    from ranked
    inner join movies using (popularity_rank)
    order by user_id, movie_id
    """


def _theme_width(genome_tags: int) -> int:
    """How many consecutive genome tags make up a movie's theme (3 for small genomes)."""
    return max(3, genome_tags // 120)


def _theme(movie_id: str, genome_tags: int) -> str:
    """SQL for a movie's theme: the genome position of the first of its defining tags."""
    return f"floor({genome_tags} * skewed(uniform('theme', {movie_id}), 1.2, 0.01))::bigint"


def _tags_query(sizes: Plan) -> str:
    """SELECT for ``tags.csv``: few prolific taggers, popular movies, Zipf-like tag words.

    Almost half the tags name one of the movie's theme tags, which the genome scores highly.
    Candidates are drawn with 50% to spare; a user tags a movie with a word at most once
    (ignoring case), and the first ``sizes.tags`` surviving candidates are kept.
    """
    users, genome_tags = sizes.users, sizes.genome_tags
    span = LAST_RATED_AT - FIRST_TAGGED_AT
    # The busiest tagger writes about 4% of the tags, as in ml-20m.
    tagger_offset = min(0.5, 24 / users)
    return f"""
    with drawn as (
        select
            i,
            (floor({users} * skewed(uniform('tagger', i), 2.0, {tagger_offset!r}))::bigint
                * {_coprime_step(users)} + seed_hash('tagger_shift') % {users}) % {users} + 1
                as user_id,
            least({sizes.movies - 1}, floor({sizes.movies} * popular(uniform('tagged', i))))
                ::bigint as popularity_rank,
            uniform('themed', i) < 0.45 as is_themed
        from range({sizes.tags * 3 // 2 + 100}) as candidates (i)
    ),
    worded as (
        select
            drawn.*,
            movie_id,
            case when is_themed
                then ({_theme("movie_id", genome_tags)}
                    + floor({_theme_width(genome_tags)} * uniform('theme_tag', i))::bigint)
                    % {genome_tags}
                else floor({USER_TAG_VOCABULARY} * skewed(uniform('tag_word', i), 1.3, 0.003))
                    ::bigint
            end as word_position
        from drawn
        inner join movies using (popularity_rank)
    ),
    spelled as (
        select
            i,
            user_id,
            movie_id,
            coalesce(genome_words.tag, user_tag_words.tag) as word
        from worded
        left join genome_words
            on is_themed and genome_words.position = worded.word_position
        left join user_tag_words
            on not is_themed and user_tag_words.position = worded.word_position
    ),
    distinct_tags as (
        select
            i,
            user_id,
            movie_id,
            case when uniform('capitalized', i) < 0.25
                then upper(word[1]) || word[2:] else word end as tag
        from spelled
        qualify row_number() over (partition by user_id, movie_id, lower(word) order by i) = 1
    ),
    kept as (
        select * from distinct_tags qualify row_number() over (order by i) <= {sizes.tags}
    )
    select
        user_id as "userId",
        movie_id as "movieId",
        tag,
        {FIRST_TAGGED_AT} + floor({span} * uniform('tagged_at', i))::bigint as "timestamp"
    from kept
    order by user_id, movie_id, tag, "timestamp"
    """


def _coprime_step(modulus: int) -> int:
    """A multiplier coprime with ``modulus``, for a permutation of ``[0, modulus)``."""
    step = max(1, round(modulus * 0.618)) % modulus or 1
    while math.gcd(step, modulus) != 1:
        step += 1
    return step


def _genome_scores_query(sizes: Plan) -> str:
    """SELECT for ``genome-scores.csv``: every genome movie x every genome tag, by movie and tag.

    Relevance is mostly small; a movie's theme tags score near 1 and a few percent of other
    tags moderately, as in ml-20m's genome.
    """
    genome_tags = sizes.genome_tags
    relevance = relevance_sql(
        "is_theme",
        "uniform2('relevance', movie_id, tag_id)",
        "uniform2('related', movie_id, tag_id)",
    )
    return f"""
    with pairs as (
        select
            i,
            genome_movies.movie_id,
            genome_tags.tag_id,
            (genome_tags.position - {_theme("genome_movies.movie_id", genome_tags)}
                + {genome_tags}) % {genome_tags} < {_theme_width(genome_tags)} as is_theme
        from range({sizes.genome_movies * genome_tags}) as pairs (i)
        inner join genome_movies on genome_movies.ordinal = i // {genome_tags}
        inner join genome_tags on genome_tags.tag_id = i % {genome_tags} + 1
    )
    select
        movie_id as "movieId",
        tag_id as "tagId",
        {relevance} as relevance
    from pairs
    order by movie_id, tag_id
    """


def relevance_sql(is_applied: str, draw: str, related: str) -> str:
    """SQL for a genome relevance in (0, 1], rounded to 5 decimals: near 1 where applied."""
    return f"""round(case
        when {is_applied} then 0.7 + 0.3 * sqrt({draw})
        when {related} < 0.04 then 0.3 + 0.6 * {draw}
        else 0.00025 + 0.5 * pow({draw}, 3)
    end, 5)"""
