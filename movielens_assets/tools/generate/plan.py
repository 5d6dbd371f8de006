"""How many rows of each kind a synthetic set has: ml-20m's sizes, scaled to its ratings."""

from __future__ import annotations

import math
from dataclasses import dataclass

from movielens_assets.tools.generate.errors import GenerationError

ML_20M_RATINGS = 20_000_263
"""Ratings in ml-20m; ``generate`` at this size reproduces every ml-20m row count."""

MIN_RATINGS = 1_000
"""The smallest ``ratings`` that still gives every dataset a few rows."""


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
