//! The state file (docs/sandbox.md §7): a sandbox restarted on the file of an earlier one knows
//! what that one approved, issued and was paid, as KCP does across its own restarts.
mod common;

use std::time::Duration;

use common::*;
use kcp_sandbox::test_cards::{SAMSUNG_CHECK, SHINHAN_CREDIT};
use kcp_sandbox::test_points::BENEPIA_01;
use kcp_sandbox::{codes, Sandbox, SandboxConfig, TransactionState, STATE_FORMAT_VERSION};
use serde_json::{json, Value};

/// Everything a gateway may come back for after a restart, made on `h`: a partly cancelled card
/// approval, a batch key charged once and another deleted, a point payment, a virtual account
/// with part of its deposit. Returns (card tno, key, deleted key, point tno, account tno).
async fn busy_day(h: &Harness) -> (String, String, String, String, String) {
    let card = h.approved("A1", "10000").await;
    assert_eq!(
        h.partial_cancel(&card, "3000", "10000").await["res_cd"],
        "0000"
    );
    let key = h.batch_key(SHINHAN_CREDIT).await;
    assert_eq!(
        h.pay(&batch_pay(SITE, &key, "B1", "5000")).await["res_cd"],
        "0000"
    );
    let deleted = h.batch_key(SAMSUNG_CHECK).await;
    assert_eq!(
        h.pay(&batch_delete(SITE, GROUP, &deleted)).await["res_cd"],
        "0000"
    );
    let points = h.pay(&point_pay(&BENEPIA_01, "P1", "30000")).await;
    assert_eq!(points["res_cd"], "0000", "{points}");
    let account = h.pay(&vbank_issue("VA1")).await;
    assert_eq!(account["res_cd"], "0000", "{account}");
    let account = account["tno"].as_str().unwrap().to_owned();
    h.sandbox.set_notify_url("*", "http://127.0.0.1:9/unused");
    h.sandbox.deposit(&account, 3000, "00").unwrap();
    (
        card,
        key,
        deleted,
        points["tno"].as_str().unwrap().to_owned(),
        account,
    )
}

#[tokio::test]
async fn a_state_written_and_read_back_gives_the_same_ledger_keys_and_balances() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kcp-sandbox.json");
    let before = spawn_keeping(&path).await;
    busy_day(&before).await;
    before.sandbox.persist_now().unwrap();

    let after = spawn_keeping(&path).await;

    assert_eq!(after.sandbox.ledger(), before.sandbox.ledger());
    assert_eq!(after.sandbox.batch_keys(), before.sandbox.batch_keys());
    assert_eq!(after.sandbox.point_balance(BENEPIA_01.id), Some(70_000));
    let noti_ids = |s: &Sandbox| -> Vec<(String, i64)> {
        s.notifications()
            .into_iter()
            .map(|n| (n.noti_id, n.total))
            .collect()
    };
    assert_eq!(noti_ids(&after.sandbox), noti_ids(&before.sandbox));
    assert_eq!(after.sandbox.state_file(), Some(path.as_path()));

    // The noti_id sequence is in the file: a sandbox restarted in a new process (whose
    // process-wide count starts again at 0) goes on from it and never gives an id twice.
    let kept: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let last_given = before
        .sandbox
        .notifications()
        .iter()
        .map(|n| n.noti_id[n.noti_id.len() - 6..].parse::<u64>().unwrap())
        .max()
        .expect("the busy day deposited");
    assert!(
        kept["notifications"]["sequence"].as_u64().unwrap() >= last_given,
        "{}",
        kept["notifications"]
    );
}

