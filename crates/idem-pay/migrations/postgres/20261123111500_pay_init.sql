-- The payment service's tables. Money is integer minor units; every balance change is two
-- ledger rows (a debit with a negative delta, a credit with a positive one). Every id lives
-- in its tenant (DESIGN §5a): two tenants may both open `alice` and both pay `order-1`.
CREATE TABLE pay_accounts (
    tenant          TEXT NOT NULL,
    account_id      TEXT NOT NULL,
    balance         BIGINT NOT NULL CHECK (balance >= 0),
    opening_balance BIGINT NOT NULL CHECK (opening_balance >= 0),
    created_at      TEXT NOT NULL,
    PRIMARY KEY (tenant, account_id)
);

-- One row per paid order. The order's uniqueness is its idempotency record (idem-sql's
-- idem_records, claimed in the payment's transaction). GET /v1/payments/{order_id} answers
-- from these columns the same body the payment first answered.
CREATE TABLE pay_payments (
    payment_id      TEXT PRIMARY KEY,
    tenant          TEXT NOT NULL,
    order_id        TEXT NOT NULL,
    payer           TEXT NOT NULL,
    payee           TEXT NOT NULL,
    amount          BIGINT NOT NULL CHECK (amount > 0),
    refunded        BIGINT NOT NULL DEFAULT 0 CHECK (refunded >= 0 AND refunded <= amount),
    created_at      TEXT NOT NULL
);
CREATE INDEX pay_payments_order_id ON pay_payments (tenant, order_id);

CREATE TABLE pay_refunds (
    payment_id      TEXT NOT NULL,
    refund_id       TEXT NOT NULL,
    amount          BIGINT NOT NULL CHECK (amount > 0),
    created_at      TEXT NOT NULL,
    PRIMARY KEY (payment_id, refund_id)
);

-- No secondary index: every payment writes two rows here, and only audits (full scans)
-- read them.
CREATE TABLE pay_ledger (
    entry_id    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    movement_id TEXT NOT NULL,
    tenant      TEXT NOT NULL,
    account_id  TEXT NOT NULL,
    delta       BIGINT NOT NULL CHECK (delta <> 0),
    created_at  TEXT NOT NULL
);
