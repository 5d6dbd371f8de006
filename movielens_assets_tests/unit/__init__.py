"""Seconds: pure functions, SQL rendering, settings. No server, no warehouse file."""