#[tokio::test]
async fn a_restarted_sandbox_cancels_charges_and_takes_deposits_for_what_the_last_one_did() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kcp-sandbox.json");
    let before = spawn_keeping(&path).await;
    let (card, key, deleted, points, account) = busy_day(&before).await;
    let first_noti_id = before.sandbox.notifications()[0].noti_id.clone();
    before.sandbox.persist_now().unwrap();

    let after = spawn_keeping(&path).await;

    let cancelled = after.partial_cancel(&card, "2000", "7000").await;
    assert_eq!(
        (
            &cancelled["res_cd"],
            &cancelled["rem_mny"],
            &cancelled["mod_pacn_seq_no"]
        ),
        (&json!("0000"), &json!("5000"), &json!("2")),
        "{cancelled}"
    );
    let charged = after.pay(&batch_pay(SITE, &key, "B2", "5000")).await;
    assert_eq!(charged["res_cd"], "0000", "{charged}");
    let refused = after.pay(&batch_pay(SITE, &deleted, "B3", "5000")).await;
    assert_eq!(refused["res_cd"], codes::BATCH_KEY_DELETED, "{refused}");
    let again = after.pay(&batch_pay(SITE, &key, "B1", "5000")).await;
    assert_eq!(
        again["res_cd"],
        codes::DUPLICATE_ORDER,
        "B1 stands: {again}"
    );
    assert_eq!(
        after.cancel(&points, "STSC", json!({})).await["res_cd"],
        "0000"
    );
    assert_eq!(after.sandbox.point_balance(BENEPIA_01.id), Some(100_000));

    after
        .sandbox
        .set_notify_url("*", "http://127.0.0.1:9/unused");
    let rest = after.sandbox.deposit(&account, 4000, "00").unwrap();
    assert_eq!(rest.total, 7000);
    assert_ne!(rest.noti_id, first_noti_id, "a noti_id is never reused");
    let paid = after.inquire_as("PAVC", &account).await;
    assert_eq!(paid["stat_va_cd"], "STSR", "{paid}");
    assert!(after
        .sandbox
        .ledger()
        .iter()
        .any(|e| e.tno == account && e.state == TransactionState::Approved));
}

#[tokio::test]
async fn the_state_file_holds_masked_cards_and_key_digests_never_a_card_key_or_password() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kcp-sandbox.json");
    let h = spawn_keeping(&path).await;
    let (_, key, deleted, _, _) = busy_day(&h).await;
    h.sandbox.persist_now().unwrap();

    let text = std::fs::read_to_string(&path).unwrap();

    for secret in [
        SHINHAN_CREDIT,
        SAMSUNG_CHECK,
        key.as_str(),
        deleted.as_str(),
        BENEPIA_01.password,
    ] {
        assert!(!text.contains(secret), "the state file holds {secret}");
    }
    assert!(text.contains("411111******1111"));
    for field in ["card_expiry", "card_taxno", "card_pwd", "pt_pwd"] {
        assert!(!text.contains(field), "{field} in the state file");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "readable by its owner only: {mode:o}");
    }
}

/// The plain SHA-256 of a batch key, as a state file of version 1 kept it.
fn sha256(batch_key: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(batch_key.as_bytes()))
}

/// A key is `yyMMdd` and 10 random digits: a plain digest of it in the file could be reversed by
/// trying them all. The file keeps a digest keyed with a pepper that lives in another file.
#[tokio::test]
async fn the_state_file_alone_holds_no_key_digest_that_trying_every_key_could_reverse() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kcp-sandbox.json");
    let key_file = dir.path().join("kcp-sandbox.key");
    let h = spawn_keeping(&path).await;
    let (_, key, deleted, _, _) = busy_day(&h).await;
    h.sandbox.persist_now().unwrap();
    drop(h);

    let text = std::fs::read_to_string(&path).unwrap();

    for batch_key in [&key, &deleted] {
        assert!(
            !text.contains(&sha256(batch_key)),
            "the key's plain SHA-256 is in the file"
        );
    }
    assert!(!text.contains("key_sha256"), "{text}");
    let pepper = std::fs::read_to_string(&key_file).expect("the pepper is beside the state file");
    assert!(
        !text.contains(pepper.trim()),
        "the pepper is not in the state file"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "readable by its owner only: {mode:o}");
    }
    std::fs::rename(&key_file, dir.path().join("elsewhere.key")).unwrap();
    let refused = Sandbox::new(SandboxConfig {
        state_file: Some(path.clone()),
        ..SandboxConfig::default()
    })
    .err()
    .map(|e| format!("{e:#}"))
    .expect("without its pepper no key in the file could be found");
    assert!(
        refused.contains(&key_file.display().to_string()),
        "{refused}"
    );
}

