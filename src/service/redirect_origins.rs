//! A merchant's allow-list of redirect origins (domain/redirect_origins.rs): set by the operator
//! (`PUT /admin/merchants/{id}/redirect-origins`, `openport merchant redirect-origins`), checked
//! when a mobile window opens and again when its `Ret_URL` answer would redirect.
//!
//! Both checks read the merchant row from the database, not the instance's merchant cache, so a
//! list set on one instance applies on every other one from its next checkout or `Ret_URL` post
//! (the change is still announced, for the cached copies other code reads).
use serde::Serialize;
use utoipa::ToSchema;

use super::{Gateway, ServiceError, ServiceResult};
use crate::domain::redirect_origins::{self, origin_of, Allowed};
use crate::store::entity::merchant;
use crate::store::{merchants, Db};

/// A merchant's redirect allow-list, as the operator API answers it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RedirectOrigins {
    pub merchant_id: i64,
    /// `scheme://host[:port]`, normalised; empty: no list, a mobile buyer may be redirected to
    /// any http(s) URL the checkout request names (iamport's behaviour). Null when the stored
    /// value cannot be read (`unreadable`).
    pub origins: Option<Vec<String>>,
    /// True when the stored value is not a list of origins (written to the database by hand):
    /// every mobile checkout and redirect of the merchant is refused until the list is set again
    /// or cleared (`PUT`). Shown as `[]`, it read as "no list, any URL" (review rN, F3).
    pub unreadable: bool,
}

impl RedirectOrigins {
    pub fn of(m: &merchant::Model) -> Self {
        let allowed = allowed(m);
        let unreadable = allowed == Allowed::Unreadable;
        Self {
            merchant_id: m.id,
            origins: (!unreadable).then(|| allowed.origins().to_vec()),
            unreadable,
        }
    }
}

/// Where merchant `m`'s mobile buyers may be redirected.
pub fn allowed(m: &merchant::Model) -> Allowed {
    redirect_origins::from_column(m.redirect_origins.as_deref())
}

/// Why merchant `m` refuses to open a mobile window whose buyer would be redirected to `target`
/// at its end (`from_page`: `target` is the page itself, there being no `m_redirect_url`); None
/// when its list allows it. The message names the origin, for the merchant's developer.
pub fn refused_target(m: &merchant::Model, target: &str, from_page: bool) -> Option<String> {
    let allowed = allowed(m);
    if allowed.allows(target) {
        return None;
    }
    if allowed == Allowed::Unreadable {
        tracing::warn!(
            merchant_id = m.id,
            "mobile checkout refused: the merchant's stored redirect origins cannot be read; set them again or clear them"
        );
        return Some(
            "가맹점의 리다이렉트 origin 설정을 읽을 수 없어 모바일 결제를 시작할 수 없습니다. 운영자가 설정을 다시 저장하거나 지워야 합니다.".into(),
        );
    }
    let origin = origin_of(target).unwrap_or_default();
    Some(if from_page {
        format!(
            "m_redirect_url이 없어 결제 후 돌아갈 결제 페이지(page_url)의 origin {origin}이(가) \
             가맹점이 허용한 리다이렉트 origin이 아닙니다."
        )
    } else {
        format!(
            "m_redirect_url의 origin {origin}이(가) 가맹점이 허용한 리다이렉트 origin이 아닙니다."
        )
    })
}

/// Replaces merchant `merchant_id`'s list with `origins` (validated and normalised; empty: no
/// list) and announces the change. Works on the database alone, for the CLI.
pub async fn set(db: &Db, merchant_id: i64, origins: &[String]) -> ServiceResult<merchant::Model> {
    let origins =
        redirect_origins::list(origins).map_err(|e| ServiceError::BadRequest(e.to_string()))?;
    let column = redirect_origins::to_column(&origins);
    if merchants::set_redirect_origins(&db.write, merchant_id, column).await? == 0 {
        return Err(not_found());
    }
    let m = merchants::by_id(&db.write, merchant_id)
        .await?
        .ok_or_else(not_found)?;
    super::merchants::announce(db, merchant_id).await;
    Ok(m)
}

/// [`set`] for the merchant `imp_code` (`openport merchant redirect-origins`).
pub async fn set_by_imp_code(
    db: &Db,
    imp_code: &str,
    origins: &[String],
) -> ServiceResult<merchant::Model> {
    let m = merchants::by_imp_code(&db.write, imp_code)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no merchant with imp_code {imp_code}")))?;
    set(db, m.id, origins).await
}

fn not_found() -> ServiceError {
    ServiceError::NotFound("가맹점을 찾을 수 없습니다.".into())
}

impl Gateway {
    pub async fn redirect_origins(&self, merchant_id: i64) -> ServiceResult<RedirectOrigins> {
        let m = merchants::by_id(&self.db.read, merchant_id)
            .await?
            .ok_or_else(not_found)?;
        Ok(RedirectOrigins::of(&m))
    }

    pub async fn set_redirect_origins(
        &self,
        merchant_id: i64,
        origins: &[String],
    ) -> ServiceResult<RedirectOrigins> {
        let m = set(&self.db, merchant_id, origins).await?;
        // SQLite has no announcement: this instance's cached copy goes now.
        self.forget_merchant(Some(merchant_id));
        Ok(RedirectOrigins::of(&m))
    }

    /// Whether a mobile window of merchant `merchant_id` that ended may still send its buyer to
    /// `target`: the list may have changed since the window opened (an origin the operator took
    /// out, a list set after an attacker opened windows). Read from the database, so every
    /// instance answers by the current list. A failed read withholds the redirect: the buyer is
    /// told the payment ended, and the merchant's page learns the outcome from its server.
    pub async fn redirect_still_allowed(&self, merchant_id: i64, target: &str) -> bool {
        match merchants::by_id(&self.db.read, merchant_id).await {
            Ok(Some(m)) => {
                let allowed = allowed(&m);
                let ok = allowed.allows(target);
                if allowed == Allowed::Unreadable {
                    tracing::warn!(
                        merchant_id,
                        "mobile redirect withheld: the merchant's stored redirect origins cannot be read; set them again or clear them"
                    );
                } else if !ok {
                    tracing::warn!(
                        merchant_id,
                        origin = origin_of(target).unwrap_or_default(),
                        "mobile redirect withheld: the origin is not in the merchant's redirect origins"
                    );
                }
                ok
            }
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(
                    merchant_id,
                    "mobile redirect withheld: the merchant's redirect origins could not be read: {e}"
                );
                false
            }
        }
    }
}
