-- The benchmark's bar: the pipeline's loads, models and tests typed straight into DuckDB, with no
-- Dagster, no dbt and no S3. `movielens bench` runs it on a fresh DuckDB file and compares.
--
-- Same logic as the dbt project (movielens_dbt/), statement for statement:
--   - RAW: the six local CSVs read once each with the explicit types of
--     movielens_assets/datasets.py and the loader's read_csv options, plus `_source_file` (the
--     S3 key) and `_loaded_at` like the RAW loader adds;
--   - staging views that keep the latest loaded row per key (`qualify row_number() ... = 1`),
--     except ratings and genome scores, which the facts deduplicate the same way;
--   - the seed, dimensions, facts (a first, non-incremental build), marts and the first
--     snapshot of src_tags with dbt's snapshot columns;
--   - every dbt test as the query dbt compiles for it (count of failing rows), collected in
--     bench.test_results; the script fails if any test has failures.
-- If a model changes in movielens_dbt/, change it here too, or the comparison is void.
--
-- Inputs, as DuckDB variables set before the script runs (`movielens_assets/bench.py` does):
--   set variable data_dir = '/path/to/folder/with/the/six/csvs';
--   set variable seed_file = 'movielens_dbt/seeds/seed_movie_release_dates.csv';
--   set variable loaded_at = timestamp '2025-01-01 00:00:00';  -- optional, default: now (local)
--   set variable ratings_key = 'landing/ratings/ratings.csv';    -- optional: each dataset's
--     `<dataset>_key` is the `_source_file` of its rows, the S3 key the pipeline's loader
--     records (default: the key under the default prefix `landing`). The same strings as the
--     pipeline's: on DuckDB a string over 12 bytes is not inlined, and the staging and fact
--     queries that group or sort by it cost more than with a short file name.
-- In the duckdb CLI: set the variables, then `.read bench/baseline.sql`.

create schema if not exists raw;
create schema if not exists dev;
create schema if not exists snapshots;
create schema if not exists bench;

-- RAW ------------------------------------------------------------------------------------------

create table raw.raw_movies as
select
    *,
    coalesce(getvariable('movies_key'), 'landing/movies/movies.csv') as _source_file,
    coalesce(getvariable('loaded_at'), current_localtimestamp()) as _loaded_at
from read_csv(
    getvariable('data_dir') || '/movies.csv',
    header = true, auto_detect = false, delim = ',', quote = '"', escape = '"',
    strict_mode = true,
    columns = {'movieId': 'integer', 'title': 'varchar', 'genres': 'varchar'}
);

create table raw.raw_ratings as
select
    *,
    coalesce(getvariable('ratings_key'), 'landing/ratings/ratings.csv') as _source_file,
    coalesce(getvariable('loaded_at'), current_localtimestamp()) as _loaded_at
from read_csv(
    getvariable('data_dir') || '/ratings.csv',
    header = true, auto_detect = false, delim = ',', quote = '"', escape = '"',
    strict_mode = true,
    columns = {
        'userId': 'integer', 'movieId': 'integer', 'rating': 'double', 'timestamp': 'bigint'
    }
);

create table raw.raw_tags as
select
    *,
    coalesce(getvariable('tags_key'), 'landing/tags/tags.csv') as _source_file,
    coalesce(getvariable('loaded_at'), current_localtimestamp()) as _loaded_at
from read_csv(
    getvariable('data_dir') || '/tags.csv',
    header = true, auto_detect = false, delim = ',', quote = '"', escape = '"',
    strict_mode = true,
    columns = {
        'userId': 'integer', 'movieId': 'integer', 'tag': 'varchar', 'timestamp': 'bigint'
    }
);

create table raw.raw_links as
select
    *,
    coalesce(getvariable('links_key'), 'landing/links/links.csv') as _source_file,
    coalesce(getvariable('loaded_at'), current_localtimestamp()) as _loaded_at
from read_csv(
    getvariable('data_dir') || '/links.csv',
    header = true, auto_detect = false, delim = ',', quote = '"', escape = '"',
    strict_mode = true,
    columns = {'movieId': 'integer', 'imdbId': 'varchar', 'tmdbId': 'integer'}
);

create table raw.raw_genome_tags as
select
    *,
    coalesce(getvariable('genome_tags_key'), 'landing/genome_tags/genome-tags.csv') as _source_file,
    coalesce(getvariable('loaded_at'), current_localtimestamp()) as _loaded_at
from read_csv(
    getvariable('data_dir') || '/genome-tags.csv',
    header = true, auto_detect = false, delim = ',', quote = '"', escape = '"',
    strict_mode = true,
    columns = {'tagId': 'integer', 'tag': 'varchar'}
);