/// A state file written before the pepper (version 1: plain SHA-256 per key, no key file) loads,
/// its keys charge and stay deleted, and each key presented again is kept by its HMAC from then on.
#[tokio::test]
async fn a_version_1_state_file_still_loads_and_its_keys_are_rekeyed_when_next_presented() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kcp-sandbox.json");
    let key_file = dir.path().join("kcp-sandbox.key");
    let before = spawn_keeping(&path).await;
    let (_, key, deleted, _, _) = busy_day(&before).await;
    let third = before.batch_key(SHINHAN_CREDIT).await;
    before.sandbox.persist_now().unwrap();
    let keys = before.sandbox.batch_keys();
    drop(before);
    // The same books as version 1 wrote them.
    let mut state: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    state["version"] = json!(1);
    let kept = state["batch_keys"].as_array_mut().unwrap();
    for (kept, batch_key) in kept.iter_mut().zip([&key, &deleted, &third]) {
        let kept = kept.as_object_mut().unwrap();
        assert!(kept.remove("key_hmac").is_some(), "{kept:?}");
        kept.insert("key_sha256".into(), json!(sha256(batch_key)));
    }
    std::fs::write(&path, state.to_string()).unwrap();
    std::fs::remove_file(&key_file).unwrap();

    let after = spawn_keeping(&path).await;

    assert_eq!(after.sandbox.batch_keys(), keys);
    assert!(
        after.sandbox.batch_key(&third).is_some(),
        "found by its old digest"
    );
    let charged = after.pay(&batch_pay(SITE, &key, "B2", "5000")).await;
    assert_eq!(charged["res_cd"], "0000", "{charged}");
    let refused = after.pay(&batch_pay(SITE, &deleted, "B3", "5000")).await;
    assert_eq!(refused["res_cd"], codes::BATCH_KEY_DELETED, "{refused}");
    after.sandbox.persist_now().unwrap();
    drop(after);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(&sha256(&key)), "re-keyed once presented");
    assert!(!text.contains(&sha256(&deleted)), "re-keyed once presented");
    assert!(
        text.contains(&sha256(&third)),
        "not presented: kept as it was"
    );
    let state: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(state["version"], STATE_FORMAT_VERSION);

    let again = spawn_keeping(&path).await;
    let charged = again.pay(&batch_pay(SITE, &key, "B4", "5000")).await;
    assert_eq!(charged["res_cd"], "0000", "{charged}");
    let charged = again.pay(&batch_pay(SITE, &third, "B5", "5000")).await;
    assert_eq!(charged["res_cd"], "0000", "{charged}");
    assert_eq!(again.sandbox.batch_keys(), keys);
}

