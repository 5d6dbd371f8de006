"""The incremental ratings file (child side): new (user, movie) pairs and re-ratings."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def phase_make_increment(spec: dict[str, Any]) -> dict[str, Any]:
    """Write a ratings file of ``new`` new (user, movie) pairs and ``rerated`` re-ratings.

    New pairs join existing users with movies of ``movies.csv`` that the user has not rated in
    any of ``existing`` (the files already landed); re-ratings change the rating of existing
    pairs. Every timestamp is later than the latest existing one. Deterministic for ``seed``.
    """
    import duckdb

    columns = (
        "{'userId': 'integer', 'movieId': 'integer', 'rating': 'double', 'timestamp': 'bigint'}"
    )
    out = Path(spec["out"])
    out.parent.mkdir(parents=True, exist_ok=True)
    seed, new, rerated = int(spec["seed"]), int(spec["new"]), int(spec["rerated"])
    with duckdb.connect() as connection:
        connection.execute(
            f"""create table existing as
            select * from read_csv($files, header = true, auto_detect = false, columns = {columns})
            """,
            {"files": spec["existing"]},
        )
        connection.execute(
            """create table movies as
            select row_number() over (order by movieId) - 1 as ordinal, movieId
            from read_csv($path, header = true, auto_detect = false,
                columns = {'movieId': 'integer', 'title': 'varchar', 'genres': 'varchar'})""",
            {"path": spec["movies"]},
        )
        connection.execute(
            """create table users as
            select row_number() over (order by userId) - 1 as ordinal, userId
            from (select distinct userId from existing)"""
        )
        aggregates = connection.execute(
            "select max(timestamp), (select count(*) from users), (select count(*) from movies)"
            " from existing"
        ).fetchone()
        assert aggregates is not None  # an aggregate without GROUP BY returns one row
        latest, users, movies = aggregates
        # Plain equi-joins and anti-joins only: 20M existing rows are scanned once each.
        connection.execute(
            f"""create table new_pairs as
            with candidates as (
                select
                    i,
                    hash(i, {seed}, 'user') % {users} as user_ordinal,
                    hash(i, {seed}, 'movie') % {movies} as movie_ordinal
                from range({3 * new + 100}) as candidates (i)
            ),
            pairs as (
                select candidates.i, users.userId, movies.movieId
                from candidates
                inner join users on users.ordinal = candidates.user_ordinal
                inner join movies on movies.ordinal = candidates.movie_ordinal
            )
            select userId, movieId, min(i) as i
            from pairs
            anti join existing using (userId, movieId)
            group by userId, movieId
            order by i
            limit {new}"""
        )
        connection.execute(
            f"""create table rerated_pairs as
            select userId, movieId, rating
            from (
                select userId, movieId, rating, timestamp
                from existing
                order by hash(userId, movieId, {seed}, 'rerate'), timestamp desc
                limit {2 * rerated}
            )
            qualify row_number() over (partition by userId, movieId order by timestamp desc) = 1
            order by hash(userId, movieId, {seed}, 'rerate')
            limit {rerated}"""
        )
        copied = connection.execute(
            f"""copy (
            with rows as (
                select
                    userId,
                    movieId,
                    (1 + hash(userId, movieId, {seed}, 'stars') % 10) / 2 as rating,
                    {latest} + 1 + hash(userId, movieId, {seed}, 'when') % 2592000 as timestamp
                from new_pairs
                union all
                select
                    userId,
                    movieId,
                    -- Any other star value: shift by 1 to 9 half stars, modulo 10.
                    ((cast(rating * 2 as integer) - 1 + 1 + hash(userId, movieId, {seed}) % 9)
                        % 10 + 1) / 2 as rating,
                    {latest} + 1 + hash(userId, movieId, {seed}, 'when') % 2592000 as timestamp
                from rerated_pairs
            )
            select
                userId,
                movieId,
                cast(rating as decimal(2, 1)) as rating,
                cast(timestamp as bigint) as timestamp
            from rows
            order by userId, movieId
            ) to '{out}' (header, delimiter ',')"""
        ).fetchone()
        assert copied is not None  # COPY returns one row: the rows written
        counted = connection.execute(
            f"""with increment as (
                select distinct userId, movieId
                from read_csv('{out}', header = true, auto_detect = false, columns = {columns})
            )
            select
                (select count(*) from increment anti join existing using (userId, movieId)),
                (select count(*) from increment semi join existing using (userId, movieId))"""
        ).fetchone()
        assert counted is not None  # an aggregate without GROUP BY returns one row
    return {"path": str(out), "rows": copied[0], "new_pairs": counted[0], "rerated": counted[1]}
