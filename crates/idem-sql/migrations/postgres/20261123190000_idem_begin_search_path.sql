-- idem_begin runs with the caller's search_path, the one that found the function: the
-- store's connections set it to the store's schema, so the table it names is the one
-- beside it. A function with its own SET clause makes PostgreSQL save, set and restore
-- the setting on every call, about a tenth of a replay's time on the server.
ALTER FUNCTION idem_begin(TEXT, TEXT, BYTEA, BIGINT, BIGINT, BIGINT) RESET ALL;
