"""The database: tables, engine and connections, migrations, queries, locks and conflicts.

Also the DB-side writer (the story API) and the push side of the change feed.
"""
