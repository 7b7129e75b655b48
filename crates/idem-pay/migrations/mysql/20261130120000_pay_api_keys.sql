-- API keys (DESIGN §5a): each names one tenant. Only the hex SHA-256 of the secret is
-- stored, and a request's key is found by that hash (the UNIQUE index), never by comparing
-- secrets. A revoked key keeps its row, so `idem keys list` still shows it. Identifiers are
-- ascii_bin: compared byte for byte, so "Acme" and "acme" are two tenants.
CREATE TABLE pay_api_keys (
    key_id     VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    tenant     VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    key_hash   CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    created_at VARCHAR(40) NOT NULL,
    revoked_at VARCHAR(40) NULL,
    UNIQUE KEY pay_api_keys_key_hash (key_hash)
) ENGINE = InnoDB;
