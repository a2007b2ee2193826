//! A merchant's allow-list of the origins a mobile buyer may be redirected to when the window
//! ends (`m_redirect_url`, or the page itself without one).
//!
//! The request that opens a mobile window names its `m_redirect_url` and `page_url` freely: the
//! SDK posts it from the buyer's browser with nothing but the merchant's public imp_code. The
//! window's `Ret_URL` answer then sends whichever browser posts it there with a 303 from
//! openport's own host, an open redirect for phishing under a trusted name, unless the merchant
//! lists where its buyers may go. An empty list keeps iamport's behaviour (any http(s) URL).
//! Only the list counts: the page's own origin is no exception, since the request names it too.

/// The most origins a merchant may list: a shop has a few hosts (www, m., an app's web view),
/// and every mobile checkout start and `Ret_URL` answer reads the list.
pub const MAX_ORIGINS: usize = 50;

/// Why a configured entry is not an origin, each naming the entry in its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    #[error(
        "'{0}'은(는) http(s) 주소가 아닙니다: scheme://host[:port] 형태의 origin이어야 합니다."
    )]
    NotWeb(String),
    #[error("'{0}'에 경로, 쿼리, 프래그먼트나 사용자 정보가 있습니다: scheme://host[:port] 형태의 origin만 받습니다.")]
    NotOrigin(String),
    #[error("origins는 최대 {max}개까지 등록할 수 있습니다. ({0}개)", max = MAX_ORIGINS)]
    TooMany(usize),
}

/// The origin of `url` (`scheme://host[:port]`: host lower-cased, IDN as punycode, the scheme's
/// default port dropped) when it is an http(s) URL with a host; None otherwise.
pub fn origin_of(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url.trim()).ok()?;
    (matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some())
        .then(|| parsed.origin().ascii_serialization())
}

/// One configured entry as the origin stored: an http(s) URL with a host and nothing after it
/// but an optional `/` (no path, query, fragment or credentials, which an origin cannot match
/// and an operator would expect to), normalised as [`origin_of`] normalises a target.
pub fn entry(raw: &str) -> Result<String, OriginError> {
    let raw = raw.trim();
    let parsed = url::Url::parse(raw).map_err(|_| OriginError::NotWeb(raw.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(OriginError::NotWeb(raw.to_string()));
    }
    // `Url` drops an empty `?` or `#`; the raw text still shows one.
    if !parsed.username().is_empty()
        || parsed.password().is_some()
        || parsed.path() != "/"
        || raw.contains(['?', '#'])
    {
        return Err(OriginError::NotOrigin(raw.to_string()));
    }
    Ok(parsed.origin().ascii_serialization())
}

/// The list to store from what an operator gave: every entry an origin ([`entry`]), at most
/// [`MAX_ORIGINS`], each once, in the order given. Blank entries are refused as not an origin
/// rather than dropped: a list meant to hold one origin would otherwise turn the check off.
pub fn list(raw: &[String]) -> Result<Vec<String>, OriginError> {
    if raw.len() > MAX_ORIGINS {
        return Err(OriginError::TooMany(raw.len()));
    }
    let mut origins: Vec<String> = Vec::with_capacity(raw.len());
    for r in raw {
        let o = entry(r)?;
        if !origins.contains(&o) {
            origins.push(o);
        }
    }
    Ok(origins)
}

/// The list as stored in `merchants.redirect_origins` (a JSON array of strings; NULL: none).
pub fn to_column(origins: &[String]) -> Option<String> {
    (!origins.is_empty()).then(|| serde_json::Value::from(origins.to_vec()).to_string())
}

/// The list a `merchants.redirect_origins` value holds, each entry read as an operator's entry
/// is ([`entry`]: normalised, so `["https://Shop.Example"]` written by hand matches the targets,
/// which are compared normalised). A value that does not read as a list of origins (not JSON, not
/// a list of strings, an entry that is not an origin) is [`Allowed::Unreadable`]: it allows
/// nothing, not everything as the empty list does, since a mistaken edit must not open the
/// redirect again; and it is told apart from "no list", so that the operator API and the CLI say
/// every redirect is refused instead of showing it as `[]`, "any URL" (review rN, F3).
pub fn from_column(column: Option<&str>) -> Allowed {
    let Some(text) = column else {
        return Allowed::Any;
    };
    match serde_json::from_str::<Vec<String>>(text) {
        Ok(list) if list.is_empty() => Allowed::Any,
        Ok(list) => list
            .iter()
            .map(|e| entry(e))
            .collect::<Result<Vec<_>, _>>()
            .map_or(Allowed::Unreadable, Allowed::Only),
        Err(_) => Allowed::Unreadable,
    }
}

/// Where a merchant's mobile buyers may be redirected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    /// No list set: any http(s) URL, as at iamport.
    Any,
    /// Only URLs of these origins.
    Only(Vec<String>),
    /// A stored value that is not a list of origins (written by hand): no URL at all, until the
    /// operator sets the list again or clears it.
    Unreadable,
}

impl Allowed {
    /// Whether `url` may be redirected to: its origin ([`origin_of`]) is listed.
    pub fn allows(&self, url: &str) -> bool {
        match self {
            Allowed::Any => true,
            Allowed::Only(list) => origin_of(url).is_some_and(|o| list.contains(&o)),
            Allowed::Unreadable => false,
        }
    }

