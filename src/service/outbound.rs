//! Where openport may send requests that somebody else addressed: webhook targets and a checkout's
//! `confirm_url`.
//!
//! A webhook's URL comes from the merchant, and a `notice_url` or a `confirm_url` can come from a
//! checkout page, that is, from whoever drives the buyer's browser. Without a guard, anyone could make the gateway POST
//! to addresses only it can reach: its own admin port, the database host, a cloud metadata service
//! (server-side request forgery). So, unless the operator allows it, a webhook may only go to a
//! public address. The check sits where the connection is made, not where the URL is stored: a name
//! is checked on the addresses it resolves to *for this connection* (the connection uses exactly
//! those), so a name that resolves to a public address when stored and to 127.0.0.1 when used
//! (DNS rebinding) is still refused. URLs with a literal address never reach a resolver, so
//! [`refuse_private_literal`] checks those before the request is sent; redirects are not followed.
//! Every such client starts from [`guarded_client`].
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether `ip` is an address on the public internet, as opposed to this host, a private network,
/// link-local, shared (carrier-grade NAT), multicast, documentation or otherwise special-purpose
/// ranges: those of IANA's IPv4 and IPv6 Special-Purpose Address Registries that are not globally
/// reachable, and every address that embeds another one or reaches it through a relay (an IPv4
/// address is judged as itself, whichever way it is written).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0                                  // "this network"
        || (a == 100 && (64..128).contains(&b))   // shared address space (RFC 6598)
        || (a == 192 && b == 0 && c == 0)         // IETF protocol assignments
        || (a == 192 && b == 88 && c == 99)       // 6to4 relay anycast (RFC 7526): any relay's
        || (a == 198 && (b == 18 || b == 19))     // benchmarking
        || a >= 240) // reserved
}

/// Only global unicast (`2000::/3`) is routed on the internet; everything outside it is
/// loopback, unspecified, IPv4-mapped or -compatible, NAT64 (`64:ff9b::/96`, and the local-use
/// `64:ff9b:1::/48`: the translator reaches whatever IPv4 address is embedded, private ones
/// included), discard-only (`100::/64`), segment-routing SIDs (`5f00::/16`), unique-local,
/// link-local, site-local, multicast or reserved. Inside it, the special-purpose blocks that are
/// not globally reachable are refused too.
fn is_public_v6(ip: Ipv6Addr) -> bool {
    let [first, second, ..] = ip.segments();
    let global_unicast = (first & 0xe000) == 0x2000;
    // IETF protocol assignments (2001::/23): Teredo (2001::/32, relayed to an IPv4 address it
    // embeds), benchmarking, ORCHID…
    let ietf = first == 0x2001 && second < 0x0200;
    // RFC 3849 (2001:db8::/32) and RFC 9637 (3fff::/20).
    let documentation =
        (first == 0x2001 && second == 0x0db8) || (first == 0x3fff && second < 0x1000);
    // 6to4 (2002::/16): relayed to the IPv4 address it embeds.
    let six_to_four = first == 0x2002;
    global_unicast && !(ietf || documentation || six_to_four)
}

/// Err with the reason when `url` names a literal address that is not public.
pub fn refuse_private_literal(url: &str) -> Result<(), String> {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return Ok(()); // not a URL at all: the request fails on its own
    };
    let host = parsed.host_str().unwrap_or_default();
    // IPv6 literals come bracketed; a name does not parse as an address.
    let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    else {
        return Ok(());
    };
    if is_public(ip) {
        Ok(())
    } else {
        Err(refusal(&ip.to_string()))
    }
}

fn refusal(target: &str) -> String {
    NotPublic(target.to_string()).to_string()
}

/// The refusal of a target whose name resolves to no public address ([`PublicOnly`]), as the
/// error of the connection: [`is_not_public`] finds it in a request's error, so a caller can tell
/// this refusal, which retrying will not change, from a network error.
#[derive(Debug)]
pub struct NotPublic(String);

impl std::fmt::Display for NotPublic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "refused: {} is not a public address (webhooks and confirm_url calls to private \
             networks are off; see OPENPORT_WEBHOOKS__PRIVATE_TARGETS)",
            self.0
        )
    }
}

impl std::error::Error for NotPublic {}

/// Whether a request failed because [`PublicOnly`] refused its target (anywhere in the error's
/// chain of causes).
pub fn is_not_public(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<NotPublic>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// How long a connection to a merchant's server stays pooled for the next webhook or
/// `confirm_url` call. A server closes a keep-alive connection that stayed idle for its own
/// timeout (Node 5 s, Apache 5 s, gunicorn 2 s), and a request sent on it just as it closes fails
/// after it was sent ("connection closed before message completed"): a failed delivery try, or a
/// confirmation that stops the payment. reqwest keeps idle connections 90 s; past this much idle
/// time a call opens a new connection instead, before any such server has closed it.
pub const POOL_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// A client for URLs somebody else chose: no redirects (a redirected POST turns into a GET, a 3xx
/// is not the answer asked for, and a redirect could lead past the address check), idle
/// connections reused for [`POOL_IDLE_TIMEOUT`] only and, unless private targets are allowed
/// (`config::WebhookSettings::private_targets`), no proxy and names resolved to public addresses
/// only. Callers add their timeouts and still call [`refuse_private_literal`] before sending.
pub fn guarded_client(private_targets: bool) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT);
    if private_targets {
        builder
    } else {
        builder
            .no_proxy()
            .dns_resolver(std::sync::Arc::new(PublicOnly))
    }
}

