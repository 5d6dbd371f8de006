"""ml-20m's shape beyond its sizes: when, how, what share; the generated sets follow it."""

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
