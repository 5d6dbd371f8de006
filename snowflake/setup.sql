-- MovieLens on Snowflake: one-time, idempotent account setup (every statement is "if not exists"
-- or a grant, so running it again changes nothing).
--
-- Placeholders, filled in by the client at run time and never committed:
--   &{landing_bucket}   the S3 landing bucket (MOVIELENS_S3_BUCKET), e.g. acme-movielens
--   &{landing_prefix}   the landing folder (MOVIELENS_S3_PREFIX), e.g. landing; not empty
--   &{aws_role_arn}     the IAM role Snowflake assumes to read the bucket, e.g.
--                       arn:aws:iam::123456789012:role/movielens-snowflake-read
--   &{dbt_password}     password of the DBT user
--   &{loader_password}  password of the MOVIELENS_LOADER user
--
-- Run it as a user holding ACCOUNTADMIN (the storage integration needs it), with either client:
--
--   snow sql -f snowflake/setup.sql \
--     -D landing_bucket=acme-movielens -D landing_prefix=landing \
--     -D aws_role_arn=arn:aws:iam::123456789012:role/movielens-snowflake-read \
--     -D dbt_password="$DBT_PASSWORD" -D loader_password="$LOADER_PASSWORD"
--
--   snowsql -o variable_substitution=true -f snowflake/setup.sql -D landing_bucket=... (same -D)
--
-- Then finish the AWS side once: `desc integration MOVIELENS_S3;` shows STORAGE_AWS_IAM_USER_ARN
-- and STORAGE_AWS_EXTERNAL_ID; put both in the trust policy of &{aws_role_arn}, whose permission
-- policy allows s3:GetObject, s3:GetObjectVersion on arn:aws:s3:::<bucket>/<prefix>/* and
-- s3:ListBucket on arn:aws:s3:::<bucket> (condition s3:prefix = <prefix>/*). No AWS key is ever
-- stored in Snowflake or in this repository.
--
-- The stage, file format, RAW tables and ledger below are exactly the statements
-- movielens_assets/warehouse/snowflake/ renders (a test keeps them in step).


-- 1. Roles, least privilege (USERADMIN creates, SECURITYADMIN grants) -------------------------
--    LOADER    writes RAW only: COPY INTO the RAW tables and the ledger; nothing on DEV.
--    TRANSFORM dbt: reads RAW, owns DEV (models) and SNAPSHOTS (snapshots).
--    REPORTER  reads the models in DEV, nothing else.
use role useradmin;

create role if not exists LOADER
    comment = 'MovieLens: loads S3 files into MOVIELENS.RAW (COPY INTO); nothing else.';
create role if not exists TRANSFORM
    comment = 'MovieLens: dbt; reads RAW, builds DEV and SNAPSHOTS.';
create role if not exists REPORTER
    comment = 'MovieLens: read-only on the models in DEV.';

-- The custom roles roll up to SYSADMIN, so administrators can manage what they create.
use role securityadmin;

grant role LOADER to role sysadmin;
grant role TRANSFORM to role sysadmin;
grant role REPORTER to role sysadmin;


-- 2. Compute and storage containers (SYSADMIN owns them) --------------------------------------
use role sysadmin;

-- The smallest warehouse; it suspends after a minute idle and resumes on the next query.
create warehouse if not exists MOVIELENS_WH
    warehouse_size = xsmall
    auto_suspend = 60
    auto_resume = true
    initially_suspended = true
    comment = 'MovieLens: loads and dbt builds.';

create database if not exists MOVIELENS
    comment = 'MovieLens: RAW (loaded files), DEV (dbt models), SNAPSHOTS (dbt snapshots).';
create schema if not exists MOVIELENS.RAW
    comment = 'Append-only copies of the landed S3 files and the load ledger.';
create schema if not exists MOVIELENS.DEV
    comment = 'dbt models: staging views, dimensions, facts, marts.';
create schema if not exists MOVIELENS.SNAPSHOTS
    comment = 'dbt snapshots (type 2 history).';


-- 3. Storage integration (ACCOUNTADMIN): Snowflake assumes &{aws_role_arn} to read the landing
--    folder and nothing else; SYSADMIN may use it to create the stage.
use role accountadmin;

create storage integration if not exists MOVIELENS_S3
    type = external_stage
    storage_provider = 'S3'
    enabled = true
    storage_aws_role_arn = '&{aws_role_arn}'
    storage_allowed_locations = ('s3://&{landing_bucket}/&{landing_prefix}/');

grant usage on integration MOVIELENS_S3 to role sysadmin;

-- Beside the integration, on the AWS side (not Snowflake's): the landing sensor hears of new
-- files from S3 event notifications through an SQS queue (MOVIELENS_SQS_QUEUE_URL), so its tick
-- cost does not grow with the bucket's history. Once, with the AWS CLI:
--
--   aws sqs create-queue --queue-name movielens-landing \
--     --attributes VisibilityTimeout=300,MessageRetentionPeriod=1209600
--   # queue policy: let the bucket (and only it) send to the queue
--   aws sqs set-queue-attributes --queue-url https://sqs.<region>.amazonaws.com/<account>/movielens-landing \
--     --attributes '{"Policy": "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",
--       \"Principal\":{\"Service\":\"s3.amazonaws.com\"},\"Action\":\"sqs:SendMessage\",
--       \"Resource\":\"arn:aws:sqs:<region>:<account>:movielens-landing\",
--       \"Condition\":{\"ArnEquals\":{\"aws:SourceArn\":\"arn:aws:s3:::&{landing_bucket}\"},
--       \"StringEquals\":{\"aws:SourceAccount\":\"<account>\"}}}]}"}'
--   # bucket notification: objects created under the landing folder go to the queue
--   aws s3api put-bucket-notification-configuration --bucket &{landing_bucket} \
--     --notification-configuration '{"QueueConfigurations": [{"Id": "movielens-landing",
--       "QueueArn": "arn:aws:sqs:<region>:<account>:movielens-landing",
--       "Events": ["s3:ObjectCreated:*"],
--       "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "&{landing_prefix}/"}]}}}]}'
--
-- The Dagster code location's AWS identity needs sqs:ReceiveMessage, sqs:DeleteMessage and
-- sqs:GetQueueAttributes on the queue (and s3:GetObject for the HEAD of each notified file).
-- Keep the visibility timeout well above MOVIELENS_SENSOR_INTERVAL: a message is deleted on the
-- tick after the one that requested its run. A bucket notification already used by Snowpipe's
-- auto-ingest (its own SQS queue) cannot overlap on the same prefix and event type: in that
-- case send the events to an SNS topic with both queues subscribed (the sensor reads SNS-wrapped
-- events too), or use EventBridge.


-- 4. RAW objects (SYSADMIN owns them; LOADER gets usage and insert below) ---------------------
use role sysadmin;
use database MOVIELENS;

-- The GroupLens CSV dialect: comma separated, one header line, fields optionally in double
-- quotes ("" inside), backslashes are data, an empty field is NULL, a wrong column count or
-- invalid UTF-8 is an error rather than silently repaired.
create file format if not exists RAW.MOVIELENS_CSV
    type = csv
    field_delimiter = ','
    skip_header = 1
    field_optionally_enclosed_by = '"'
    escape_unenclosed_field = none
    null_if = ()
    empty_field_as_null = true
    error_on_column_count_mismatch = true
    encoding = 'UTF8'
    replace_invalid_characters = false
    compression = auto;

-- The external stage on the landing folder, authenticated by the integration (no credentials).
-- The loader addresses files as @RAW.MOVIELENS_LANDING/<dataset>/<file>.
create stage if not exists RAW.MOVIELENS_LANDING
    url = 's3://&{landing_bucket}/&{landing_prefix}/'
    storage_integration = MOVIELENS_S3
    file_format = RAW.MOVIELENS_CSV;

-- RAW tables: the CSV columns as GroupLens names them (unquoted, so upper case) plus the S3 key
-- and load time of each row. Never "create or replace" them: that drops COPY's load metadata.
create table if not exists RAW.RAW_MOVIES (
    "MOVIEID" number(38,0),
    "TITLE" varchar,
    "GENRES" varchar,
    "_SOURCE_FILE" varchar,
    "_LOADED_AT" timestamp_ntz
);

create table if not exists RAW.RAW_RATINGS (
    "USERID" number(38,0),
    "MOVIEID" number(38,0),
    "RATING" float,
    "TIMESTAMP" number(38,0),
    "_SOURCE_FILE" varchar,
    "_LOADED_AT" timestamp_ntz
);

create table if not exists RAW.RAW_TAGS (
    "USERID" number(38,0),
    "MOVIEID" number(38,0),
    "TAG" varchar,
    "TIMESTAMP" number(38,0),
    "_SOURCE_FILE" varchar,
    "_LOADED_AT" timestamp_ntz
);

create table if not exists RAW.RAW_LINKS (
    "MOVIEID" number(38,0),
    "IMDBID" varchar,
    "TMDBID" number(38,0),
    "_SOURCE_FILE" varchar,
    "_LOADED_AT" timestamp_ntz
);

create table if not exists RAW.RAW_GENOME_TAGS (
    "TAGID" number(38,0),
    "TAG" varchar,
    "_SOURCE_FILE" varchar,
    "_LOADED_AT" timestamp_ntz
);

create table if not exists RAW.RAW_GENOME_SCORES (
    "MOVIEID" number(38,0),
    "TAGID" number(38,0),
    "RELEVANCE" float,
    "_SOURCE_FILE" varchar,
    "_LOADED_AT" timestamp_ntz
);

-- The project's own load metadata: one row per loaded file, keyed by (S3 key, ETag).
create table if not exists RAW.LOAD_LEDGER (
    "DATASET" varchar not null,
    "S3_KEY" varchar not null,
    "ETAG" varchar not null,
    "SIZE_BYTES" number(38,0) not null,
    "ROWS_LOADED" number(38,0) not null,
    "LOADED_AT" timestamp_ntz not null,
    "RUN_ID" varchar,
    primary key ("S3_KEY", "ETAG")
);

-- The files the last load of each dataset rejected (a bad file under on_error abort or
-- skip_file); each load replaces its dataset's rows. The no_rejected_files check reads it.
create table if not exists RAW.LOAD_REJECTIONS (
    "DATASET" varchar not null,
    "S3_KEY" varchar not null,
    "ETAG" varchar not null,
    "ERROR" varchar not null,
    "LINE" number(38,0),
    "COLUMN_NAME" varchar,
    "ON_ERROR" varchar not null,
    "RUN_ID" varchar,
    "REJECTED_AT" timestamp_ntz not null
);


-- 5. Privileges (SECURITYADMIN) ---------------------------------------------------------------
use role securityadmin;

-- Every role may run queries on the warehouse and see the database.
grant usage on warehouse MOVIELENS_WH to role LOADER;
grant usage on warehouse MOVIELENS_WH to role TRANSFORM;
grant usage on warehouse MOVIELENS_WH to role REPORTER;
grant usage on database MOVIELENS to role LOADER;
grant usage on database MOVIELENS to role TRANSFORM;
grant usage on database MOVIELENS to role REPORTER;

-- LOADER: RAW only. It reads the ledger, appends rows, and may create a RAW table that is
-- missing; it deletes only its rejections; it reads S3 only through the stage (usage on the
-- integration is not needed for COPY, so it is not granted). Nothing on DEV or SNAPSHOTS.
grant usage on schema MOVIELENS.RAW to role LOADER;
grant create table on schema MOVIELENS.RAW to role LOADER;
grant select, insert on all tables in schema MOVIELENS.RAW to role LOADER;
grant select, insert on future tables in schema MOVIELENS.RAW to role LOADER;
grant usage on stage MOVIELENS.RAW.MOVIELENS_LANDING to role LOADER;
grant usage on file format MOVIELENS.RAW.MOVIELENS_CSV to role LOADER;
-- Delete only on LOAD_REJECTIONS: each load replaces its dataset's rows there. RAW tables and
-- the ledger stay append-only (a file breaking a value rule is rolled back, not deleted).
grant delete on table MOVIELENS.RAW.LOAD_REJECTIONS to role LOADER;

-- TRANSFORM: reads RAW, owns DEV and SNAPSHOTS (dbt creates, replaces and drops its relations
-- there, including the temporary tables of incremental models and snapshots).
grant usage on schema MOVIELENS.RAW to role TRANSFORM;
grant select on all tables in schema MOVIELENS.RAW to role TRANSFORM;
grant select on future tables in schema MOVIELENS.RAW to role TRANSFORM;
grant ownership on schema MOVIELENS.DEV to role TRANSFORM copy current grants;
grant ownership on schema MOVIELENS.SNAPSHOTS to role TRANSFORM copy current grants;

-- REPORTER: select on what dbt builds in DEV, now and in the future; nothing in RAW.
grant usage on schema MOVIELENS.DEV to role REPORTER;
grant select on all tables in schema MOVIELENS.DEV to role REPORTER;
grant select on all views in schema MOVIELENS.DEV to role REPORTER;
grant select on future tables in schema MOVIELENS.DEV to role REPORTER;
grant select on future views in schema MOVIELENS.DEV to role REPORTER;


-- 6. Users (USERADMIN creates, SECURITYADMIN grants) -------------------------------------------
--    Each user holds one role, and default_secondary_roles = () keeps a session to that role's
--    privileges. Prefer key-pair authentication for these service users: `alter user DBT set
--    rsa_public_key = '...'; alter user DBT unset password;` and set SNOWFLAKE_PRIVATE_KEY_PATH.
use role useradmin;

create user if not exists DBT
    password = '&{dbt_password}'
    must_change_password = false
    default_role = TRANSFORM
    default_warehouse = MOVIELENS_WH
    default_namespace = MOVIELENS.DEV
    default_secondary_roles = ()
    comment = 'MovieLens: dbt builds (role TRANSFORM).';

create user if not exists MOVIELENS_LOADER
    password = '&{loader_password}'
    must_change_password = false
    default_role = LOADER
    default_warehouse = MOVIELENS_WH
    default_namespace = MOVIELENS.RAW
    default_secondary_roles = ()
    comment = 'MovieLens: the Dagster RAW loader (role LOADER).';

use role securityadmin;

grant role TRANSFORM to user DBT;
grant role LOADER to user MOVIELENS_LOADER;

-- One Dagster deployment runs both the loader and dbt with the same SNOWFLAKE_USER. Give that
-- one user both roles and leave SNOWFLAKE_ROLE unset: the loader's sessions then use LOADER and
-- dbt's sessions TRANSFORM (their defaults), each with only its own role's privileges.
-- grant role TRANSFORM to user MOVIELENS_LOADER;