#[tokio::test]
async fn changes_reach_the_file_by_themselves_within_moments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kcp-sandbox.json");
    let h = spawn_keeping(&path).await;
    assert!(path.exists(), "an empty state is written at start");

    let tno = h.approved("A1", "1000").await;

    for _ in 0..100 {
        let text = std::fs::read_to_string(&path).unwrap();
        let state: Value = serde_json::from_str(&text).unwrap();
        if state["ledger"][0]["tno"] == tno.as_str() {
            assert_eq!(state["version"], STATE_FORMAT_VERSION);
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the approval never reached the state file");
}

#[tokio::test]
async fn a_corrupt_state_file_is_refused_with_its_path_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kcp-sandbox.json");
    std::fs::write(
        &path,
        b"{\"format\": \"openport-kcp-sandbox-state\", \"vers",
    )
    .unwrap();

    let refused = Sandbox::new(SandboxConfig {
        state_file: Some(path.clone()),
        ..SandboxConfig::default()
    })
    .err()
    .expect("a truncated file is refused");

    let message = format!("{refused:#}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"{\"format\": \"openport-kcp-sandbox-state\", \"vers",
        "left as it was"
    );
}

#[tokio::test]
async fn a_state_file_of_another_version_or_kind_is_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kcp-sandbox.json");
    drop(spawn_keeping(&path).await);
    let mut state: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let open = |path: &std::path::Path| {
        Sandbox::new(SandboxConfig {
            state_file: Some(path.to_path_buf()),
            ..SandboxConfig::default()
        })
        .err()
        .map(|e| format!("{e:#}"))
    };

    state["version"] = json!(STATE_FORMAT_VERSION + 1);
    std::fs::write(&path, state.to_string()).unwrap();
    let newer = open(&path).expect("another version is refused");
    assert!(newer.contains(&path.display().to_string()), "{newer}");
    assert!(
        newer.contains(&format!("version {}", STATE_FORMAT_VERSION + 1)),
        "{newer}"
    );

    let other = dir.path().join("other.json");
    std::fs::write(&other, r#"{"format": "something-else", "version": 1}"#).unwrap();
    let foreign = open(&other).expect("another kind of file is refused");
    assert!(foreign.contains("something-else"), "{foreign}");
    assert!(foreign.contains(&other.display().to_string()), "{foreign}");
}

#[tokio::test]
async fn without_a_state_file_nothing_is_written() {
    let listing = || -> Vec<std::path::PathBuf> {
        let mut names: Vec<_> = std::fs::read_dir(".")
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        names.sort();
        names
    };
    let before = listing();
    let h = spawn().await;

    busy_day(&h).await;
    h.sandbox.persist_now().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert_eq!(h.sandbox.state_file(), None);
    assert_eq!(listing(), before);
}

#[tokio::test]
async fn a_restarted_sandbox_resumes_sending_the_notifications_not_acknowledged_yet() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    // A merchant that refuses notifications until told to take them.
    let taking = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicUsize::new(0));
    let (t, r) = (taking.clone(), received.clone());
    let receiver = axum::Router::new().route(
        "/noti",
        axum::routing::post(move || {
            let (t, r) = (t.clone(), r.clone());
            async move {
                r.fetch_add(1, Ordering::SeqCst);
                if t.load(Ordering::SeqCst) {
                    r#"<html><body><form><input type="hidden" name="result" value="0000"></form></body></html>"#
                } else {
                    "busy"
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/noti", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kcp-sandbox.json");
    let before = spawn_keeping(&path).await;
    let account = before.pay(&vbank_issue("VA1")).await;
    let account = account["tno"].as_str().unwrap().to_owned();
    before.sandbox.set_notify_url("*", &url);
    let sent = before.sandbox.deposit(&account, 3000, "00").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while received.load(Ordering::SeqCst) == 0 {
        assert!(std::time::Instant::now() < deadline, "never sent");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    before.sandbox.persist_now().unwrap();

    taking.store(true, Ordering::SeqCst);
    let after = spawn_keeping(&path).await;

    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let kept = after.sandbox.notifications();
        let record = kept.iter().find(|n| n.noti_id == sent.noti_id).unwrap();
        if record.acknowledged {
            assert!(record.attempts >= 2, "{record:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not sent again after the restart: {record:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A sandbox run without a state file (the load harness's, a test-mode gateway's on PostgreSQL)
/// forgets its ledger when it stops, while the gateway's database remembers every trade; the next
/// run must not name one of them again, or the gateway sees one trade answered for two payments.
#[tokio::test]
async fn a_sandbox_run_in_memory_never_gives_a_tno_an_earlier_run_gave() {
    let mut given = Vec::new();
    for run in 0..3 {
        let h = spawn().await;
        for i in 0..40 {
            given.push(h.approved(&format!("MEM{run}X{i}"), "1000").await);
        }
    }

    assert!(given
        .iter()
        .all(|tno| tno.len() == 14 && tno.bytes().all(|b| b.is_ascii_digit())));
    assert!(
        given.windows(2).all(|pair| pair[0] < pair[1]),
        "each tno is past every one given before it: {given:?}"
    );
}
