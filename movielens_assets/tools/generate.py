"""Synthetic MovieLens data: an ml-20m-shaped set of any size, and a tag genome for a real sample.

``generate`` writes the six GroupLens files (``movies.csv``, ``ratings.csv``, ``tags.csv``,
``links.csv``, ``genome-tags.csv``, ``genome-scores.csv``) with GroupLens's headers, quoting and
number formats. At the default size it matches ml-20m row for row: 20,000,263 ratings by 138,493
users of 27,278 movies, 465,564 tags and a genome of 1,128 tags x 10,381 movies.

Everything is computed by DuckDB SQL from ``range(n)``: every random choice is
``hash(key, seed, salt)`` mapped to [0, 1), so a run is deterministic for its seed, streams, and
spills to a temporary directory instead of growing past ``MEMORY_LIMIT``.

Ratings keep each (userId, movieId) pair unique without a dedupe: user ``u`` rates ``n`` movies,
the ``k``-th of which is drawn, by jittered stratified sampling, from the ``k``-th of ``n`` equal
slices of a Zipf-like popularity distribution over ``m - n + 1`` ranks. The draws are therefore
non-decreasing in ``k``, and adding ``k`` turns them into strictly increasing ranks in ``[0, m)``
(the classic bijection between multisets of size ``n`` and sets of size ``n``). Popular movies
stay popular, light users rate blockbusters, heavy users reach into the long tail.

``synthesize_sample_genome`` adds the two genome files ml-latest-small lacks, naming the genome
after the sample's own user tags.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path

import duckdb

from movielens_assets.datasets import DATASETS
from movielens_assets.lib.progress import DEFAULT_INTERVAL_SECONDS, logged_progress

ML_20M_RATINGS = 20_000_263
"""Ratings in ml-20m; ``generate`` at this size reproduces every ml-20m row count."""

MIN_RATINGS = 1_000
"""The smallest ``ratings`` that still gives every dataset a few rows."""

MEMORY_LIMIT = "2GB"
"""DuckDB's memory limit while generating; beyond it DuckDB spills to a temporary directory."""

ML_20M_SIZES = {
    "users": 138_493,
    "movies": 27_278,
    "tags": 465_564,
    "genome_tags": 1_128,
    "genome_movies": 10_381,
    "max_ratings_per_user": 9_254,
}
"""Sizes of ml-20m other than its ratings."""

MIN_RATINGS_PER_USER = 20
"""ml-20m's users each rated at least 20 movies."""

FIRST_RATED_AT = 789_652_009
"""The first ml-20m rating (1995-01-09), in unix seconds."""

LAST_RATED_AT = 1_427_784_002
"""The last ml-20m rating (2015-03-31), in unix seconds."""

FIRST_TAGGED_AT = 1_135_429_210
"""The first ml-20m tag (2005-12-24), in unix seconds."""

RATING_COUNTS = {
    "0.5": 239_125,
    "1.0": 680_732,
    "1.5": 279_252,
    "2.0": 1_430_997,
    "2.5": 883_398,
    "3.0": 4_291_193,
    "3.5": 2_200_156,
    "4.0": 5_561_926,
    "4.5": 1_534_824,
    "5.0": 2_898_660,
}
"""How many ml-20m ratings have each star value; generated ratings follow the same shares."""

GENRE_SHARES = {
    "Action": 0.129,
    "Adventure": 0.085,
    "Animation": 0.038,
    "Children": 0.042,
    "Comedy": 0.307,
    "Crime": 0.108,
    "Documentary": 0.091,
    "Drama": 0.489,
    "Fantasy": 0.052,
    "Film-Noir": 0.012,
    "Horror": 0.096,
    "IMAX": 0.007,
    "Musical": 0.038,
    "Mystery": 0.056,
    "Romance": 0.151,
    "Sci-Fi": 0.064,
    "Thriller": 0.153,
    "War": 0.044,
    "Western": 0.025,
}
"""The 19 MovieLens genres and the share of ml-20m movies that carry each."""

NO_GENRES = "(no genres listed)"
NO_GENRES_SHARE = 0.02
UNDATED_TITLE_SHARE = 0.006
MISSING_TMDB_SHARE = 0.012