/// The two [`guarded_client`]s of one caller (private targets allowed or not), each built once on
/// first use: a client holds a connection pool, so it is made once per process, not per request.
pub struct GuardedClients {
    open: std::sync::OnceLock<reqwest::Client>,
    public_only: std::sync::OnceLock<reqwest::Client>,
}

impl GuardedClients {
    pub const fn new() -> Self {
        Self {
            open: std::sync::OnceLock::new(),
            public_only: std::sync::OnceLock::new(),
        }
    }

    /// The client for `private_targets`, `finish` adding the caller's timeouts and user agent.
    pub fn get(
        &self,
        private_targets: bool,
        finish: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
    ) -> &reqwest::Client {
        let cell = if private_targets {
            &self.open
        } else {
            &self.public_only
        };
        cell.get_or_init(|| {
            finish(guarded_client(private_targets))
                .build()
                .expect("HTTP client with static settings")
        })
    }
}

impl Default for GuardedClients {
    fn default() -> Self {
        Self::new()
    }
}

/// A resolver that keeps only public addresses and fails when none is left, so the connection
/// can only be made to an address that passed [`is_public`].
#[derive(Debug, Default, Clone, Copy)]
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = found.into_iter().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(Box::new(NotPublic(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
pub(crate) mod closing_server;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn this_host_private_networks_and_reserved_ranges_are_not_public() {
        for ip in [
            "127.0.0.1",
            "127.8.9.10",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.0.10",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            // Special-purpose ranges (IANA registries) and addresses that reach an embedded IPv4
            // address through a relay or translator, whatever that address is.
            "192.88.99.1",
            "192.88.99.255",
            "64:ff9b::808:808",
            "64:ff9b:1::a00:1",
            "2002:a00:1::1",
            "2002:808:808::1",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:2::1",
            "2001:10::1",
            "2001:1ff:ffff::1",
            "3fff::1",
            "3fff:fff:ffff::1",
            "100::1",
            "100:0:0:1::1",
            "5f00::1",
            "::8.8.8.8",
            "::a00:1",
            "4000::1",
            "::2",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip} counted as public");
        }
    }

    #[test]
    fn internet_addresses_are_public() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "203.0.114.1",
            "192.88.100.1",
            "192.88.98.255",
            "2606:4700::1111",
            "2001:200::1",
            "2001:4860:4860::8888",
            "2a00:1450:4001::1",
            "3fff:1000::1",
            "2620:4f:8000::1",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip} counted as private");
        }
    }

    #[test]
    fn a_literal_private_address_in_a_url_is_refused_and_names_are_left_to_the_resolver() {
        assert!(refuse_private_literal("http://127.0.0.1:8080/hook").is_err());
        assert!(refuse_private_literal("http://[::1]/hook").is_err());
        assert!(refuse_private_literal("http://169.254.169.254/latest/meta-data").is_err());
        assert!(refuse_private_literal("http://[2002:a9fe:a9fe::]/latest/meta-data").is_err());
        assert!(refuse_private_literal("http://[64:ff9b::a9fe:a9fe]/").is_err());
        assert!(refuse_private_literal("https://8.8.8.8/hook").is_ok());
        assert!(refuse_private_literal("https://merchant.example/hook").is_ok());
    }

    /// A merchant's server closes a keep-alive connection idle for its timeout (Node and Apache
    /// 5 s, gunicorn 2 s), here 1.1 s; a webhook sent on the connection as it closed was a failed
    /// try (reqwest reused idle connections for 90 s). Calls in a row still share a connection.
    #[tokio::test]
    async fn a_call_after_a_pause_goes_on_a_new_connection_not_one_the_server_may_be_closing() {
        let server = closing_server::start(Duration::from_millis(1_100), "{}").await;
        let clients = GuardedClients::new();
        let client = clients.get(true, |b| b.timeout(Duration::from_secs(5)));
        let url = format!("{}/hook", server.base);
        let post = || async {
            let answer = client.post(&url).body("{}").send().await?;
            answer.error_for_status()?.bytes().await
        };

        post().await.expect("the first call");
        post().await.expect("a call right after it");
        assert_eq!(server.connections(), 1, "calls in a row share a connection");
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        post()
            .await
            .expect("a call after a pause longer than the server's keep-alive");

        assert_eq!((server.answered(), server.dropped()), (3, 0));
        assert_eq!(server.connections(), 2);
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_that_only_resolves_to_this_host() {
        let name: Name = "localhost".parse().unwrap();
        let Err(e) = PublicOnly.resolve(name).await else {
            panic!("localhost resolved to a public address");
        };
        assert!(e.to_string().contains("not a public address"), "{e}");
    }
}
