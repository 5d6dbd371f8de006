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

The modules, by job: ``plan`` (how many rows of each kind), ``shape`` (ml-20m's distributions),
``vocabulary`` (title words and tag names), ``connection`` (the seeded DuckDB and its random
macros), ``catalogues`` (movies, users and words as tables), ``queries`` (the SELECT of each
file), ``generator`` (``generate``) and ``sample_genome`` (``synthesize_sample_genome``).
"""

from movielens_assets.tools.generate.errors import GenerationError
from movielens_assets.tools.generate.generator import generate
from movielens_assets.tools.generate.plan import MIN_RATINGS, ML_20M_RATINGS, Plan, plan
from movielens_assets.tools.generate.sample_genome import synthesize_sample_genome
from movielens_assets.tools.generate.vocabulary import genome_vocabulary

__all__ = [
    "MIN_RATINGS",
    "ML_20M_RATINGS",
    "GenerationError",
    "Plan",
    "generate",
    "genome_vocabulary",
    "plan",
    "synthesize_sample_genome",
]