IMDB_MAX = 4_000_000
"""IMDb ids are drawn from 1..IMDB_MAX, written with 7 digits (leading zeros) as GroupLens does."""

TMDB_MAX = 450_000
"""TMDb ids are drawn from 1..TMDB_MAX."""

RATING_WEIGHTS = (0.35, 0.2, 0.45)
"""How a rating mixes movie quality, user leniency and noise (weights of uniform variables)."""

POPULARITY_SKEW = (2.0, 0.01)
"""Exponent and offset of the Zipf-like density (x + offset) ** -exponent over popularity ranks."""

USER_ACTIVITY_EXPONENT = 1.8
"""Tail exponent of the Lomax (shifted Pareto) law of a user's ratings beyond the minimum."""


class GenerationError(ValueError):
    """A synthetic data set cannot be generated with the arguments given."""


@dataclass(frozen=True)
class Plan:
    """How many rows of each kind ``generate`` writes for a number of ratings.

    Ratings, users and tags scale linearly with ``ratings``. The two catalogues, movies and genome
    tags, scale with its square root, so that their products (how densely users cover movies, and
    genome scores = genome movies x genome tags) scale linearly too and a small set stays
    feasible: a user cannot rate more distinct movies than exist.
    """

    ratings: int
    users: int
    movies: int
    tags: int
    genome_tags: int
    genome_movies: int
    min_ratings_per_user: int
    max_ratings_per_user: int

    @property
    def rows(self) -> dict[str, int]:
        """Rows per dataset name, as ``generate`` returns them."""
        return {
            "movies": self.movies,
            "ratings": self.ratings,
            "tags": self.tags,
            "links": self.movies,
            "genome_tags": self.genome_tags,
            "genome_scores": self.genome_movies * self.genome_tags,
        }


