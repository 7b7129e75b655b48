-- The payment service's tables. Money is integer minor units; every balance change is two
-- ledger rows (a debit with a negative delta, a credit with a positive one). Identifiers are
-- ascii_bin: compared byte for byte, so "Order-1" and "order-1" are two orders. Every id
-- lives in its tenant (DESIGN §5a): two tenants may both open `alice` and pay `order-1`.
CREATE TABLE pay_accounts (
    tenant          VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    account_id      VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    balance         BIGINT NOT NULL CHECK (balance >= 0),
    opening_balance BIGINT NOT NULL CHECK (opening_balance >= 0),
    created_at      VARCHAR(40) NOT NULL,
    PRIMARY KEY (tenant, account_id)
) ENGINE = InnoDB;

-- One row per paid order. The order's uniqueness is its idempotency record (idem-sql's
-- idem_records, claimed in the payment's transaction). GET /v1/payments/{order_id} answers
-- from these columns the same body the payment first answered.
CREATE TABLE pay_payments (
    payment_id      VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    tenant          VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    order_id        VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    payer           VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    payee           VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    amount          BIGINT NOT NULL CHECK (amount > 0),
    refunded        BIGINT NOT NULL DEFAULT 0 CHECK (refunded >= 0 AND refunded <= amount),
    created_at      VARCHAR(40) NOT NULL,
    KEY pay_payments_order_id (tenant, order_id)
) ENGINE = InnoDB;

CREATE TABLE pay_refunds (
    payment_id      VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    refund_id       VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    amount          BIGINT NOT NULL CHECK (amount > 0),
    created_at      VARCHAR(40) NOT NULL,
    PRIMARY KEY (payment_id, refund_id)
) ENGINE = InnoDB;

-- No secondary index: every payment writes two rows here, and only audits (full scans)
-- read them.
CREATE TABLE pay_ledger (
    entry_id    BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    movement_id VARCHAR(200) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    tenant      VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    account_id  VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    delta       BIGINT NOT NULL CHECK (delta <> 0),
    created_at  VARCHAR(40) NOT NULL
) ENGINE = InnoDB;
