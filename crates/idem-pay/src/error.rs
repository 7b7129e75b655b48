//! The crate's one error enum: every way a call can fail, each with the HTTP answer it becomes
//! (see [`crate::problem`], the one place that turns an [`Error`] into a response).

/// Why a call of the payment service did not succeed.
///
/// Variants are listed in the order the service checks them: the request itself, then the
/// records it names, then the business rules, then the infrastructure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A field is missing, of the wrong type, out of range or unknown (400 `invalid_request`).
    #[error("invalid request: {field}: {detail}")]
    InvalidRequest {
        /// The JSON member, path segment or header at fault.
        field: String,
        /// What is wrong with it, for a human.
        detail: String,
    },
    /// The body is not declared as JSON (415 `unsupported_media_type`).
    #[error("the request body must be sent as application/json")]
    UnsupportedMediaType,
    /// The body is over the size limit (413 `payload_too_large`).
    #[error("the request body is over {limit_bytes} bytes")]
    PayloadTooLarge {
        /// The limit that was passed.
        limit_bytes: usize,
    },
    /// The body did not arrive whole before its deadline (408 `request_timeout`); nothing
    /// was read or changed.
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    /// The request carries no live API key of a tenant (401 `unauthorized`, with
    /// `WWW-Authenticate: Bearer`): missing, malformed, unknown or revoked — never which.
    #[error("a valid API key is required: Authorization: Bearer <key>")]
    Unauthorized,
    /// No route has this path (404 `not_found`).
    #[error("no such route")]
    RouteNotFound,
    /// The route exists but not with this method (405 `method_not_allowed`).
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// The account does not exist (404 `account_not_found`).
    #[error("account {account_id} does not exist")]
    AccountNotFound {
        /// The account asked for.
        account_id: String,
    },
    /// No payment has this order id (404 `payment_not_found`).
    #[error("no payment has order id {order_id}")]
    PaymentNotFound {
        /// The order asked for.
        order_id: String,
    },
    /// No API key has this id (`idem keys revoke`; never an HTTP answer).
    #[error("no API key has id {key_id:?}")]
    KeyNotFound {
        /// The key id asked for.
        key_id: String,
    },
    /// The account exists with another opening balance (422 `account_conflict`).
    #[error("account {account_id} already exists with another balance")]
    AccountConflict {
        /// The account id reused.
        account_id: String,
    },
    /// The order was paid with other parameters (422 `order_id_conflict`).
    #[error("order {order_id} was already paid with other parameters ({differs} differs)")]
    OrderIdConflict {
        /// The order id reused.
        order_id: String,
        /// The first parameter found different, in the order payer, payee, amount.
        differs: &'static str,
    },
    /// The refund id was used for another amount (422 `refund_id_conflict`).
    #[error("refund {refund_id} was already made with another amount")]
    RefundIdConflict {
        /// The refund id reused.
        refund_id: String,
    },
    /// The refunds would add up to more than the payment (422 `refund_exceeds_payment`).
    #[error("refund of {amount} exceeds the {refundable} still refundable")]
    RefundExceedsPayment {
        /// The refund asked for.
        amount: i64,
        /// What is left to refund.
        refundable: i64,
    },
    /// The paying side lacks the funds; not final (402 `insufficient_funds`).
    #[error("account {account_id} lacks the funds")]
    InsufficientFunds {
        /// The account that would go below zero.
        account_id: String,
    },
    /// The database failed; transient when [`Error::transient`] says so (503, else 500).
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The idempotency store failed; transient when [`Error::transient`] says so (503,
    /// else 500).
    #[error("idempotency store: {0}")]
    Store(#[from] idem::StoreError),
    /// The store could not be opened or the schema brought up to date at start.
    #[error("opening the database: {0}")]
    Open(#[from] idem_sql::Error),
    /// The database did not answer within the service's limit on one call
    /// (8 s, retries included): a dead network path or a stuck server (503,
    /// transient; nothing uncommitted was kept).
    #[error("the database did not answer within {0:?}")]
    DatabaseTimeout(std::time::Duration),
    /// A stored row does not read back as written (500).
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// A task of the service failed outside the database (500).
    #[error("internal: {0}")]
    Internal(String),
    /// The database URL names no supported backend.
    #[error("unsupported database URL {0:?}: use sqlite:, postgres:// or mysql://")]
    UnsupportedDatabase(String),
}

impl Error {
    /// Whether running the same transaction again may succeed: serialization failures,
    /// deadlocks, lock timeouts, a busy SQLite file, a lost connection. A transaction that
    /// failed this way kept nothing, and a retry of a payment whose commit was lost finds
    /// the order's record and replays, so retrying is always safe.
    pub fn transient(&self) -> bool {
        match self {
            Error::Database(error) => idem_sql::is_transient(error),
            Error::Store(error) => error.is_transient(),
            Error::DatabaseTimeout(_) => true,
            _ => false,
        }
    }

    /// A 400 `invalid_request` naming `field`.
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::InvalidRequest {
            field: field.into(),
            detail: detail.into(),
        }
    }
}

impl idem_sql::Transient for Error {
    fn is_transient(&self) -> bool {
        self.transient()
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
