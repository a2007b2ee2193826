//! The KCP client's connections, through a merchant's connector as the services get it.
use super::*;
use crate::pg::{CardSecret, KeyInRequest, PgError};
use crate::service::outbound::closing_server;

const CERT: &str = include_str!("../../../tests/fixtures/kcp/splCert.pem");
const KEY: &str = include_str!("../../../tests/fixtures/kcp/splPrikeyPKCS8.pem");

/// spec/kcp.md §2.4, for [`key_in`]'s order and amount.
const APPROVED: &str = r#"{"order_no":"TEST1234567890","partcanc_yn":"Y","res_msg":"정상처리","card_mny":"1000",
 "card_no":"123456******0000","quota":"00","amount":"1000","pay_method":"PACA","res_cd":"0000",
 "app_time":"20230327113214","tno":"23336986737476","card_bin_type_01":"0","card_bin_type_02":"0",
 "card_cd":"CCLG","card_name":"신한카드","app_no":"82050813"}"#;

/// A test-mode merchant with the KCP test certificate, sealed as the store keeps it.
fn merchant(secrets: &MasterKey) -> merchant::Model {
    merchant::Model {
        id: 1,
        imp_code: "imp00000001".into(),
        name: "keep-alive".into(),
        imp_key: "keep_alive_key".into(),
        imp_secret_hash: String::new(),
        site_cd: "T0000".into(),
        kcp_certificate_pem: CERT.into(),
        kcp_private_key_sealed: secrets.seal(KEY.as_bytes()),
        kcp_passphrase_sealed: secrets.seal(b"changeit"),
        test_mode: true,
        created_at: 0,
        webhook_url: None,
        webhook_content_type: "json".into(),
        webhook_secret_sealed: None,
        webhook_previous_secret_sealed: None,
        webhook_previous_secret_until: None,
        kcp_group_id: None,
        kcp_api_base: None,
    }
}

fn key_in() -> KeyInRequest {
    KeyInRequest {
        order_no: "TEST1234567890".into(),
        amount: 1000,
        good_name: "테스트 상품".into(),
        buyer_name: "홍길동".into(),
        buyer_email: "test@kcp.co.kr".into(),
        buyer_tel: "01000000000".into(),
        card: CardSecret {
            number: "1234567800000000".into(),
            expiry_yymm: "2607".into(),
            birth: Some("951010".into()),
            pwd_2digit: Some("00".into()),
        },
        quota: 0,
        customer_ip: "".into(),
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
        pg.approve_key_in(&key_in())
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
