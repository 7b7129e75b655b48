//! The baselines' SQL per engine: the tables, the bare transaction's statements, and the
//! one statement that does a whole payment.
//!
//! The one statement writes what `idem serve`'s fresh payment writes, less the
//! idempotency record: both accounts locked in id order, the money moved only when both
//! exist and the payer has the funds, two ledger rows and the payment row, autocommit.
//! PostgreSQL says it as a data-modifying CTE. MariaDB and SQLite have no writing CTE;
//! there the statement is the payment row's `INSERT`, and a trigger on `payments` moves
//! the money and writes the ledger in that same statement (one prepared statement, one
//! round trip, one commit, as on PostgreSQL), refusing the whole statement when an
//! account is missing or short.

use idem_sql_admin::Engine;

/// The statements of one engine.
pub(super) struct Dialect {
    /// Tables (and triggers), in order; run unprepared, as trigger bodies need.
    pub(super) schema: &'static [&'static str],
    pub(super) insert_account: &'static str,
    pub(super) begin: &'static str,
    pub(super) lock: &'static str,
    pub(super) debit: &'static str,
    pub(super) credit: &'static str,
    pub(super) ledger: &'static str,
    /// The whole payment in one statement; binds payer, payee, amount, payment id.
    pub(super) pay: &'static str,
    /// Whether `pay` returns the count of accounts moved (PostgreSQL) instead of failing
    /// when it moves nothing (the triggers' refusal).
    pub(super) pay_returns_moved: bool,
}

/// Raised by the triggers when an account is missing or short of funds.
pub(super) const REFUSED: &str = "payment refused: an account is missing or short of funds";

