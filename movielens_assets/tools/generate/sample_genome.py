"""The two genome files ml-latest-small lacks, named after the sample's own user tags.

``tools/sample.py`` calls ``synthesize_sample_genome`` the first time the bundled sample is used.
"""

from __future__ import annotations

import tempfile
from itertools import islice
from pathlib import Path

import duckdb

from movielens_assets.datasets import DATASETS
from movielens_assets.tools.generate.catalogues import create_words
from movielens_assets.tools.generate.connection import connect, copy_to_csv
from movielens_assets.tools.generate.plan import ML_20M_SIZES
from movielens_assets.tools.generate.queries import GENOME_TAGS_QUERY, relevance_sql
from movielens_assets.tools.generate.vocabulary import genome_vocabulary


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
        con = connect(Path(spill_dir), seed)
        try:
            _load_sample(con, sample_dir)
            _create_sample_genome_tags(con, ML_20M_SIZES["genome_tags"])
            queries = {
                "genome_tags": GENOME_TAGS_QUERY,
                "genome_scores": _sample_genome_scores_query(min_ratings),
            }
            return {
                name: copy_to_csv(con, query, out_dir / DATASETS[name].grouplens_file)
                for name, query in queries.items()
            }
        finally:
            con.close()


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
    create_words(con, "genome_words", tuple(names))
    con.execute("create table genome_tags as select position + 1 as tag_id, tag from genome_words")


def _sample_genome_scores_query(min_ratings: int) -> str:
    """SELECT for the sample's ``genome-scores.csv``: often-rated movies x all genome tags."""
    background = relevance_sql(
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
