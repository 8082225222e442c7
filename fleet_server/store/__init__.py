"""The store: every SQL statement and all psycopg driver code, one module per table family.

Functions take the unit of work's `Session` (or a `Database` when they manage their own
connection) and return plain records (frozen dataclasses), never ORM rows; the domain above
decides what the results mean.
"""