pub(super) fn dialect(engine: Engine) -> Dialect {
    match engine {
        Engine::Postgres => Dialect {
            schema: &[
                "CREATE TABLE accounts (id TEXT PRIMARY KEY, balance BIGINT NOT NULL CHECK (balance >= 0))",
                "CREATE TABLE ledger (id BIGSERIAL PRIMARY KEY, payment_id TEXT NOT NULL, account_id TEXT NOT NULL, delta BIGINT NOT NULL)",
                "CREATE TABLE payments (payment_id TEXT PRIMARY KEY, payer TEXT NOT NULL, payee TEXT NOT NULL, amount BIGINT NOT NULL CHECK (amount > 0))",
            ],
            insert_account: "INSERT INTO accounts (id, balance) VALUES ($1, $2)",
            begin: "BEGIN",
            lock: "SELECT id, balance FROM accounts WHERE id IN ($1, $2) ORDER BY id FOR UPDATE",
            debit: "UPDATE accounts SET balance = balance - $1 WHERE id = $2",
            credit: "UPDATE accounts SET balance = balance + $1 WHERE id = $2",
            ledger: "INSERT INTO ledger (payment_id, account_id, delta) VALUES ($1, $2, $3), ($4, $5, $6)",
            // `locked` takes both row locks in id order before `moved` touches them (an
            // UPDATE of an IN list may visit the rows in any order); `ok` is one row only
            // when both accounts exist and the payer can pay, and every write hangs off it.
            pay: "WITH locked AS (SELECT id, balance FROM accounts WHERE id IN ($1, $2) ORDER BY id FOR UPDATE), \
                  ok AS (SELECT 1 FROM locked HAVING COUNT(*) = 2 AND bool_and(id <> $1 OR balance >= $3)), \
                  moved AS (UPDATE accounts AS a SET balance = a.balance + CASE WHEN a.id = $1 THEN -$3 ELSE $3 END \
                  FROM locked, ok WHERE a.id = locked.id \
                  RETURNING a.id, CASE WHEN a.id = $1 THEN -$3 ELSE $3 END AS delta), \
                  recorded AS (INSERT INTO ledger (payment_id, account_id, delta) SELECT $4, id, delta FROM moved), \
                  paid AS (INSERT INTO payments (payment_id, payer, payee, amount) SELECT $4, $1, $2, $3 FROM ok) \
                  SELECT COUNT(*) FROM moved",
            pay_returns_moved: true,
        },
        Engine::MySql => Dialect {
            schema: &[
                "CREATE TABLE accounts (id VARCHAR(128) PRIMARY KEY, balance BIGINT NOT NULL) ENGINE=InnoDB",
                "CREATE TABLE ledger (id BIGINT AUTO_INCREMENT PRIMARY KEY, payment_id VARCHAR(128) NOT NULL, account_id VARCHAR(128) NOT NULL, delta BIGINT NOT NULL) ENGINE=InnoDB",
                "CREATE TABLE payments (payment_id VARCHAR(128) PRIMARY KEY, payer VARCHAR(128) NOT NULL, payee VARCHAR(128) NOT NULL, amount BIGINT NOT NULL) ENGINE=InnoDB",
                // One UPDATE of both rows takes their locks in primary-key order (as the
                // transaction's locking read does); it changes both only when the payer
                // has the funds, and anything less fails the statement whole.
                "CREATE TRIGGER payments_move AFTER INSERT ON payments FOR EACH ROW BEGIN \
                   UPDATE accounts SET balance = balance + CASE WHEN id = NEW.payer THEN -NEW.amount ELSE NEW.amount END \
                     WHERE id IN (NEW.payer, NEW.payee) AND (id <> NEW.payer OR balance >= NEW.amount); \
                   IF ROW_COUNT() <> 2 THEN \
                     SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'payment refused: an account is missing or short of funds'; \
                   END IF; \
                   INSERT INTO ledger (payment_id, account_id, delta) VALUES (NEW.payment_id, NEW.payer, -NEW.amount), (NEW.payment_id, NEW.payee, NEW.amount); \
                 END",
            ],
            insert_account: "INSERT INTO accounts (id, balance) VALUES (?, ?)",
            begin: "BEGIN",
            lock: "SELECT id, balance FROM accounts WHERE id IN (?, ?) ORDER BY id FOR UPDATE",
            debit: "UPDATE accounts SET balance = balance - ? WHERE id = ?",
            credit: "UPDATE accounts SET balance = balance + ? WHERE id = ?",
            ledger: "INSERT INTO ledger (payment_id, account_id, delta) VALUES (?, ?, ?), (?, ?, ?)",
            pay: "INSERT INTO payments (payer, payee, amount, payment_id) VALUES (?, ?, ?, ?)",
            pay_returns_moved: false,
        },
        Engine::Sqlite => Dialect {
            schema: &[
                "CREATE TABLE accounts (id TEXT PRIMARY KEY, balance INTEGER NOT NULL CHECK (balance >= 0))",
                "CREATE TABLE ledger (id INTEGER PRIMARY KEY AUTOINCREMENT, payment_id TEXT NOT NULL, account_id TEXT NOT NULL, delta INTEGER NOT NULL)",
                "CREATE TABLE payments (payment_id TEXT PRIMARY KEY, payer TEXT NOT NULL, payee TEXT NOT NULL, amount INTEGER NOT NULL CHECK (amount > 0))",
                // The statement holds SQLite's one write lock from its start, so the check
                // and the writes after it see the same balances.
                "CREATE TRIGGER payments_move AFTER INSERT ON payments FOR EACH ROW BEGIN \
                   SELECT RAISE(ABORT, 'payment refused: an account is missing or short of funds') \
                     WHERE (SELECT COUNT(*) FROM accounts WHERE id IN (NEW.payer, NEW.payee) AND (id <> NEW.payer OR balance >= NEW.amount)) <> 2; \
                   UPDATE accounts SET balance = balance + CASE WHEN id = NEW.payer THEN -NEW.amount ELSE NEW.amount END \
                     WHERE id IN (NEW.payer, NEW.payee); \
                   INSERT INTO ledger (payment_id, account_id, delta) VALUES (NEW.payment_id, NEW.payer, -NEW.amount), (NEW.payment_id, NEW.payee, NEW.amount); \
                 END",
            ],
            insert_account: "INSERT INTO accounts (id, balance) VALUES (?, ?)",
            // SQLite has no row locks: the write lock, taken up front, is the lock on both accounts.
            begin: "BEGIN IMMEDIATE",
            lock: "SELECT id, balance FROM accounts WHERE id IN (?, ?) ORDER BY id",
            debit: "UPDATE accounts SET balance = balance - ? WHERE id = ?",
            credit: "UPDATE accounts SET balance = balance + ? WHERE id = ?",
            ledger: "INSERT INTO ledger (payment_id, account_id, delta) VALUES (?, ?, ?), (?, ?, ?)",
            pay: "INSERT INTO payments (payer, payee, amount, payment_id) VALUES (?, ?, ?, ?)",
            pay_returns_moved: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_refuse_with_the_same_words() {
        for engine in [Engine::MySql, Engine::Sqlite] {
            let d = dialect(engine);
            assert!(d.schema.iter().any(|s| s.contains(REFUSED)), "{engine:?}");
            assert!(!d.pay_returns_moved);
        }
        assert!(dialect(Engine::Postgres).pay_returns_moved);
    }
}
