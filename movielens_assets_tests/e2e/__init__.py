"""Whole stacks: `movielens dev` (webserver, daemon, loopback S3), the UI in Chromium, the bench."""
