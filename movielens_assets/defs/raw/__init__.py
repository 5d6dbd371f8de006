"""Stage 2, ``raw``: S3 files loaded into the warehouse's RAW schema once each; checks on RAW."""
