"""Seed 003's test page at /test: TomcatA / TomcatB showing the session id and creation time."""
