//! Every stored webhook delivery's URL in the form the gateway writes new ones in
//! (`service::webhooks::target_url`: `url::Url`'s serialisation, scheme and host lower-cased,
//! the default port dropped, an empty path made `/`).
//!
//! The order of a payment's events to a receiver and the resend's "no `paid` after `cancelled`"
//! refusal compare stored URLs exactly. Rows written before the gateway normalised them kept the
//! string they were written with, so a merchant URL without a path (`https://hooks.shop.example`)
//! or spelled `HTTPS://Hooks.Shop.Example:443` made two queues of one receiver: a resend of a
//! failed `paid`, retargeted to the normalised URL, found no newer row there and went out after
//! the `cancelled` the receiver already had (review rN, F2).
//!
//! Rewritten once, here, rather than compared in both forms on every resend and claim: the
//! stored form is then one rule for every comparison (the claim's `no_older_pending` too, which
//! let a newer event past a pending older one of another spelling), and a `notice_url` of the
//! same receiver spelled a third way is covered as well, which checking the row's own URL and the
//! merchant's raw setting beside the normalised one would not be. SQL cannot parse a URL (IDN,
//! percent-encoding, dot segments), so the rows are read a page at a time by id and the ones
//! whose form differs are written back in one statement per page: one pass over the table, in the
//! migration's transaction. A statement per row was a round trip per row inside the start-up
//! transaction, and a merchant's whole history can differ (a URL without a path), which made the
//! upgrade's downtime, and the locks it holds, grow with that history (review rP, finding 3).
//! The POSTs go where they went (reqwest parses the URL the same way), and a URL that is not an
//! absolute http(s) one stays as written, as the gateway keeps it.
//!
//! The normalisation is written out here, not called from the gateway: a migration does what it
//! did when it was written, whatever the gateway's rule becomes (tests/api/webhooks.rs checks the
//! two agree today).
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261221_000041_webhook_urls_normalised"
    }
}

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    Id,
    Url,
}

/// Rows read per statement.
const PAGE: u64 = 1000;

/// The URL as the gateway stores it (`service::webhooks::target_url` as of this migration).
pub fn stored_form(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some() => {
            parsed.into()
        }
        _ => url.to_string(),
    }
}

/// One `UPDATE` writing each `(id, url)` of a page: `SET url = CASE WHEN id = ? THEN ? … ELSE url
/// END WHERE id IN (…)`, every id and URL a bound parameter (3 per row, 3,000 a page: within
/// SQLite's 32,766 and PostgreSQL's 65,535). `ELSE url` keeps a row as it is should the two lists
/// ever disagree, rather than writing NULL. `None` when the page has nothing to write.
fn page_update(changed: Vec<(i64, String)>) -> Option<UpdateStatement> {
    let ids: Vec<i64> = changed.iter().map(|(id, _)| *id).collect();
    let mut rows = changed.into_iter();
    let (id, url) = rows.next()?;
    let mut case = Expr::case(Expr::col(WebhookDeliveries::Id).eq(id), url);
    for (id, url) in rows {
        case = case.case(Expr::col(WebhookDeliveries::Id).eq(id), url);
    }
    let case = case.finally(Expr::col(WebhookDeliveries::Url));
    Some(
        Query::update()
            .table(WebhookDeliveries::Table)
            .value(WebhookDeliveries::Url, case)
            .and_where(Expr::col(WebhookDeliveries::Id).is_in(ids))
            .to_owned(),
    )
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let backend = manager.get_database_backend();
        let mut after = 0i64;
        loop {
            let page = Query::select()
                .columns([WebhookDeliveries::Id, WebhookDeliveries::Url])
                .from(WebhookDeliveries::Table)
                .and_where(Expr::col(WebhookDeliveries::Id).gt(after))
                .order_by(WebhookDeliveries::Id, Order::Asc)
                .limit(PAGE)
                .to_owned();
            let rows = db.query_all(backend.build(&page)).await?;
            if rows.is_empty() {
                return Ok(());
            }
            let mut changed = Vec::new();
            for row in rows {
                let id: i64 = row.try_get("", "id")?;
                let url: String = row.try_get("", "url")?;
                after = id;
                let stored = stored_form(&url);
                if stored != url {
                    changed.push((id, stored));
                }
            }
            if let Some(update) = page_update(changed) {
                db.execute(backend.build(&update)).await?;
            }
        }
    }

    /// The rows keep their normalised form: the gateway of before wrote, and reads, it as well.
    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }
}
