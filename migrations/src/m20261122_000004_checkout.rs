//! Browser checkout: window sessions, and the payment columns other pay methods need.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261122_000004_checkout"
    }
}

#[derive(DeriveIden)]
enum Payments {
    Table,
    EmbPgProvider,
    Escrow,
    BankCode,
    BankName,
    VbankCode,
    VbankName,
    VbankNum,
    VbankHolder,
    VbankDate,
    VbankIssuedAt,
    EscrowLogis,
}

#[derive(DeriveIden)]
enum CheckoutSessions {
    Table,
    Id,
    Token,
    PaymentId,
    MerchantId,
    ImpUid,
    Method,
    KcpPayMethod,
    ActionResult,
    VanCode,
    ApprovalKey,
    TraceNo,
    PayUrl,
    Mobile,
    RedirectUrl,
    ConfirmUrl,
    Params,
    State,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum KcpNotifications {
    Table,
    Id,
    NotiId,
    SiteCd,
    Tno,
    TxCd,
    OpCd,
    Amount,
    Total,
    ReceivedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let text_cols = [
            Payments::EmbPgProvider,
            Payments::BankCode,
            Payments::BankName,
            Payments::VbankCode,
            Payments::VbankName,
            Payments::VbankNum,
            Payments::VbankHolder,
        ];
        for c in text_cols {
            manager
                .alter_table(Table::alter().table(Payments::Table).add_column(ColumnDef::new(c).string().null()).to_owned())
                .await?;
        }
        manager
            .alter_table(Table::alter().table(Payments::Table).add_column(ColumnDef::new(Payments::EscrowLogis).text().null()).to_owned())
            .await?;
        for c in [Payments::VbankDate, Payments::VbankIssuedAt] {
            manager
                .alter_table(Table::alter().table(Payments::Table).add_column(ColumnDef::new(c).big_integer().null()).to_owned())
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Payments::Table)
                    .add_column(ColumnDef::new(Payments::Escrow).boolean().not_null().default(false))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(CheckoutSessions::Table)
                    .col(ColumnDef::new(CheckoutSessions::Id).big_integer().not_null().auto_increment().primary_key())
                    .col(ColumnDef::new(CheckoutSessions::Token).string().not_null().unique_key())
                    .col(ColumnDef::new(CheckoutSessions::PaymentId).big_integer().not_null())
                    .col(ColumnDef::new(CheckoutSessions::MerchantId).big_integer().not_null())
                    .col(ColumnDef::new(CheckoutSessions::ImpUid).string().not_null())
                    .col(ColumnDef::new(CheckoutSessions::Method).string().not_null())
                    .col(ColumnDef::new(CheckoutSessions::KcpPayMethod).string().not_null())
                    .col(ColumnDef::new(CheckoutSessions::ActionResult).string().not_null())
                    .col(ColumnDef::new(CheckoutSessions::VanCode).string().null())
                    .col(ColumnDef::new(CheckoutSessions::ApprovalKey).string().null())
                    .col(ColumnDef::new(CheckoutSessions::TraceNo).string().null())
                    .col(ColumnDef::new(CheckoutSessions::PayUrl).string().null())
                    .col(ColumnDef::new(CheckoutSessions::Mobile).boolean().not_null())
                    .col(ColumnDef::new(CheckoutSessions::RedirectUrl).text().null())
                    .col(ColumnDef::new(CheckoutSessions::ConfirmUrl).text().null())
                    .col(ColumnDef::new(CheckoutSessions::Params).text().not_null())
                    .col(ColumnDef::new(CheckoutSessions::State).string().not_null())
                    .col(ColumnDef::new(CheckoutSessions::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(CheckoutSessions::UpdatedAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        // KCP re-sends a notification until it reads result 0000: `noti_id` makes each count once.
        manager
            .create_table(
                Table::create()
                    .table(KcpNotifications::Table)
                    .col(ColumnDef::new(KcpNotifications::Id).big_integer().not_null().auto_increment().primary_key())
                    .col(ColumnDef::new(KcpNotifications::NotiId).string().not_null().unique_key())
                    .col(ColumnDef::new(KcpNotifications::SiteCd).string().not_null())
                    .col(ColumnDef::new(KcpNotifications::Tno).string().not_null())
                    .col(ColumnDef::new(KcpNotifications::TxCd).string().not_null())
                    .col(ColumnDef::new(KcpNotifications::OpCd).string().null())
                    .col(ColumnDef::new(KcpNotifications::Amount).big_integer().not_null())
                    .col(ColumnDef::new(KcpNotifications::Total).big_integer().not_null())
                    .col(ColumnDef::new(KcpNotifications::ReceivedAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("checkout_sessions_by_payment")
                    .table(CheckoutSessions::Table)
                    .col(CheckoutSessions::PaymentId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(KcpNotifications::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(CheckoutSessions::Table).to_owned()).await
    }
}
