//! Where a prefix's records and cache entries live: one hash tag per scope, so every
//! command and script touches keys of one cluster hash slot.

use std::sync::Arc;

/// Where one prefix's keys live: `<prefix>:{<scope>}:<key>` for a record, so every key of
/// one scope shares a cluster hash slot.
///
/// A scope never holds a brace (see [`idem::Scope`]), so the hash tag is exactly the
/// scope, and the first `}` ends it: no (scope, key) pair can name another's key.
#[derive(Debug, Clone)]
pub(crate) struct KeyLayout {
    prefix: Arc<str>,
}

impl KeyLayout {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// A `SCAN MATCH` pattern for every record of the prefix (and no cache entry): the
    /// prefix with its glob characters escaped, then `:{*`.
    #[cfg(feature = "test-clock")]
    pub(crate) fn record_pattern(&self) -> String {
        self.pattern(":{*")
    }

    /// A `SCAN MATCH` pattern for every cache entry of the prefix.
    #[cfg(feature = "test-clock")]
    pub(crate) fn cache_pattern(&self) -> String {
        self.pattern(":cache:{*")
    }

    /// The prefix with its glob characters escaped, then `tail`.
    #[cfg(feature = "test-clock")]
    fn pattern(&self, tail: &str) -> String {
        let mut pattern = String::with_capacity(self.prefix.len() + tail.len() + 2);
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push_str(tail);
        pattern
    }

    pub(crate) fn record<'a>(
        &'a self,
        scope: &'a idem::Scope,
        key: &'a idem::Key,
    ) -> RecordName<'a> {
        RecordName {
            prefix: &self.prefix,
            scope,
            key,
        }
    }

    pub(crate) fn cache_entry(&self, scope: &idem::Scope, key: &idem::Key) -> String {
        format!(
            "{}:cache:{{{}}}:{}",
            self.prefix,
            scope.as_str(),
            key.as_str()
        )
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }
}

/// A record's key, `<prefix>:{<scope>}:<key>`: a command writes it straight into its
/// buffer, with no string of its own on the way (every `begin` names one).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordName<'a> {
    prefix: &'a str,
    scope: &'a idem::Scope,
    key: &'a idem::Key,
}

impl std::fmt::Display for RecordName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{{{}}}:{}",
            self.prefix,
            self.scope.as_str(),
            self.key.as_str()
        )
    }
}

impl redis::ToRedisArgs for RecordName<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        out.write_arg_fmt(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(feature = "test-clock")]
    fn scan_patterns_escape_the_prefix() {
        let layout = KeyLayout::new("idem");
        assert_eq!(layout.record_pattern(), "idem:{*");
        assert_eq!(layout.cache_pattern(), "idem:cache:{*");
        assert_eq!(
            KeyLayout::new("a*b?[c]\\").record_pattern(),
            "a\\*b\\?\\[c\\]\\\\:{*"
        );
    }

    #[test]
    fn records_of_one_scope_share_a_hash_tag() {
        let layout = KeyLayout::new("idem");
        let scope = idem::Scope::new("tenant-1|POST /v1/payments").expect("scope");
        let key = idem::Key::new("order:}{-7").expect("key");
        assert_eq!(
            layout.record(&scope, &key).to_string(),
            "idem:{tenant-1|POST /v1/payments}:order:}{-7"
        );
        let mut cmd = redis::cmd("GET");
        cmd.arg(layout.record(&scope, &key));
        let written = match cmd.args_iter().nth(1) {
            Some(redis::Arg::Simple(bytes)) => bytes.to_vec(),
            _ => Vec::new(),
        };
        assert_eq!(written, b"idem:{tenant-1|POST /v1/payments}:order:}{-7");
        assert_eq!(
            layout.cache_entry(&scope, &key),
            "idem:cache:{tenant-1|POST /v1/payments}:order:}{-7"
        );
        assert_eq!(
            layout.record(&idem::Scope::global(), &key).to_string(),
            "idem:{}:order:}{-7"
        );
    }
}