create table raw.raw_genome_scores as
select
    *,
    coalesce(getvariable('genome_scores_key'), 'landing/genome_scores/genome-scores.csv') as _source_file,
    coalesce(getvariable('loaded_at'), current_localtimestamp()) as _loaded_at
from read_csv(
    getvariable('data_dir') || '/genome-scores.csv',
    header = true, auto_detect = false, delim = ',', quote = '"', escape = '"',
    strict_mode = true,
    columns = {'movieId': 'integer', 'tagId': 'integer', 'relevance': 'double'}
);

-- Seed -----------------------------------------------------------------------------------------

create table dev.seed_movie_release_dates as
select *
from read_csv(
    getvariable('seed_file'),
    header = true, auto_detect = false,
    columns = {'movie_id': 'integer', 'release_date': 'date'}
);

-- Staging (views, latest loaded row per key) ---------------------------------------------------

create view dev.src_movies as
with

source as (
    select * from raw.raw_movies
),

latest as (
    select *
    from source
    qualify row_number() over (
        partition by movieId
        order by _loaded_at desc, _source_file desc
    ) = 1
),

final as (
    select
        movieId as movie_id,
        title,
        genres,
    from latest
)

select * from final;

create view dev.src_ratings as
with

source as (
    select * from raw.raw_ratings
),

final as (
    select
        userId as user_id,
        movieId as movie_id,
        rating,
        make_timestamp(cast(timestamp as bigint) * 1000000) as rated_at,
        _loaded_at,
        _source_file,
    from source
)

select * from final;

create view dev.src_tags as
with

source as (
    select * from raw.raw_tags
),

latest as (
    select *
    from source
    qualify row_number() over (
        partition by userId, movieId, tag
        order by _loaded_at desc, _source_file desc
    ) = 1
),

final as (
    select
        md5(
            coalesce(cast(userId as text), '_null_')
            || '-' || coalesce(cast(movieId as text), '_null_')
            || '-' || coalesce(cast(tag as text), '_null_')
        ) as tag_key,
        userId as user_id,
        movieId as movie_id,
        tag,
        make_timestamp(cast(timestamp as bigint) * 1000000) as tagged_at,
        _loaded_at,
    from latest
)

select * from final;

create view dev.src_links as
with

source as (
    select * from raw.raw_links
),

latest as (
    select *
    from source
    qualify row_number() over (
        partition by movieId
        order by _loaded_at desc, _source_file desc
    ) = 1
),

final as (
    select
        movieId as movie_id,
        imdbId as imdb_id,
        tmdbId as tmdb_id,
    from latest
)

select * from final;

create view dev.src_genome_tags as
with

source as (
    select * from raw.raw_genome_tags
),

latest as (
    select *
    from source
    qualify row_number() over (
        partition by tagId
        order by _loaded_at desc, _source_file desc
    ) = 1
),

final as (
    select
        tagId as tag_id,
        tag,
    from latest
)

select * from final;

create view dev.src_genome_scores as
with

source as (
    select * from raw.raw_genome_scores
),

final as (
    select
        movieId as movie_id,
        tagId as tag_id,
        relevance,
        _loaded_at,
        _source_file,
    from source
)

select * from final;

-- Dimensions -----------------------------------------------------------------------------------

create table dev.dim_movies as
select
    movie_id,
    trim(title) as movie_title,
    genres,
    case
        when genres is null or genres = '(no genres listed)'
            then cast([] as varchar [])
        else string_split(genres, '|')
    end as genre_array,
    cast(nullif(regexp_extract(trim(title), '[(]([0-9]{4})[)]$', 1), '') as integer)
        as release_year,
from dev.src_movies;

create table dev.dim_users as
with

users_seen as (
    select user_id from dev.src_ratings
    union
    select user_id from dev.src_tags
)

select user_id from users_seen;

create table dev.dim_genome_tags as
select
    tag_id,
    tag as tag_name,
from dev.src_genome_tags;

-- Facts (the first build of the incremental models) --------------------------------------------

create table dev.fct_ratings as
select
    user_id,
    movie_id,
    rating,
    rated_at,
    _loaded_at,
from dev.src_ratings
qualify row_number() over (
    partition by user_id, movie_id
    order by _loaded_at desc, _source_file desc
) = 1;

create table dev.fct_genome_scores as
select
    movie_id,
    tag_id,
    relevance as relevance_score,
    _loaded_at,