def plan(ratings: int) -> Plan:
    """The sizes of a synthetic set with ``ratings`` ratings (ml-20m's sizes at its 20,000,263)."""
    if ratings < MIN_RATINGS:
        raise GenerationError(
            f"cannot generate {ratings:,} ratings: at least {MIN_RATINGS:,} are needed so that "
            f"every user rates a movie; pass ratings >= {MIN_RATINGS:,}"
        )
    linear = ratings / ML_20M_RATINGS
    root = math.sqrt(linear)
    users = max(10, round(ML_20M_SIZES["users"] * linear))
    movies = max(50, round(ML_20M_SIZES["movies"] * root))
    typical_max = round(ML_20M_SIZES["max_ratings_per_user"] * movies / ML_20M_SIZES["movies"])
    return Plan(
        ratings=ratings,
        users=users,
        movies=movies,
        tags=max(10, round(ML_20M_SIZES["tags"] * linear)),
        genome_tags=max(20, round(ML_20M_SIZES["genome_tags"] * root)),
        genome_movies=min(movies, max(10, round(ML_20M_SIZES["genome_movies"] * root))),
        min_ratings_per_user=min(MIN_RATINGS_PER_USER, ratings // users),
        max_ratings_per_user=min(movies, max(typical_max, 2 * math.ceil(ratings / users) + 2)),
    )


def generate(
    out_dir: Path,
    ratings: int = ML_20M_RATINGS,
    seed: int = 42,
    progress: Callable[[str], None] | None = None,
    movie_ids: Sequence[int] = (),
    progress_interval: float = DEFAULT_INTERVAL_SECONDS,
) -> dict[str, int]:
    """Write an ml-20m-shaped MovieLens set with ``ratings`` ratings into ``out_dir``.

    Returns the rows written per dataset name (``movies``, ``ratings``, ``tags``, ``links``,
    ``genome_tags``, ``genome_scores``). The files are byte-identical for the same ``ratings``,
    ``seed`` and ``movie_ids``; ``progress`` is called once per file written. ``movie_ids`` are
    real MovieLens ids that must exist (reference data such as the dbt seed is keyed by them).
    While a file is written, ``progress`` also gets its percentage every ``progress_interval``
    seconds (and 10 percent).
    """
    sizes = plan(ratings)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = progress or (lambda message: None)
    with tempfile.TemporaryDirectory(prefix=".generate-", dir=out_dir) as spill_dir:
        con = _connect(Path(spill_dir), seed)
        try:
            _create_catalogues(con, sizes, movie_ids)
            _create_users(con, sizes)
            written = {}
            for name, query in _dataset_queries(sizes).items():
                path = out_dir / DATASETS[name].grouplens_file
                with logged_progress(
                    con.query_progress, path.name, None, report, interval=progress_interval
                ):
                    written[name] = _copy_to_csv(con, query, path)
                if written[name] != sizes.rows[name]:
                    raise GenerationError(
                        f"{path} got {written[name]:,} rows instead of {sizes.rows[name]:,}; "
                        f"this is a bug in {__name__}, try another seed meanwhile"
                    )
                report(f"wrote {path.name}: {written[name]:,} rows")
        finally:
            con.close()
    return written


def synthesize_sample_genome(
    sample_dir: Path, out_dir: Path, seed: int = 42, min_ratings: int = 50
) -> dict[str, int]:
    """Write ``genome-tags.csv`` and ``genome-scores.csv`` for the real sample in ``sample_dir``.

    The 1,128 genome tags are the sample's distinct user tags, lowercased, most frequent first
    (topped up with synthetic names if it has fewer). Every movie with at least ``min_ratings``
    ratings gets a relevance for every genome tag, high where users applied that tag to the movie
    or the tag names one of its genres. Returns rows written per dataset name.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".genome-", dir=out_dir) as spill_dir:
        con = _connect(Path(spill_dir), seed)
        try:
            _load_sample(con, sample_dir)
            _create_sample_genome_tags(con, ML_20M_SIZES["genome_tags"])
            queries = {
                "genome_tags": _GENOME_TAGS_QUERY,
                "genome_scores": _sample_genome_scores_query(min_ratings),
            }
            return {
                name: _copy_to_csv(con, query, out_dir / DATASETS[name].grouplens_file)
                for name, query in queries.items()
            }
        finally:
            con.close()


def genome_vocabulary(count: int) -> tuple[str, ...]:
    """``count`` distinct lowercase tag names, most typical first, for naming genome tags."""
    names = dict.fromkeys(_vocabulary_candidates())
    vocabulary = tuple(islice(names, count))
    if len(vocabulary) < count:
        raise GenerationError(f"only {len(vocabulary):,} tag names exist, {count:,} asked for")
    return vocabulary


# DuckDB plumbing -------------------------------------------------------------------------------


def _connect(spill_dir: Path, seed: int) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that spills to ``spill_dir``, with the seeded random macros."""
    con = duckdb.connect(config={"memory_limit": MEMORY_LIMIT, "temp_directory": str(spill_dir)})
    # Progress is read with query_progress() (generate's progress callback), not printed by DuckDB.
    con.execute("set enable_progress_bar = true")
    con.execute("set enable_progress_bar_print = false")
    for macro in _random_macros(int(seed)):
        con.execute(macro)
    return con


def _random_macros(seed: int) -> tuple[str, ...]:
    """SQL macros for deterministic randomness: every draw hashes its key, the seed and a salt."""
    exponent, offset = POPULARITY_SKEW
    return (
        # DuckDB combines the hashes of several arguments weakly, so hash the result again
        # (a full 64-bit mix); keep 53 random bits and scale them to [0, 1), never exactly 1.
        f"""create macro uniform(salt, k) as
            (hash(hash(k, {seed}, salt)) >> 11) / 9007199254740992.0""",
        f"""create macro uniform2(salt, k1, k2) as
            (hash(hash(k1, k2, {seed}, salt)) >> 11) / 9007199254740992.0""",
        # Inverse CDF of the density (x + eps) ** -alpha on [0, 1): maps a uniform p to a
        # fraction of a ranked list, small fractions (the head) far more often than large ones.
        """create macro skewed(p, alpha, eps) as greatest(0.0, pow(
            pow(eps, 1 - alpha) - p * (pow(eps, 1 - alpha) - pow(1 + eps, 1 - alpha)),
            1 / (1 - alpha)) - eps)""",
        f"create macro seed_hash(salt) as hash(hash(salt, {seed}))",
        f"create macro popular(p) as skewed(p, {exponent}, {offset})",
        """create macro word(kind, p) as
            getvariable(kind)[1 + floor(p * len(getvariable(kind)))::bigint]""",
        f"create macro star_rating(x) as {_star_rating_case('x')}",
        f"create macro uniform_mix(w) as {_uniform_sum_cdf('w', RATING_WEIGHTS)}",
    )


def _copy_to_csv(con: duckdb.DuckDBPyConnection, query: str, path: Path) -> int:
    """Write ``query`` to ``path`` as a GroupLens CSV (header, LF, minimal quoting); its rows."""
    target = str(path).replace("'", "''")
    copied = con.execute(f"copy ({query}) to '{target}' (header, delimiter ',')").fetchone()
    return int(copied[0]) if copied else 0


def _star_rating_case(x: str) -> str:
    """SQL turning a uniform ``x`` into a star rating with ml-20m's share of each star value."""
    total = sum(RATING_COUNTS.values())
    cumulative, branches = 0, []
    for stars, count in list(RATING_COUNTS.items())[:-1]:
        cumulative += count
        branches.append(f"when {x} < {cumulative / total!r} then {stars}")
    last = list(RATING_COUNTS)[-1]
    return f"(case {' '.join(branches)} else {last} end)::decimal(2, 1)"


def _uniform_sum_cdf(w: str, weights: tuple[float, float, float]) -> str:
    """SQL for the CDF of ``a*U1 + b*U2 + c*U3`` (independent uniforms) evaluated at ``w``.

    Feeding a weighted sum of uniforms through its own CDF gives back a uniform, so correlated
    ratings (good movies, lenient users) keep exactly the target share of each star value.
    """
    a, b, c = weights
    corners = (
        (0.0, 1),
        (a, -1),
        (b, -1),
        (c, -1),
        (a + b, 1),
        (a + c, 1),
        (b + c, 1),
        (a + b + c, -1),
    )
    terms = " ".join(
        f"{'+' if sign > 0 else '-'} pow(greatest({w} - {corner!r}, 0), 3)"
        for corner, sign in corners
    )
    return f"(({terms}) / {6 * a * b * c!r})"


# Catalogues: movies, links, users, tag words ----------------------------------------------------


def _create_catalogues(
    con: duckdb.DuckDBPyConnection, sizes: Plan, movie_ids: Sequence[int] = ()
) -> None:
    """Create the small tables every dataset draws from: movies, genome tags, tag words."""
    for kind, words in _TITLE_WORDS.items():
        con.execute(f"set variable {kind} = $1", [list(words)])
    con.execute("create table genre_shares (genre varchar, share double)")
    con.executemany("insert into genre_shares values (?, ?)", list(GENRE_SHARES.items()))
    con.execute(_movies_sql(sizes.movies))
    _include_movie_ids(con, movie_ids)
    vocabulary = genome_vocabulary(max(sizes.genome_tags, _USER_TAG_VOCABULARY))
    _create_words(con, "genome_words", vocabulary[: sizes.genome_tags])
    _create_words(con, "user_tag_words", _user_tag_vocabulary(vocabulary))
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


def _create_words(con: duckdb.DuckDBPyConnection, table: str, words: tuple[str, ...]) -> None:
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


def _create_users(con: duckdb.DuckDBPyConnection, sizes: Plan) -> None:
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

    low, high = 1, int(con.execute("select max(raw_weight) from user_weights").fetchone()[0])
    if not fits(low):
        raise GenerationError(
            f"{extra:,} ratings beyond the minimum cannot be spread without giving a user more "
            f"than {most_extra:,}; ask for fewer ratings or more movies"
        )
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


# The six datasets -------------------------------------------------------------------------------


def _dataset_queries(sizes: Plan) -> dict[str, str]:
    """The SELECT producing each GroupLens file, by dataset name, in the order they are written."""
    return {
        "movies": _MOVIES_QUERY,
        "ratings": _ratings_query(sizes),
        "tags": _tags_query(sizes),
        "links": _LINKS_QUERY,
        "genome_tags": _GENOME_TAGS_QUERY,
        "genome_scores": _genome_scores_query(sizes),
    }


_MOVIES_QUERY = """
    select movie_id as "movieId", title, genres from movies order by movie_id
"""

_LINKS_QUERY = """
    select movie_id as "movieId", imdb_id as "imdbId", tmdb_id as "tmdbId"
    from movies order by movie_id
"""

_GENOME_TAGS_QUERY = """
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
                else floor({_USER_TAG_VOCABULARY} * skewed(uniform('tag_word', i), 1.3, 0.003))
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
    relevance = _relevance_sql(
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


def _relevance_sql(is_applied: str, draw: str, related: str) -> str:
    """SQL for a genome relevance in (0, 1], rounded to 5 decimals: near 1 where applied."""
    return f"""round(case
        when {is_applied} then 0.7 + 0.3 * sqrt({draw})
        when {related} < 0.04 then 0.3 + 0.6 * {draw}
        else 0.00025 + 0.5 * pow({draw}, 3)
    end, 5)"""


# The sample's genome ----------------------------------------------------------------------------


def _load_sample(con: duckdb.DuckDBPyConnection, sample_dir: Path) -> None:
    """Load the sample's movies, ratings and tags as typed tables."""
    columns = {
        "movies": "{'movieId': 'integer', 'title': 'varchar', 'genres': 'varchar'}",
        "ratings": "{'userId': 'integer', 'movieId': 'integer', 'rating': 'double', "
        "'timestamp': 'bigint'}",
        "tags": "{'userId': 'integer', 'movieId': 'integer', 'tag': 'varchar', "
        "'timestamp': 'bigint'}",
    }
    for name, types in columns.items():
        path = str(sample_dir / DATASETS[name].grouplens_file).replace("'", "''")
        con.execute(
            f"""create table sample_{name} as select * from read_csv('{path}', header = true,
            columns = {types}, quote = '"', escape = '"')"""
        )


def _create_sample_genome_tags(con: duckdb.DuckDBPyConnection, count: int) -> None:
    """Create ``genome_tags`` from the sample's lowercased user tags, most frequent first."""
    frequent = [
        name
        for (name,) in con.execute(
            f"""select lower(trim(tag)) as name from sample_tags
            where trim(tag) <> '' group by name order by count(*) desc, name limit {count}"""
        ).fetchall()
    ]
    taken = set(frequent)
    top_up = (name for name in genome_vocabulary(2 * count + len(taken)) if name not in taken)
    names = frequent + list(islice(top_up, count - len(frequent)))
    _create_words(con, "genome_words", tuple(names))
    con.execute("create table genome_tags as select position + 1 as tag_id, tag from genome_words")


def _sample_genome_scores_query(min_ratings: int) -> str:
    """SELECT for the sample's ``genome-scores.csv``: often-rated movies x all genome tags."""
    background = _relevance_sql(
        "false", "uniform2('relevance', movie_id, tag_id)", "uniform2('related', movie_id, tag_id)"
    )
    return f"""
    with rated as (
        select "movieId" as movie_id from sample_ratings
        group by movie_id having count(*) >= {min_ratings}
    ),
    applied as (
        select "movieId" as movie_id, lower(trim(tag)) as tag, count(*) as applications
        from sample_tags group by all
    ),
    genre_tags as (
        select "movieId" as movie_id, lower(unnest(string_split(genres, '|'))) as tag
        from sample_movies
    ),
    evidence as (
        select
            rated.movie_id,
            genome_tags.tag_id,
            coalesce(applied.applications, 0)
                + (genre_tags.tag is not null)::integer as evidence
        from rated
        cross join genome_tags
        left join applied
            on applied.movie_id = rated.movie_id and applied.tag = genome_tags.tag
        left join genre_tags
            on genre_tags.movie_id = rated.movie_id and genre_tags.tag = genome_tags.tag
    )
    select
        movie_id as "movieId",
        tag_id as "tagId",
        -- Each user applying the tag (or a matching genre) takes 70% of the remaining doubt.
        round(1 - (1 - {background}) * pow(0.3, evidence), 5) as relevance
    from evidence
    order by movie_id, tag_id
    """


# Words ------------------------------------------------------------------------------------------


def _word(kind: str, salt: str | None = None) -> str:
    """SQL picking a word of ``kind`` (a DuckDB variable) for movie ``i``, salted by ``salt``."""
    return f"word('{kind}', uniform('{salt or kind}', i))"


# fmt: off
_TITLE_WORDS: dict[str, tuple[str, ...]] = {
    "adjectives": (
        "Last", "Silent", "Dark", "Lost", "Broken", "Golden", "Hidden", "Wild", "Secret", "Final",
        "Little", "Big", "Red", "Black", "White", "Blue", "Crimson", "Empty", "Endless", "Eternal",
        "Forgotten", "Frozen", "Burning", "Dead", "Dangerous", "Crazy", "Perfect", "Sweet",
        "Bitter", "Cold", "Hot", "Long", "Lonely", "Midnight", "Naked", "Quiet", "Savage",
        "Shattered", "Strange", "Sudden", "True", "Twisted", "Wicked", "Young", "Old", "New",
        "Great", "Beautiful", "Deadly", "Innocent", "Invisible", "Magnificent", "Mad", "Lucky",
        "Killer", "Brave", "Fast", "Hard", "Second", "American", "French", "Italian",
    ),
    "nouns": (
        "Night", "River", "Heart", "Road", "City", "Dream", "Game", "House", "Island", "King",
        "Queen", "Love", "Man", "Woman", "Girl", "Boy", "Story", "War", "World", "Sky", "Storm",
        "Shadow", "Fire", "Ice", "Blood", "Money", "Justice", "Escape", "Mission", "Hunter",
        "Stranger", "Soldier", "Detective", "Witness", "Secret", "Promise", "Summer", "Winter",
        "Paradise", "Kingdom", "Empire", "Legacy", "Revenge", "Affair", "Angel", "Devil", "Ghost",
        "Moon", "Sun", "Star", "Planet", "Machine", "Dragon", "Wolf", "Tiger", "Horse", "Bird",
        "Train", "Ship", "Bridge", "Garden", "Forest", "Desert", "Ocean", "Mountain", "Valley",
        "Street", "Hotel", "Party", "Wedding", "Funeral", "Family", "Brothers", "Sisters",
        "Friends", "Lovers", "Strangers", "Heist", "Job", "Deal", "Contract", "Secret Agent",
        "Memory", "Time", "Day", "Hour", "Minute", "Life", "Death", "Truth", "Lie", "Lies",
        "Voyage", "Journey", "Return", "Rebellion", "Revolution", "Storyteller", "Samurai",
    ),
    "names": (
        "Johnny", "Annie", "Max", "Charlie", "Billy", "Lucy", "Harry", "Sally", "Jack", "Jill",
        "Frankie", "Bonnie", "Clyde", "Rocky", "Stella", "Otto", "Amélie", "José", "Zoë", "Ingrid",
        "Marcel", "Nikita", "Leon", "Ruby", "Hank", "Dolores", "Ed", "Vera", "Toni", "Ferris",
        "Dorothy", "Gus",
    ),
    "places": (
        "Paris", "Tokyo", "Rome", "Berlin", "Chicago", "Brooklyn", "Texas", "Alaska", "Hong Kong",
        "Casablanca", "Vienna", "Moscow", "Havana", "Sahara", "Manhattan", "Las Vegas",
        "New Orleans", "Bombay", "Rio", "Istanbul", "Montréal", "Zürich", "São Paulo", "Kraków",
    ),
    "foreign_titles": (
        "Misérables", "Amants du Pont-Neuf", "Vie en rose", "Chiens perdus", "Grande bouffe",
        "Dolce vita", "Notte", "Strada", "Ciel de Paris", "Himmel über Berlin", "Boot",
        "Große Stille", "Noche de los lápices", "Mar adentro", "Año bisiesto", "Jours heureux",
        "Mépris", "Quatre cents coups", "Ladri di biciclette", "Åsa-Nisse", "Sjunde inseglet",
    ),
    "articles": (
        "The", "The", "The", "The", "A", "A", "An",
    ),
    "foreign_articles": (
        "Les", "La", "Le", "Il", "Der", "Die", "Das", "El", "Los", "L'",
    ),
    "fallback_genres": (
        "Drama", "Drama", "Comedy", "Documentary", "Thriller",
    ),
}
"""Word lists titles are built from, set as DuckDB variables of the same names."""
# fmt: on

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

# fmt: off
_CURATED_TAGS = (
    "atmospheric", "sci-fi", "twist ending", "dark comedy", "funny", "surreal",
    "thought-provoking", "visually appealing", "quirky", "based on a book", "classic",
    "psychology", "superhero", "disney", "dystopia", "stylized", "comedy", "action", "drama",
    "romance", "horror", "thriller", "great soundtrack", "time travel", "space", "aliens",
    "zombies", "vampires", "magic", "fantasy world", "animation", "pixar animation", "anime",
    "cult film", "mindfuck", "nonlinear", "philosophical", "cerebral", "violence", "gore",
    "nudity (topless)", "oscar (best picture)", "oscar (best actor)", "oscar winner", "criterion",
    "imdb top 250", "afi 100", "satire", "parody", "black comedy", "mafia", "gangsters",
    "organized crime", "heist", "serial killer", "detective", "police", "courtroom", "prison",
    "war", "world war ii", "vietnam war", "cold war", "history", "biography",
    "based on a true story", "true story", "documentary", "music", "musical", "dance", "sports",
    "boxing", "baseball", "football", "coming of age", "high school", "teen", "family",
    "friendship", "love story", "relationships", "marriage", "divorce", "betrayal", "revenge",
    "redemption", "survival", "post-apocalyptic", "apocalypse", "artificial intelligence",
    "robots", "cyberpunk", "virtual reality", "conspiracy", "politics", "religion", "christmas",
    "new york city", "paris", "london", "los angeles", "road trip", "small town", "suburbia",
    "los angeles noir", "film noir", "neo-noir", "western", "martial arts", "kung fu", "samurai",
    "pirates", "spies", "espionage", "james bond", "007", "007 (series)", "batman", "comic book",
    "adapted from:comic", "shakespeare", "remake", "sequel", "franchise", "trilogy",
    "independent film", "indie", "foreign", "french", "british", "japan", "china", "india",
    "africa", "australia", "quentin tarantino", "stanley kubrick", "christopher nolan",
    "wes anderson", "coen brothers", "david lynch", "alfred hitchcock", "hayao miyazaki",
    "studio ghibli", "tom hanks", "morgan freeman", "brad pitt", "johnny depp", "meryl streep",
    "bill murray", "feel-good", "heartwarming", "tearjerker", "sad", "depressing", "bleak", "dark",
    "beautiful", "cinematography", "visually stunning", "great acting", "great dialogue", "witty",
    "clever", "intelligent", "slow", "boring", "overrated", "underrated", "predictable", "cheesy",
    "campy", "so bad it's good", "entertaining", "fun", "light", "silly", "stupid", "absurd",
    "weird", "creepy", "scary", "suspense", "tense", "claustrophobic", "intense", "gritty",
    "realistic", "original", "complex", "confusing", "multiple storylines", "ensemble cast",
    "narrated", "unreliable narrator", "non-linear timeline", "plot twist", "ending",
    "open ending", "happy ending",
)

_TOPICS = (
    "aging", "addiction", "adoption", "adultery", "airplane", "alcoholism", "amnesia", "animals",
    "antarctica", "architecture", "army", "art", "artist", "assassin", "assassination",
    "astronauts", "bank robbery", "bar", "beach", "bees", "bicycle", "birds", "blindness", "bombs",
    "books", "bounty hunter", "brothers", "bullying", "business", "cannibalism", "cars", "casino",
    "castle", "cats", "chase", "chess", "childhood", "circus", "civil war", "clones", "college",
    "computers", "corruption", "cowboys", "crime", "cults", "dancing", "deafness", "demons",
    "desert", "dinosaurs", "disaster", "doctors", "dogs", "dolls", "dragons", "dreams", "drugs",
    "elections", "elves", "environment", "evolution", "exorcism", "farming", "fashion", "fathers",
    "fighting", "fire", "fish", "flying", "food", "forest", "fraud", "gambling", "genetics",
    "ghosts", "giants", "gods", "gold", "golf", "graffiti", "guns", "hackers", "hallucination",
    "haunted house", "hell", "heroes", "hitman", "hockey", "holidays", "hospital", "hostage",
    "hotel", "hunting", "identity", "illness", "immigration", "insanity", "insects", "internet",
    "inventions", "islands", "journalism", "jungle", "kidnapping", "kings", "knights", "lawyers",
    "letters", "library", "lighthouse", "loneliness", "magic tricks", "marines", "mars",
    "medicine", "memory", "mental illness", "mermaids", "military", "mining", "missing person",
    "monsters", "moon", "mothers", "motorcycle", "mountains", "movie business", "murder", "museum",
    "mythology", "navy", "nazis", "ninjas", "nuclear war", "ocean", "orphans", "painting",
    "paranoia", "photography", "pilots", "plague", "poetry", "poverty", "pregnancy", "priests",
    "princess", "prostitution", "psychiatry", "puppets", "race issues", "radio", "railroad",
    "rain", "rats", "rescue", "restaurant", "riots", "rivers", "robbery", "rock and roll",
    "royalty", "russia", "sailing", "school", "science", "scientists", "sea", "sharks", "ships",
    "shipwreck", "siblings", "singers", "skiing", "slavery", "snakes", "snow", "soccer",
    "soldiers", "space travel", "spiders", "storms", "submarine", "suicide", "surfing", "swimming",
    "teachers", "technology", "television", "terrorism", "theater", "torture", "toys", "trains",
    "treasure", "trials", "twins", "undercover", "unicorns", "villains", "volcano", "waitress",
    "weddings", "werewolves", "whales", "witches", "wizards", "wolves", "wrestling", "writers",
    "zoo",
)

_TAG_MODIFIERS = (
    "great", "good", "bad", "dark", "strong", "beautiful", "original", "clever", "slow", "violent",
    "funny", "sad", "quirky", "stylish", "realistic", "epic", "complex", "weird", "cheesy",
    "memorable", "amazing", "brilliant", "awful", "subtle", "unusual",
)

_TAG_SUBJECTS = (
    "dialogue", "soundtrack", "acting", "plot", "ending", "cinematography", "characters", "story",
    "villain", "music", "visuals", "humor", "action", "romance", "twist", "effects", "writing",
    "direction", "pacing", "cast", "score", "script", "premise", "setting", "performances",
)

_USER_TAG_SPECIALS = (
    "In Netflix queue", "bittersweet, but uplifting", '"artsy"', "Amélie-esque",
    "Studio Ghibli – Miyazaki", "Pokémon", "naïve protagonist", "funny, sad, true", "Palme d'Or",
    "BD-R", "Björk", "sci-fi, not fantasy", "I ♥ this movie", "東京", "ménage à trois",
    "film noir, neo-noir", "R:strong language", "must see!", "too long, too slow", '"The Dude"',
    "Hitchcock-ian", "Zoë Kazan", "Señor Spielberg", "“quoted” dialogue",
)
"""User tags with commas, quotes and non-ASCII characters, spread through the tag vocabulary."""
# fmt: on

_USER_TAG_VOCABULARY = 1_500
"""How many distinct words users tag with (before capitalization variants)."""


def _vocabulary_candidates() -> Iterator[str]:
    """Tag names in order of typicality, possibly repeating: curated, topics, combinations."""
    decades = (f"{decade}s" for decade in range(1920, 2020, 10))
    centuries = (f"{century}th century" for century in range(15, 21))
    pairs = [f"{modifier} {subject}" for modifier in _TAG_MODIFIERS for subject in _TAG_SUBJECTS]
    topical = (f"{modifier} {topic}" for topic in _TOPICS for modifier in _TAG_MODIFIERS)
    triples = (f"{pair} {topic}" for topic in _TOPICS for pair in pairs)
    return chain(_CURATED_TAGS, _TOPICS, decades, centuries, pairs, topical, triples)


def _user_tag_vocabulary(genome_words: tuple[str, ...]) -> tuple[str, ...]:
    """The words users tag with: genome words, with the special tags at every 8th position."""
    specials = iter(_USER_TAG_SPECIALS)
    words = iter(genome_words)
    vocabulary = []
    for position in range(_USER_TAG_VOCABULARY):
        special = next(specials, None) if position % 8 == 3 else None
        vocabulary.append(special or next(words))
    return tuple(vocabulary)
