//! Lists a registry pages through: `_catalog` and `tags/list`, with the distribution spec's
//! `n` (how many) and `last` (after which), and a `Link` to the next page.

use std::collections::BTreeMap;

/// The most names one page holds, whatever `n` asks: a page is built whole in memory.
pub(crate) const MAX_PAGE: usize = 10_000;

/// The page `_catalog` gives without `n`, as Debian's `docker-registry` does.
pub(crate) const CATALOG_PAGE: usize = 100;

/// One page of a sorted list.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Page<'a> {
    pub names: Vec<&'a str>,
    /// The query of the next page (`n=…&last=…`), when there is more.
    pub next: Option<String>,
}

/// Why a query is refused (400 `PAGINATION_NUMBER_INVALID`).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BadQuery(pub String);

/// The `n` and `last` of a query string; `n` is `None` when absent.
pub(crate) fn query(query: Option<&str>) -> Result<(Option<usize>, Option<String>), BadQuery> {
    let mut n = None;
    let mut last = None;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value);
        match key {
            "n" => {
                n = Some(value.parse::<usize>().map_err(|_| {
                    BadQuery(format!("n `{value}` is not a whole number of entries"))
                })?)
            }
            "last" => last = Some(value),
            _ => {}
        }
    }
    Ok((n, last))
}

/// The names of `all` after `last`, at most `n` (`default` without one, never more than
/// [`MAX_PAGE`]), and the query of the next page when the list goes on.
pub(crate) fn page<'a, V>(
    all: &'a BTreeMap<String, V>,
    n: Option<usize>,
    last: Option<&str>,
    default: Option<usize>,
) -> Page<'a> {
    use std::ops::Bound;
    let limit = n.or(default).unwrap_or(usize::MAX).min(MAX_PAGE);
    let after = match last {
        Some(last) => (Bound::Excluded(last.to_owned()), Bound::Unbounded),
        None => (Bound::Unbounded, Bound::Unbounded),
    };
    let mut rest = all.range::<String, _>(after).map(|(k, _)| k.as_str());
    let names: Vec<&str> = rest.by_ref().take(limit).collect();
    let next = match (names.last(), rest.next()) {
        (Some(end), Some(_)) => Some(format!("n={limit}&last={}", percent_encode(end))),
        _ => None,
    };
    Page { names, next }
}

/// `Link: <PATH?QUERY>; rel="next"`.
pub(crate) fn link(path: &str, next: &str) -> String {
    format!("<{path}?{next}>; rel=\"next\"")
}

fn percent_encode(text: &str) -> String {
    // Everything but RFC 3986's unreserved characters.
    const ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(text, ESCAPED).to_string()
}

/// A query value as sent (`%2B` for `+`, `+` for a space), decoded.
pub(crate) fn percent_decode(text: &str) -> String {
    let spaced = text.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_last_to_the_end_and_see_each_name_once() {
        let all: BTreeMap<String, ()> = (0..25).map(|i| (format!("t{i:02}"), ())).collect();
        let mut seen = Vec::new();
        let mut last: Option<String> = None;
        loop {
            let page = page(&all, Some(10), last.as_deref(), None);
            seen.extend(page.names.iter().map(|n| n.to_string()));
            match page.next {
                Some(next) => {
                    let (n, after) = query(Some(&next)).expect("valid");
                    assert_eq!(n, Some(10));
                    last = after;
                }
                None => break,
            }
        }
        assert_eq!(seen, all.keys().cloned().collect::<Vec<_>>());
        assert_eq!(page(&all, None, None, None).names.len(), 25);
        assert_eq!(page(&all, None, None, Some(CATALOG_PAGE)).next, None);
        assert_eq!(page(&all, Some(0), None, None).names.len(), 0);
        assert_eq!(page(&all, Some(5), Some("t24"), None).names.len(), 0);
        assert_eq!(page(&all, Some(5), Some("a"), None).names[0], "t00");
        assert!(query(Some("n=-1")).is_err());
        assert!(query(Some("n=ten")).expect_err("words").0.contains("`ten`"));
        assert_eq!(
            query(Some("last=a%2Fb&n=2")).expect("valid"),
            (Some(2), Some("a/b".into()))
        );
        assert_eq!(percent_encode("a/b:c"), "a%2Fb%3Ac");
    }
}