from dev.src_genome_scores
qualify row_number() over (
    partition by movie_id, tag_id
    order by _loaded_at desc, _source_file desc
) = 1;

-- Marts (ep_movie_with_tags inlines the ephemeral dim_movies_with_tags) ------------------------

create table dev.mart_movie_ratings as
with

ratings_per_movie as (
    select
        movie_id,
        avg(rating) as average_rating,
        count(*) as total_ratings,
        min(rated_at) as first_rated_at,
        max(rated_at) as last_rated_at,
    from dev.fct_ratings
    group by movie_id
)

select
    movies.movie_id,
    movies.movie_title,
    movies.genres,
    movies.release_year,
    ratings_per_movie.average_rating,
    ratings_per_movie.first_rated_at,
    ratings_per_movie.last_rated_at,
    coalesce(ratings_per_movie.total_ratings, 0) as total_ratings,
from dev.dim_movies as movies
left join ratings_per_movie
    on movies.movie_id = ratings_per_movie.movie_id;

create table dev.mart_movie_releases as
select
    movies.movie_id,
    movies.movie_title,
    movies.release_year,
    release_dates.release_date,
    release_dates.release_date is not null as has_known_release_date,
from dev.dim_movies as movies
left join dev.seed_movie_release_dates as release_dates
    on movies.movie_id = release_dates.movie_id;

create table dev.ep_movie_with_tags as
with

dim_movies_with_tags as (
    select
        movies.movie_id,
        movies.movie_title,
        movies.genres,
        genome_tags.tag_id,
        genome_tags.tag_name,
        genome_scores.relevance_score,
    from dev.dim_movies as movies
    inner join dev.fct_genome_scores as genome_scores
        on movies.movie_id = genome_scores.movie_id
    inner join dev.dim_genome_tags as genome_tags
        on genome_scores.tag_id = genome_tags.tag_id
)

select
    movie_id,
    movie_title,
    genres,
    tag_id,
    tag_name,
    relevance_score,
from dim_movies_with_tags;

-- Snapshot (the first run of snap_tags: every row current) -------------------------------------

create table snapshots.snap_tags as
select
    *,
    md5(
        coalesce(cast(tag_key as varchar), '') || '|' || coalesce(cast(tagged_at as varchar), '')
    ) as dbt_scd_id,
    tagged_at as dbt_updated_at,
    tagged_at as dbt_valid_from,
    cast(null as timestamp) as dbt_valid_to,
from dev.src_tags;

-- Tests: one row per dbt test, `failures` = rows its query returns ------------------------------

create table bench.test_results (test_name varchar, failures bigint);

-- unique
insert into bench.test_results
select 'unique_src_movies_movie_id', count(*) from (
    select movie_id from dev.src_movies where movie_id is not null
    group by movie_id having count(*) > 1
);
insert into bench.test_results
select 'unique_src_tags_tag_key', count(*) from (
    select tag_key from dev.src_tags where tag_key is not null
    group by tag_key having count(*) > 1
);
insert into bench.test_results
select 'unique_src_links_movie_id', count(*) from (
    select movie_id from dev.src_links where movie_id is not null
    group by movie_id having count(*) > 1
);
insert into bench.test_results
select 'unique_src_genome_tags_tag_id', count(*) from (
    select tag_id from dev.src_genome_tags where tag_id is not null
    group by tag_id having count(*) > 1
);
insert into bench.test_results
select 'unique_dim_movies_movie_id', count(*) from (
    select movie_id from dev.dim_movies where movie_id is not null
    group by movie_id having count(*) > 1
);
insert into bench.test_results
select 'unique_dim_users_user_id', count(*) from (
    select user_id from dev.dim_users where user_id is not null
    group by user_id having count(*) > 1
);
insert into bench.test_results
select 'unique_dim_genome_tags_tag_id', count(*) from (
    select tag_id from dev.dim_genome_tags where tag_id is not null
    group by tag_id having count(*) > 1
);
insert into bench.test_results
select 'unique_mart_movie_ratings_movie_id', count(*) from (
    select movie_id from dev.mart_movie_ratings where movie_id is not null
    group by movie_id having count(*) > 1
);
insert into bench.test_results
select 'unique_mart_movie_releases_movie_id', count(*) from (
    select movie_id from dev.mart_movie_releases where movie_id is not null
    group by movie_id having count(*) > 1
);
insert into bench.test_results
select 'unique_seed_movie_release_dates_movie_id', count(*) from (
    select movie_id from dev.seed_movie_release_dates where movie_id is not null
    group by movie_id having count(*) > 1
);
insert into bench.test_results
select 'unique_snap_tags_dbt_scd_id', count(*) from (
    select dbt_scd_id from snapshots.snap_tags where dbt_scd_id is not null
    group by dbt_scd_id having count(*) > 1
);

