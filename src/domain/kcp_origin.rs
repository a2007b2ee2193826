//! What a KCP origin setting may be: the instance's `kcp.api_base` and a merchant's own
//! `kcp_api_base` are both an origin to which KCP's REST paths are appended, and card data goes
//! there.

/// Why a value is not a KCP origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginError {
    NotUrl,
    NoHost,
    /// Neither https nor http to a host the rule allows.
    PlainHttp,
    /// A path, query, fragment or credentials: KCP's paths would be appended after them.
    NotOrigin,
}

/// A parsed origin (`scheme://host[:port]`, lower case) and whether its host is this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KcpOrigin {
    pub origin: String,
    pub loopback: bool,
}

/// `url` as an origin: https, or http when the host is this machine (a sandbox, a local egress
/// proxy) or `http_anywhere` allows it (an instance in test mode pointing at a sandbox on another
/// host: only test cards go there).
pub fn parse(url: &str, http_anywhere: bool) -> Result<KcpOrigin, OriginError> {
    let parsed = url::Url::parse(url.trim()).map_err(|_| OriginError::NotUrl)?;
    let host = parsed.host().ok_or(OriginError::NoHost)?;
    let loopback = match &host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    };
    match parsed.scheme() {
        "https" => {}
        "http" if loopback || http_anywhere => {}
        _ => return Err(OriginError::PlainHttp),
    }
    if !parsed.username().is_empty()
        || parsed.password().is_some()
        || parsed.query().is_some()
        || parsed.fragment().is_some()
        || parsed.path() != "/"
    {
        return Err(OriginError::NotOrigin);
    }
    Ok(KcpOrigin {
        origin: parsed.origin().ascii_serialization(),
        loopback,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_an_origin_only_for_this_host_unless_allowed_anywhere() {
        assert_eq!(
            parse("http://10.0.0.5:9090", false),
            Err(OriginError::PlainHttp)
        );
        assert_eq!(
            parse("http://10.0.0.5:9090/", true).unwrap().origin,
            "http://10.0.0.5:9090"
        );
        assert!(parse("http://127.0.0.1:9090", false).unwrap().loopback);
    }

    #[test]
    fn a_url_without_a_scheme_or_with_a_path_is_not_an_origin() {
        assert_eq!(parse("stg-spl.kcp.co.kr", true), Err(OriginError::NotUrl));
        assert_eq!(
            parse("https://stg-spl.kcp.co.kr/gw", true),
            Err(OriginError::NotOrigin)
        );
    }
}
