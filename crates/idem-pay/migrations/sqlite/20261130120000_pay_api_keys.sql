-- API keys (DESIGN §5a): each names one tenant. Only the hex SHA-256 of the secret is
-- stored, and a request's key is found by that hash (the UNIQUE index), never by comparing
-- secrets. A revoked key keeps its row, so `idem keys list` still shows it.
CREATE TABLE pay_api_keys (
    key_id     TEXT PRIMARY KEY NOT NULL,
    tenant     TEXT NOT NULL CHECK (length(tenant) BETWEEN 1 AND 64),
    key_hash   TEXT NOT NULL UNIQUE CHECK (length(key_hash) = 64),
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
