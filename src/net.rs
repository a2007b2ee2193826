//! Network addresses from the configuration: lists of addresses and blocks, and the client address
//! of a request that came through trusted reverse proxies.
use std::net::IpAddr;

use ipnet::IpNet;

/// Addresses and CIDR blocks, as written in the configuration: `203.0.113.7, 10.0.0.0/8, ::1`
/// (commas or spaces), or `any`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressList {
    Any,
    Only(Vec<IpNet>),
}

/// An entry of an address list that is neither an address nor a CIDR block.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an IP address or a CIDR block (such as 203.0.113.7 or 10.0.0.0/8)")]
pub struct BadAddress(pub String);

impl AddressList {
    pub fn parse(text: &str) -> Result<Self, BadAddress> {
        let entries: Vec<&str> = text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|e| !e.is_empty())
            .collect();
        if entries.len() == 1 && entries[0].eq_ignore_ascii_case("any") {
            return Ok(Self::Any);
        }
        entries
            .into_iter()
            .map(|e| {
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| BadAddress(e.to_string()))
            })
            .collect::<Result<_, _>>()
            .map(Self::Only)
    }

    /// A list of fixed addresses (the defaults).
    pub fn of(addresses: &[&str]) -> Self {
        Self::parse(&addresses.join(",")).expect("static addresses")
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match self {
            Self::Any => true,
            Self::Only(nets) => nets.iter().any(|n| n.contains(&ip)),
        }
    }
}

/// `::ffff:a.b.c.d` is a.b.c.d: a dual-stack listener reports IPv4 peers that way.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The address a request came from. `peer` is the TCP peer; when it is one of `proxies`, the
/// `X-Forwarded-For` entries are read from the right (the nearest hop first) and the first one
/// that is not a trusted proxy is the client. Entries left of it were written by the client
/// itself and prove nothing. A request from an untrusted peer is its peer, whatever its headers
/// say. None when the peer is unknown or a trusted proxy sent no usable header.
pub fn client_address(
    peer: Option<IpAddr>,
    forwarded_for: &[&str],
    proxies: &AddressList,
) -> Option<IpAddr> {
    let mut client = peer?;
    if !matches!(proxies, AddressList::Only(p) if !p.is_empty()) {
        // `any` would let every client name itself; an empty list trusts nobody.
        return Some(canonical(client));
    }
    let mut hops = forwarded_for
        .iter()
        .rev()
        .flat_map(|h| h.rsplit(','))
        .map(str::trim);
    while proxies.contains(client) {
        client = hops.next()?.parse().ok()?;
    }
    Some(canonical(client))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_list_takes_addresses_and_blocks_separated_by_commas_or_spaces() {
        let list = AddressList::parse(" 203.0.113.7, 10.0.0.0/8 ::1").unwrap();
        assert!(list.contains(ip("203.0.113.7")));
        assert!(list.contains(ip("10.20.30.40")));
        assert!(list.contains(ip("::1")));
        assert!(!list.contains(ip("203.0.113.8")));
        assert!(!list.contains(ip("11.0.0.1")));
    }

    #[test]
    fn an_ipv4_peer_seen_through_a_dual_stack_socket_is_its_ipv4_address() {
        let list = AddressList::parse("203.0.113.7").unwrap();
        assert!(list.contains(ip("::ffff:203.0.113.7")));
    }

    #[test]
    fn any_is_everyone_and_an_empty_list_is_nobody() {
        assert_eq!(AddressList::parse("ANY").unwrap(), AddressList::Any);
        assert!(AddressList::parse("any").unwrap().contains(ip("8.8.8.8")));
        assert!(!AddressList::parse("").unwrap().contains(ip("127.0.0.1")));
    }

    #[test]
    fn a_list_with_something_else_than_an_address_is_refused_with_the_entry_named() {
        let err = AddressList::parse("10.0.0.1, kcp.co.kr").unwrap_err();
        assert!(err.to_string().contains("kcp.co.kr"), "{err}");
        assert!(AddressList::parse("10.0.0.0/33").is_err());
        assert!(AddressList::parse("any, 10.0.0.1").is_err());
    }

    #[test]
    fn the_client_behind_trusted_proxies_is_the_nearest_untrusted_forwarded_address() {
        let proxies = AddressList::parse("10.0.0.0/8").unwrap();
        let peer = Some(ip("10.0.0.5"));
        // The client wrote 1.2.3.4 itself; the proxy appended the address it saw.
        assert_eq!(
            client_address(peer, &["1.2.3.4, 203.0.113.7"], &proxies),
            Some(ip("203.0.113.7"))
        );
        // Two proxies, two headers.
        assert_eq!(
            client_address(peer, &["203.0.113.7", "10.0.0.9"], &proxies),
            Some(ip("203.0.113.7"))
        );
        // A trusted proxy that forwarded nothing usable names no client.
        assert_eq!(client_address(peer, &[], &proxies), None);
        assert_eq!(client_address(peer, &["not-an-ip"], &proxies), None);
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let proxies = AddressList::parse("10.0.0.0/8").unwrap();
        assert_eq!(
            client_address(Some(ip("198.51.100.1")), &["203.0.113.7"], &proxies),
            Some(ip("198.51.100.1"))
        );
        let nobody = AddressList::Only(vec![]);
        assert_eq!(
            client_address(Some(ip("127.0.0.1")), &["203.0.113.7"], &nobody),
            Some(ip("127.0.0.1"))
        );
        assert_eq!(client_address(None, &["203.0.113.7"], &nobody), None);
    }
}