-- unique_combination_of_columns
insert into bench.test_results
select 'unique_combination_of_columns_fct_ratings_user_id__movie_id', count(*) from (
    select user_id, movie_id from dev.fct_ratings
    group by user_id, movie_id having count(*) > 1
);
insert into bench.test_results
select 'unique_combination_of_columns_fct_genome_scores_movie_id__tag_id', count(*) from (
    select movie_id, tag_id from dev.fct_genome_scores
    group by movie_id, tag_id having count(*) > 1
);
insert into bench.test_results
select 'unique_combination_of_columns_ep_movie_with_tags_movie_id__tag_id', count(*) from (
    select movie_id, tag_id from dev.ep_movie_with_tags
    group by movie_id, tag_id having count(*) > 1
);
insert into bench.test_results
select 'unique_combination_of_columns_src_ratings_user_id__movie_id___source_file___loaded_at',
    count(*) from (
    with repeated as (
        select user_id, movie_id, _loaded_at from dev.src_ratings
        group by user_id, movie_id, _loaded_at having count(*) > 1
    )
    select user_id, movie_id, _source_file, _loaded_at from dev.src_ratings
    where (user_id, movie_id, _loaded_at) in (select user_id, movie_id, _loaded_at from repeated)
    group by user_id, movie_id, _source_file, _loaded_at having count(*) > 1
);
insert into bench.test_results
select 'unique_combination_of_columns_src_genome_scores_movie_id__tag_id___source_file___loaded_at',
    count(*) from (
    with repeated as (
        select movie_id, tag_id, _loaded_at from dev.src_genome_scores
        group by movie_id, tag_id, _loaded_at having count(*) > 1
    )
    select movie_id, tag_id, _source_file, _loaded_at from dev.src_genome_scores
    where (movie_id, tag_id, _loaded_at) in (select movie_id, tag_id, _loaded_at from repeated)
    group by movie_id, tag_id, _source_file, _loaded_at having count(*) > 1
);

-- not_null
insert into bench.test_results
select 'not_null_src_movies_movie_id', count(*) from dev.src_movies where movie_id is null;
insert into bench.test_results
select 'not_null_src_ratings_user_id', count(*) from dev.src_ratings where user_id is null;
insert into bench.test_results
select 'not_null_src_ratings_movie_id', count(*) from dev.src_ratings where movie_id is null;
insert into bench.test_results
select 'not_null_src_tags_tag_key', count(*) from dev.src_tags where tag_key is null;
insert into bench.test_results
select 'not_null_src_links_movie_id', count(*) from dev.src_links where movie_id is null;
insert into bench.test_results
select 'not_null_src_genome_tags_tag_id', count(*) from dev.src_genome_tags where tag_id is null;
insert into bench.test_results
select 'not_null_src_genome_scores_movie_id', count(*)
from dev.src_genome_scores where movie_id is null;
insert into bench.test_results
select 'not_null_src_genome_scores_tag_id', count(*)
from dev.src_genome_scores where tag_id is null;
insert into bench.test_results
select 'not_null_dim_movies_movie_id', count(*) from dev.dim_movies where movie_id is null;
insert into bench.test_results
select 'not_null_dim_movies_movie_title', count(*) from dev.dim_movies where movie_title is null;
insert into bench.test_results
select 'not_null_dim_users_user_id', count(*) from dev.dim_users where user_id is null;
insert into bench.test_results
select 'not_null_dim_genome_tags_tag_id', count(*) from dev.dim_genome_tags where tag_id is null;
insert into bench.test_results
select 'not_null_fct_ratings_user_id', count(*) from dev.fct_ratings where user_id is null;
insert into bench.test_results
select 'not_null_fct_ratings_movie_id', count(*) from dev.fct_ratings where movie_id is null;
insert into bench.test_results
select 'not_null_fct_genome_scores_movie_id', count(*)
from dev.fct_genome_scores where movie_id is null;
insert into bench.test_results
select 'not_null_fct_genome_scores_tag_id', count(*)
from dev.fct_genome_scores where tag_id is null;
insert into bench.test_results
select 'not_null_mart_movie_ratings_movie_id', count(*)
from dev.mart_movie_ratings where movie_id is null;
insert into bench.test_results
select 'not_null_mart_movie_ratings_total_ratings', count(*)
from dev.mart_movie_ratings where total_ratings is null;
insert into bench.test_results
select 'not_null_mart_movie_releases_movie_id', count(*)
from dev.mart_movie_releases where movie_id is null;
insert into bench.test_results
select 'not_null_mart_movie_releases_has_known_release_date', count(*)
from dev.mart_movie_releases where has_known_release_date is null;
insert into bench.test_results
select 'not_null_ep_movie_with_tags_movie_id', count(*)
from dev.ep_movie_with_tags where movie_id is null;
insert into bench.test_results
select 'not_null_ep_movie_with_tags_tag_id', count(*)
from dev.ep_movie_with_tags where tag_id is null;
insert into bench.test_results
select 'not_null_seed_movie_release_dates_movie_id', count(*)
from dev.seed_movie_release_dates where movie_id is null;
insert into bench.test_results
select 'not_null_seed_movie_release_dates_release_date', count(*)
from dev.seed_movie_release_dates where release_date is null;
insert into bench.test_results
select 'not_null_snap_tags_tag_key', count(*) from snapshots.snap_tags where tag_key is null;
insert into bench.test_results
select 'not_null_snap_tags_dbt_scd_id', count(*) from snapshots.snap_tags where dbt_scd_id is null;

