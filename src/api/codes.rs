//! `GET /banks`, `/banks/{bank_standard_code}`, `/cards`, `/cards/{card_standard_code}`: iamport's
//! standard codes and names of banks and card companies (`domain::codes`), for merchants who
//! show `bank_code` / `vbank_code` / `card_code` by name or build a refund-bank list from them.
use serde::Serialize;
use utoipa::ToSchema;

use super::doc::{ErrorEnvelope, StandardCodeListReply, StandardCodeReply, TokenErrors};
use super::envelope::{ok, Envelope};
use super::error::{ApiError, ApiResult};
use super::extract::{Caller, Path};
use crate::domain::codes::{self, StandardCode};

/// iamport's `StandardCodeAnnotation`.
#[derive(Serialize, ToSchema)]
pub struct StandardCodeAnnotation {
    /// The institution's standard (KFTC) code, e.g. `004`.
    pub code: String,
    pub name: String,
}

impl From<StandardCode> for StandardCodeAnnotation {
    fn from(c: StandardCode) -> Self {
        Self {
            code: c.code.to_owned(),
            name: c.name.to_owned(),
        }
    }
}

fn all(list: &[StandardCode]) -> Envelope<Vec<StandardCodeAnnotation>> {
    ok(list.iter().copied().map(Into::into).collect())
}

#[utoipa::path(get, path = "/banks", operation_id = "allBankCodes",
    responses((status = 200, body = StandardCodeListReply), TokenErrors))]
pub async fn banks(_caller: Caller) -> Envelope<Vec<StandardCodeAnnotation>> {
    all(codes::BANKS)
}

#[utoipa::path(get, path = "/banks/{bank_standard_code}", operation_id = "bankCodes",
    params(("bank_standard_code" = String, Path, description = "e.g. `004`")),
    responses(
        (status = 200, body = StandardCodeReply),
        (status = 404, body = ErrorEnvelope, description = "no bank has this code"),
        TokenErrors))]
pub async fn bank(
    _caller: Caller,
    Path(code): Path<String>,
) -> ApiResult<Envelope<StandardCodeAnnotation>> {
    codes::bank(&code)
        .map(|b| ok(b.into()))
        .ok_or_else(|| ApiError::not_found("코드에 해당되는 은행정보를 찾을 수 없습니다."))
}

#[utoipa::path(get, path = "/cards", operation_id = "allCardCodes",
    responses((status = 200, body = StandardCodeListReply), TokenErrors))]
pub async fn cards(_caller: Caller) -> Envelope<Vec<StandardCodeAnnotation>> {
    all(codes::CARD_COMPANIES)
}

#[utoipa::path(get, path = "/cards/{card_standard_code}", operation_id = "cardCodes",
    params(("card_standard_code" = String, Path, description = "e.g. `361`")),
    responses(
        (status = 200, body = StandardCodeReply),
        (status = 404, body = ErrorEnvelope, description = "no card company has this code"),
        TokenErrors))]
pub async fn card(
    _caller: Caller,
    Path(code): Path<String>,
) -> ApiResult<Envelope<StandardCodeAnnotation>> {
    codes::card_company(&code)
        .map(|c| ok(c.into()))
        .ok_or_else(|| ApiError::not_found("코드에 해당되는 카드사정보를 찾을 수 없습니다."))
}
