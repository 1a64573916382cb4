//! `Secret`: a string (a password) that never shows in `Debug`, `Display` or errors.

use std::fmt;

/// A secret string: its `Debug` prints `Secret(***)`; only [`Secret::expose`] reveals it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it (the HTTP client).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Replaces the password of a URL's user-info (`scheme://user:pass@host`) with `***`.
pub fn redact_url(url: &str) -> String {
    // Several nodes' URLs, comma-separated: each is redacted.
    let nodes = split_nodes(url);
    if nodes.len() > 1 {
        return nodes
            .into_iter()
            .map(redact_url)
            .collect::<Vec<_>>()
            .join(",");
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => url.to_owned(),
    }
}

/// Splits a list of URLs separated by commas. A comma separates only where a scheme
/// (`letters://`) follows it: commas are legal inside a URL's user-info (a password).
pub(crate) fn split_nodes(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    for (at, _) in text.match_indices(',') {
        let rest = text[at + 1..].trim_start();
        let scheme_len = rest.find("://").filter(|&n| n > 0).filter(|&n| {
            let scheme = &rest[..n];
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        });
        if scheme_len.is_some() {
            parts.push(&text[start..at]);
            start = at + 1;
        }
    }
    parts.push(&text[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_urls_are_redacted() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
        assert_eq!(redact_url("http://u:p@h:5984/x"), "http://u:***@h:5984/x");
        assert_eq!(redact_url("http://h:5984"), "http://h:5984");
        assert_eq!(
            redact_url("http://u:p@a:5984,http://u:p2@b:5984/"),
            "http://u:***@a:5984,http://u:***@b:5984/"
        );
        assert_eq!(
            redact_url("http://admin:s3cret,Pass@127.0.0.1:5984/db"),
            "http://admin:***@127.0.0.1:5984/db"
        );
        assert_eq!(
            split_nodes("http://u:a,b@h1:1, https://h2:2"),
            ["http://u:a,b@h1:1", " https://h2:2"]
        );
    }
}
