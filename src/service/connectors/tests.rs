//! The KCP client's connections, through a merchant's connector as the services get it.
use super::*;
use crate::pg::kcp::{APPROVED, CERT, KEY};
use crate::pg::{KeyInRequest, PgError};
use crate::service::outbound::closing_server;

/// A test-mode merchant with the KCP test certificate, sealed as the store keeps it.
fn merchant(secrets: &MasterKey) -> merchant::Model {
    merchant::Model {
        name: "keep-alive".into(),
        kcp_certificate_pem: CERT.into(),
        kcp_private_key_sealed: secrets.seal(KEY.as_bytes()),
        kcp_passphrase_sealed: secrets.seal(b"changeit"),
        ..merchant::Model::sample(1)
    }
}

/// Under load, 2 charges in 60 went out on a pooled connection just as the embedded sandbox
/// closed it for idling its keep-alive: "connection closed before message completed", an
/// unknown outcome for a charge KCP never saw. Here the server keeps an idle connection 200 ms
/// and the connector 100 ms: a charge after a 400 ms pause goes on a new connection and is
/// approved, while charges in a row still share one.
#[tokio::test]
async fn a_charge_after_a_pause_longer_than_kcps_keep_alive_goes_on_a_new_connection_and_is_approved(
) {
    let kcp = closing_server::start(Duration::from_millis(200), APPROVED).await;
    let connectors = Connectors::new(
        KcpUrls::with_base(&kcp.base),
        Duration::from_secs(5),
        Duration::from_millis(100),
        true,
    );
    let secrets = MasterKey::from_config(None).expect("the test-mode key");
    let pg = connectors
        .for_merchant(&merchant(&secrets), &secrets)
        .expect("the merchant's KCP");
    let charge = || async {
        pg.approve_key_in(&KeyInRequest::sample())
            .await
            .map(|approval| approval.tno)
    };

    assert_eq!(charge().await.expect("the first charge"), "23336986737476");
    assert_eq!(
        charge().await.expect("a charge right after it"),
        "23336986737476"
    );
    assert_eq!(kcp.connections(), 1, "charges in a row share a connection");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let after_a_pause: Result<String, PgError> = charge().await;

    assert_eq!(
        after_a_pause.expect("a charge after the server's keep-alive ran out"),
        "23336986737476"
    );
    assert_eq!((kcp.answered(), kcp.dropped()), (3, 0));
    assert_eq!(kcp.connections(), 2);
}