-- no_nulls_in_columns (every column of the model)
insert into bench.test_results
select 'no_nulls_in_columns_dim_users_', count(*) from dev.dim_users where user_id is null;
insert into bench.test_results
select 'no_nulls_in_columns_dim_genome_tags_', count(*)
from dev.dim_genome_tags where tag_id is null or tag_name is null;
insert into bench.test_results
select 'no_nulls_in_columns_fct_ratings_', count(*)
from dev.fct_ratings
where
    user_id is null
    or movie_id is null
    or rating is null
    or rated_at is null
    or _loaded_at is null;

-- relationships
insert into bench.test_results
select 'relationships_fct_ratings_user_id__user_id__ref_dim_users_', count(*)
from (select user_id as from_field from dev.fct_ratings where user_id is not null) as child
left join (select user_id as to_field from dev.dim_users) as parent
    on child.from_field = parent.to_field
where parent.to_field is null;
insert into bench.test_results
select 'relationships_fct_ratings_movie_id__movie_id__ref_dim_movies_', count(*)
from (select movie_id as from_field from dev.fct_ratings where movie_id is not null) as child
left join (select movie_id as to_field from dev.dim_movies) as parent
    on child.from_field = parent.to_field
where parent.to_field is null;
insert into bench.test_results
select 'relationships_fct_genome_scores_movie_id__movie_id__ref_dim_movies_', count(*)
from (select movie_id as from_field from dev.fct_genome_scores where movie_id is not null) as child
left join (select movie_id as to_field from dev.dim_movies) as parent
    on child.from_field = parent.to_field
where parent.to_field is null;
insert into bench.test_results
select 'relationships_fct_genome_scores_tag_id__tag_id__ref_dim_genome_tags_', count(*)
from (select tag_id as from_field from dev.fct_genome_scores where tag_id is not null) as child
left join (select tag_id as to_field from dev.dim_genome_tags) as parent
    on child.from_field = parent.to_field
where parent.to_field is null;
insert into bench.test_results
select 'relationships_seed_movie_release_dates_movie_id__movie_id__ref_dim_movies_', count(*)
from (
    select movie_id as from_field from dev.seed_movie_release_dates where movie_id is not null
) as child
left join (select movie_id as to_field from dev.dim_movies) as parent
    on child.from_field = parent.to_field
where parent.to_field is null;

-- accepted_values
insert into bench.test_results
select 'accepted_values_fct_ratings_rating__False__0_5__1_0__1_5__2_0__2_5__3_0__3_5__4_0__4_5__5_0', count(*) from (
    select rating as value_field, count(*) as n_records
    from dev.fct_ratings
    group by rating
)
where value_field not in (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0);

-- singular tests (movielens_dbt/tests/)
insert into bench.test_results
select 'relevance_score_test', count(*)
from dev.fct_genome_scores
where relevance_score is null or relevance_score < 0 or relevance_score > 1;
insert into bench.test_results
select 'snap_tags_one_current_row_per_key', count(*) from (
    select tag_key from snapshots.snap_tags
    where dbt_valid_to is null
    group by tag_key having count(*) > 1
);

-- Fail like `dbt build` does when a test fails.
select
    case
        when sum(failures) > 0
            then error(
                'baseline tests failed: '
                || string_agg(test_name || ' (' || failures || ')', ', ')
                    filter (where failures > 0)
            )
    end as outcome
from bench.test_results;
