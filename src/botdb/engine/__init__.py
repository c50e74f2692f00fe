"""The engine: connection pool, raw SQL API, transactions, retries and SQL translation."""