    /// The origins listed (none for [`Allowed::Any`] and [`Allowed::Unreadable`]).
    pub fn origins(&self) -> &[String] {
        match self {
            Allowed::Any | Allowed::Unreadable => &[],
            Allowed::Only(list) => list,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_normalised_to_its_origin_with_the_host_lower_cased_and_the_default_port_dropped()
    {
        assert_eq!(
            entry("HTTPS://Shop.Example:443").unwrap(),
            "https://shop.example"
        );
        assert_eq!(
            entry(" https://shop.example/ ").unwrap(),
            "https://shop.example"
        );
        assert_eq!(
            entry("http://shop.example:80").unwrap(),
            "http://shop.example"
        );
        assert_eq!(
            entry("https://shop.example:8443").unwrap(),
            "https://shop.example:8443"
        );
    }

    #[test]
    fn an_entry_with_a_path_query_fragment_or_credentials_or_no_http_is_refused() {
        for bad in [
            "https://shop.example/done",
            "https://shop.example?x=1",
            "https://shop.example/?",
            "https://shop.example#top",
            "https://user@shop.example",
            "ftp://shop.example",
            "javascript:alert(1)",
            "shop.example",
            "",
        ] {
            assert!(entry(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_list_keeps_each_origin_once_and_refuses_more_than_fifty() {
        let given = vec![
            "https://a.example".to_string(),
            "https://A.example/".to_string(),
            "https://b.example".to_string(),
        ];
        assert_eq!(
            list(&given).unwrap(),
            vec!["https://a.example", "https://b.example"]
        );
        let many: Vec<String> = (0..=MAX_ORIGINS)
            .map(|i| format!("https://s{i}.example"))
            .collect();
        assert_eq!(list(&many), Err(OriginError::TooMany(MAX_ORIGINS + 1)));
        assert!(list(&many[..MAX_ORIGINS]).is_ok());
    }

    #[test]
    fn a_target_is_allowed_only_when_its_exact_origin_is_listed() {
        let allowed = from_column(to_column(&["https://shop.example".into()]).as_deref());
        assert!(allowed.allows("https://SHOP.example:443/done?x=1#y"));
        assert!(!allowed.allows("http://shop.example/done"));
        assert!(!allowed.allows("https://shop.example:8443/done"));
        assert!(!allowed.allows("https://shop.example.evil.example/done"));
        assert!(!allowed.allows("https://evil.example/https://shop.example"));
        assert!(!allowed.allows("not a url"));
    }

    #[test]
    fn no_list_allows_everything_and_an_unreadable_one_nothing() {
        assert!(from_column(None).allows("https://anywhere.example/x"));
        assert!(from_column(Some("[]")).allows("https://anywhere.example/x"));
        assert!(!from_column(Some("https://shop.example")).allows("https://shop.example/x"));
        assert_eq!(to_column(&[]), None);
    }

    /// Review rN, F3: a value written by hand that is not a list of origins was read as a list
    /// naming none, which the operator API and the CLI showed as "no list, any URL" while every
    /// redirect was refused. It is told apart now; entries written by hand in another case are
    /// read as the origins they spell.
    #[test]
    fn a_stored_value_that_is_not_a_list_of_origins_is_unreadable_not_an_empty_list() {
        for stored in [
            "https://shop.example",
            "",
            "[\"https://shop.example\", \"https://shop.example/done\"]",
            "[\"https://shop.example\", \" \"]",
            "[1]",
            "{\"origins\": []}",
        ] {
            let allowed = from_column(Some(stored));
            assert_eq!(allowed, Allowed::Unreadable, "{stored}");
            assert!(!allowed.allows("https://shop.example/x"), "{stored}");
            assert!(allowed.origins().is_empty(), "{stored}");
        }
        let by_hand = from_column(Some("[\"https://Shop.Example:443/\"]"));
        assert_eq!(by_hand, Allowed::Only(vec!["https://shop.example".into()]));
        assert!(by_hand.allows("https://shop.example/done"));
    }

    /// Review rN, F4: the tricks that make a URL look like a listed origin to a string compare
    /// while it goes elsewhere, or spell a listed one another way. Both sides are compared as
    /// `url::Url` parses them; a later change to a prefix or string compare fails here.
    #[test]
    fn the_tricks_that_disguise_a_target_are_judged_by_where_it_goes() {
        let allowed = from_column(to_column(&["https://shop.test".into()]).as_deref());
        for (target, goes_to_the_shop) in [
            // Userinfo: the host is what follows the `@`.
            ("https://shop.test@evil.example/", false),
            ("https://shop.test:443@evil.example/", false),
            // A backslash ends the host in a special scheme (WHATWG): evil.example's path.
            ("https://evil.example\\@shop.test/", false),
            ("https://evil.example\\.shop.test/", false),
            // Case and default ports: the same origin.
            ("HTTPS://SHOP.TEST:443/done", true),
            ("https://Shop.Test:443/done", true),
            ("https://shop.test:8443/done", false),
            ("http://shop.test:443/done", false),
            // An IDN look-alike (Cyrillic `ѕ`) is its own punycode host.
            ("https://ѕhop.test/done", false),
            // A trailing dot is another host string: refused (fails closed).
            ("https://shop.test./done", false),
            // No scheme-relative or schemeless target reaches the check unresolved.
            ("//evil.example/x", false),
            ("https:evil.example", false),
            ("https:shop.test", true),
            ("javascript://shop.test/%0aalert(1)", false),
        ] {
            assert_eq!(allowed.allows(target), goes_to_the_shop, "{target}");
        }
        // The IDN look-alike is punycode as an origin, never the listed ASCII name.
        let look_alike = origin_of("https://ѕhop.test/").unwrap();
        assert!(look_alike.starts_with("https://xn--"), "{look_alike}");
        // A listed IDN is stored as punycode and matches its Unicode spelling.
        let idn = from_column(to_column(&[entry("https://bücher.test").unwrap()]).as_deref());
        assert!(idn.allows("https://BÜCHER.test/x"));
        assert!(idn.allows("https://xn--bcher-kva.test/x"));
    }
}
