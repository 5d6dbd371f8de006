"""The tables every dataset draws from: movies (with their links), users, genome and tag words.

Movies get ml-20m-like ids, titles built from ``vocabulary.TITLE_WORDS`` in the shapes of
``_TITLE_PATTERNS``, genres, links and a popularity rank; users get how many ratings each makes
(summing to exactly the plan's ratings) and when.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from movielens_assets.tools.generate.errors import GenerationError
from movielens_assets.tools.generate.plan import Plan
from movielens_assets.tools.generate.shape import (
    FIRST_RATED_AT,
    GENRE_SHARES,
    IMDB_MAX,
    LAST_RATED_AT,
    MISSING_TMDB_SHARE,
    NO_GENRES,
    NO_GENRES_SHARE,
    TMDB_MAX,
    UNDATED_TITLE_SHARE,
    USER_ACTIVITY_EXPONENT,
)
from movielens_assets.tools.generate.vocabulary import (
    TITLE_WORDS,
    USER_TAG_VOCABULARY,
    genome_vocabulary,
    user_tag_vocabulary,
)


def create_catalogues(
    con: duckdb.DuckDBPyConnection, sizes: Plan, movie_ids: Sequence[int] = ()
) -> None:
    """Create the small tables every dataset draws from: movies, genome tags, tag words."""
    for kind, words in TITLE_WORDS.items():
        con.execute(f"set variable {kind} = $1", [list(words)])
    con.execute("create table genre_shares (genre varchar, share double)")
    con.executemany("insert into genre_shares values (?, ?)", list(GENRE_SHARES.items()))
    con.execute(_movies_sql(sizes.movies))
    _include_movie_ids(con, movie_ids)
    vocabulary = genome_vocabulary(max(sizes.genome_tags, USER_TAG_VOCABULARY))
    create_words(con, "genome_words", vocabulary[: sizes.genome_tags])
    create_words(con, "user_tag_words", user_tag_vocabulary(vocabulary))
    con.execute(
        """create table genome_tags as
        select row_number() over (order by tag) as tag_id, position, tag from genome_words"""
    )
    con.execute(
        f"""create table genome_movies as
        select row_number() over (order by movie_id) - 1 as ordinal, movie_id
        from movies where popularity_rank < {sizes.genome_movies}"""
    )


def _include_movie_ids(con: duckdb.DuckDBPyConnection, movie_ids: Sequence[int]) -> None:
    """Give each missing id of ``movie_ids`` to the generated movie nearest to it.

    Ids stay unique; every dataset reads its movie ids from ``movies`` afterwards.
    """
    existing = [row[0] for row in con.execute("select movie_id from movies").fetchall()]
    required = set(movie_ids)
    replaceable = sorted(set(existing) - required)
    renames: list[tuple[int, int]] = []
    for wanted in sorted(required - set(existing)):
        if not replaceable:
            break
        nearest = min(replaceable, key=lambda movie_id: (abs(movie_id - wanted), movie_id))
        replaceable.remove(nearest)
        renames.append((nearest, wanted))
    if renames:
        con.execute("create temporary table renames (old_id bigint, new_id bigint)")
        con.executemany("insert into renames values (?, ?)", renames)
        con.execute(
            """update movies set movie_id = renames.new_id
            from renames where movies.movie_id = renames.old_id"""
        )


def create_words(con: duckdb.DuckDBPyConnection, table: str, words: tuple[str, ...]) -> None:
    """A table ``(position, tag)`` of ``words`` in order, position from 0."""
    con.execute(
        f"""create table {table} as
        select generate_subscripts($1, 1) - 1 as position, unnest($1) as tag""",
        [list(words)],
    )


def _movies_sql(count: int) -> str:
    """SQL creating ``movies``: ids with ml-20m-like gaps, titles, genres, links, popularity."""
    title_cases = []
    cumulative = 0.0
    for share, template in _TITLE_PATTERNS:
        cumulative += share
        title_cases.append(f"when uniform('pattern', i) < {cumulative!r} then {template}")
    return f"""
    create table movies as
    with numbered as (
        select
            i,
            -- ml-20m ids run 1..131262 for 27,278 movies: dense at first, sparser later.
            1 + floor(25.5 * (i / {count}) * pow(uniform('id_gap', i), 2))::bigint as id_gap,
            2015 - floor(124 * pow(uniform('year', i), 2.3))::integer as release_year
        from range({count}) as numbered (i)
    ),
    genre_lists as (
        select numbered.i, string_agg(genre, '|' order by genre) as genres
        from numbered
        inner join genre_shares on uniform2('genre', numbered.i, genre) < share
        group by numbered.i
    ),
    described as (
        select
            numbered.i,
            sum(id_gap) over (order by numbered.i) as movie_id,
            (case {" ".join(title_cases)} else word('nouns', uniform('noun', i)) || ' '
                || word('places', uniform('place', i)) end)
            || case when uniform('undated', i) < {UNDATED_TITLE_SHARE}
                then '' else ' (' || release_year::varchar || ')' end as title,
            case
                when uniform('no_genres', i) < {NO_GENRES_SHARE} then '{NO_GENRES}'
                else coalesce(genre_lists.genres, word('fallback_genres', uniform('genre', i)))
            end as genres,
            -- Older (lower id) movies are somewhat more popular, as in ml-20m.
            row_number() over (order by uniform('popularity', i) * (0.3 + i / {count}), i) - 1
                as popularity_rank,
            row_number() over (order by uniform('imdb_order', i), i) - 1 as imdb_order,
            row_number() over (order by uniform('tmdb_order', i), i) - 1 as tmdb_order
        from numbered
        left join genre_lists using (i)
    )
    select
        movie_id,
        title,
        genres,
        popularity_rank,
        lpad({_spread_id("imdb_order", count, IMDB_MAX, "imdb")}::varchar, 7, '0') as imdb_id,
        case when uniform('tmdb_missing', i) >= {MISSING_TMDB_SHARE}
            then {_spread_id("tmdb_order", count, TMDB_MAX, "tmdb")} end as tmdb_id
    from described
    """


def _spread_id(column: str, count: int, largest: int, salt: str) -> str:
    """SQL for distinct ids in ``[1, largest]``: slot ``column`` of ``count`` equal slots, jittered.

    ``column`` must be a permutation of ``[0, count)``; each value gets its own slot, so ids never
    collide, and a random offset inside the slot hides the spacing.
    """
    width = f"({largest} // {count})"
    return f"({column} * {width} + floor(uniform('{salt}', {column}) * {width})::bigint + 1)"


def create_users(con: duckdb.DuckDBPyConnection, sizes: Plan) -> None:
    """Create ``users``: how many ratings each makes (summing to exactly ``sizes.ratings``), when.

    Each user rates the minimum plus a share of the remaining ratings proportional to a
    long-tailed (Lomax) weight, capped so that nobody exceeds ``sizes.max_ratings_per_user``.
    Integer weights and cumulative sums make the split exact and deterministic.
    """
    con.execute(
        f"""create table user_weights as
        select
            i + 1 as user_id,
            1 + round(1000 * (pow(1 - uniform('activity', i), -1 / {USER_ACTIVITY_EXPONENT}) - 1))
                ::bigint as raw_weight
        from range({sizes.users}) as users (i)"""
    )
    extra = sizes.ratings - sizes.users * sizes.min_ratings_per_user
    cap = _weight_cap(con, extra, sizes.max_ratings_per_user - sizes.min_ratings_per_user - 1)
    span = LAST_RATED_AT - FIRST_RATED_AT
    con.execute(
        f"""create table users as
        with weighted as (
            select
                user_id,
                least(raw_weight, {cap}) as weight,
                sum(least(raw_weight, {cap})) over (order by user_id) as cumulative_weight,
                sum(least(raw_weight, {cap})) over () as total_weight
            from user_weights
        ),
        counted as (
            select
                user_id,
                {sizes.min_ratings_per_user}
                    + ({extra}::hugeint * cumulative_weight // total_weight
                    - {extra}::hugeint * (cumulative_weight - weight) // total_weight)::bigint
                    as n_ratings,
                {FIRST_RATED_AT} + floor({span} * uniform('joined', user_id))::bigint
                    as first_rated_at
            from weighted
        )
        select
            user_id,
            n_ratings,
            first_rated_at,
            -- Half the users rate in one sitting; the others over days to years.
            least(
                {LAST_RATED_AT} - first_rated_at,
                case when uniform('binge', user_id) < 0.5 then 600 + 40 * n_ratings
                else floor(86400 * pow(2000, uniform('span', user_id)))::bigint end
            ) as rating_span
        from counted"""
    )


def _weight_cap(con: duckdb.DuckDBPyConnection, extra: int, most_extra: int) -> int:
    """The largest weight cap under which no user gets more than ``most_extra`` extra ratings.

    A user with weight ``w`` gets at most ``extra * w / total + 1`` extra ratings, where
    ``total`` is the sum of capped weights; that bound grows with the cap, so bisect on it.
    """

    def fits(cap: int) -> bool:
        row = con.execute(
            f"""select {extra}::hugeint * {cap} <= {most_extra}::hugeint * sum(least(raw_weight,
            {cap})) from user_weights"""
        ).fetchone()
        return bool(row and row[0])

    largest = con.execute("select max(raw_weight) from user_weights").fetchone()
    assert largest is not None  # an aggregate without GROUP BY returns one row
    low, high = 1, int(largest[0])
    if not fits(low):
        raise GenerationError(
            f"{extra:,} ratings beyond the minimum cannot be spread without giving a user more "
            f"than {most_extra:,}; ask for fewer ratings or more movies"
        )
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


def _word(kind: str, salt: str | None = None) -> str:
    """SQL picking a word of ``kind`` (a DuckDB variable) for movie ``i``, salted by ``salt``."""
    return f"word('{kind}', uniform('{salt or kind}', i))"


_TITLE_PATTERNS: tuple[tuple[float, str], ...] = (
    (0.27, f"{_word('adjectives')} || ' ' || {_word('nouns')}"),
    (0.13, f"{_word('nouns')} || ' of the ' || {_word('nouns', 'noun2')}"),
    # GroupLens moves a leading article to the end: "American President, The".
    (0.09, f"{_word('adjectives')} || ' ' || {_word('nouns')} || ', ' || {_word('articles')}"),
    (0.08, f"{_word('names')} || '''s ' || {_word('nouns')}"),
    (0.08, _word("nouns")),
    (
        0.07,
        f"""{_word("adjectives")} || ' ' || {_word("nouns")} || ' '
        || (2 + floor(3 * uniform('sequel', i)))::integer::varchar""",
    ),
    (0.07, f"{_word('places')} || ': ' || {_word('adjectives')} || ' ' || {_word('nouns')}"),
    (
        0.03,
        f"""{_word("nouns")} || ', ' || {_word("nouns", "noun2")} || ' and '
        || {_word("nouns", "noun3")}""",
    ),
    (
        0.04,
        f"""{_word("foreign_articles")} || ' ' || {_word("foreign_titles")} || ' ('
        || {_word("adjectives")} || ' ' || {_word("nouns")} || ')'""",
    ),
    (0.03, f"{_word('names')} || ' & ' || {_word('names', 'name2')}"),
    (0.025, f"{_word('foreign_titles')} || ', ' || {_word('foreign_articles')}"),
    (
        0.02,
        f"""'"' || {_word("adjectives")} || ' ' || {_word("nouns")} || '" '
        || {_word("nouns", "noun2")}""",
    ),
)
"""Title shapes and their shares; the rest of the titles are ``<noun> <place>``."""
