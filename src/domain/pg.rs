//! `pg`: iamport's way to pick one of a merchant's PGs (`html5_inicis`, `kcp`, …) or, after a
//! dot, one of its sites at that PG (`kcp.{site_cd}`). openport has KCP only, one site per
//! merchant. Every call that takes a `pg` and charges, issues a virtual account or issues a billing
//! key reads it here (the browser checkout's `request_pay`, REST `onetime`/`foreign`,
//! `/subscribe/customers`, a schedule's card data, `/vbanks`), so they accept and refuse the same
//! values in the same words. Taking another PG or another site as the merchant's own KCP site
//! would charge, and settle, on a contract other than the one the merchant's code chose, and
//! answer success.
use super::payment::{PG_KCP, PG_KCP_BILLING};

/// Why a `pg` is refused; the text is the merchant's (or, in the checkout, the buyer's) answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PgRefused {
    /// Another PG: its channel, lower case.
    #[error(
        "지원하지 않는 PG사입니다: pg '{0}' (openport는 KCP('kcp', 'kcp_billing')만 지원합니다)."
    )]
    OtherPg(String),
    /// A KCP site other than the merchant's: the one named (upper case), and the merchant's.
    #[error("pg 'kcp.{named}'의 사이트코드가 가맹점의 KCP 사이트코드({own})와 다릅니다.")]
    OtherSite { named: String, own: String },
}

/// The channel a `pg` names (`kcp` or `kcp_billing` in any case, read lower case; `""` for none:
/// the merchant's default channel) and the KCP site code after its dot, upper case as KCP writes
/// site codes. Blank is no `pg`. Whether the site is the merchant's is [`own_site`]'s rule.
pub fn channel(pg: &str) -> Result<(String, Option<String>), PgRefused> {
    let (channel, site) = match pg.trim().split_once('.') {
        Some((channel, site)) => (channel, Some(site.trim())),
        None => (pg.trim(), None),
    };
    // The channel in one spelling, so every rule reads `KCP` as `kcp`.
    let channel = channel.to_ascii_lowercase();
    if !channel.is_empty() && channel != PG_KCP && channel != PG_KCP_BILLING {
        return Err(PgRefused::OtherPg(channel));
    }
    Ok((channel, site.map(str::to_ascii_uppercase)))
}

/// Whether the site a `pg` named ([`channel`]'s second value) is the merchant's `site_cd`; no
/// site is the merchant's.
pub fn own_site(named: Option<&str>, site_cd: &str) -> Result<(), PgRefused> {
    match named {
        Some(named) if named != site_cd => Err(PgRefused::OtherSite {
            named: named.to_string(),
            own: site_cd.to_string(),
        }),
        _ => Ok(()),
    }
}

/// A REST call's `pg` (absent or blank: the merchant's default) names the merchant's own KCP
/// site: `kcp`, `kcp_billing` (in any case), either with `.{site_cd}` of the merchant's site. The
/// channel chooses nothing more over REST: the call itself says whether it charges or issues a
/// key, as at iamport, where `pg` picks the PG contract the call goes to.
pub fn merchants_kcp_site(pg: Option<&str>, site_cd: &str) -> Result<(), PgRefused> {
    let (_, named) = channel(pg.unwrap_or_default())?;
    own_site(named.as_deref(), site_cd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_is_read_in_any_case_with_its_site_upper_case_and_blank_is_none() {
        assert_eq!(
            channel(" KCP.a52q7 "),
            Ok(("kcp".to_string(), Some("A52Q7".to_string())))
        );
        assert_eq!(channel("Kcp_Billing"), Ok(("kcp_billing".into(), None)));
        assert_eq!(channel("  "), Ok((String::new(), None)));
        assert_eq!(
            channel("html5_inicis.MOI0000"),
            Err(PgRefused::OtherPg("html5_inicis".into()))
        );
    }

    #[test]
    fn only_the_merchants_own_kcp_site_passes() {
        for pg in [
            None,
            Some(""),
            Some(" "),
            Some("kcp"),
            Some("KCP"),
            Some("kcp_billing"),
            Some("KCP_BILLING"),
            Some("kcp.T0000"),
            Some("kcp.t0000"),
            Some("kcp_billing.T0000"),
        ] {
            assert_eq!(merchants_kcp_site(pg, "T0000"), Ok(()), "{pg:?}");
        }
        assert_eq!(
            merchants_kcp_site(Some("kcp.A52CY"), "T0000")
                .unwrap_err()
                .to_string(),
            "pg 'kcp.A52CY'의 사이트코드가 가맹점의 KCP 사이트코드(T0000)와 다릅니다."
        );
        assert!(merchants_kcp_site(Some("kcp."), "T0000").is_err());
        for pg in [
            "html5_inicis",
            "tosspayments",
            "nicepay",
            "kcpx",
            "kcp-billing",
        ] {
            assert_eq!(
                merchants_kcp_site(Some(pg), "T0000")
                    .unwrap_err()
                    .to_string(),
                format!(
                    "지원하지 않는 PG사입니다: pg '{pg}' (openport는 KCP('kcp', 'kcp_billing')만 지원합니다)."
                )
            );
        }
    }
}
