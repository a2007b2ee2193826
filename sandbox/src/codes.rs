//! Every `res_cd` the sandbox answers with. Codes from spec/kcp.md §4 keep KCP's meaning; the
//! ones marked *assumption* fill gaps KCP does not document publicly and are listed in
//! docs/sandbox.md so the gateway's code table can follow them.

/// 정상처리 (spec §4).
pub const OK: &str = "0000";

/// *Assumption*: the body is not a JSON object, or a value is not a JSON string (spec §1).
pub const MALFORMED_REQUEST: &str = "9501";
/// *Assumption*: a required field is absent or empty.
pub const MISSING_FIELD: &str = "9502";
/// *Assumption*: a field has the wrong shape (site_cd, ordr_idxx, tno, mod_type, pay_type, lengths).
pub const INVALID_FIELD: &str = "9503";
/// *Assumption*: a free-text field holds a character KCP forbids (spec §6).
pub const FORBIDDEN_CHARACTER: &str = "9504";
/// *Assumption*: `kcp_cert_info` is not a certificate the sandbox CA issued.
pub const CERTIFICATE_REJECTED: &str = "9510";
/// *Assumption*: the certificate was issued for another `site_cd`.
pub const CERTIFICATE_SITE_MISMATCH: &str = "9511";
/// *Assumption*: `kcp_sign_data` does not verify with the certificate's key.
pub const SIGNATURE_REJECTED: &str = "9512";
/// *Assumption*: an approval for this (site_cd, ordr_idxx) is already live. Only while the
/// sandbox's `refuse_duplicate_orders` is on (the default): nothing in the spec says KCP refuses it.
pub const DUPLICATE_ORDER: &str = "9520";

/// 결제금액 불일치: hub `amount` differs from `card_mny` (spec §2.4, §2.6).
pub const AMOUNT_MISMATCH: &str = "8059";
/// Card not allowed for the merchant; used for KB cards in test mode (spec §4, seed 001).
pub const CARD_NOT_ALLOWED: &str = "8102";
/// Unknown or unsupported `card_tx_type` (spec §4 "8103/8104 tx type").
pub const TX_TYPE_ERROR: &str = "8103";
/// Unsupported `pay_method` on the hub (spec §4 "8103/8104 tx type").
pub const PAY_METHOD_ERROR: &str = "8104";
/// Amount or currency format error (spec §4).
pub const AMOUNT_ERROR: &str = "8105";
/// Installment error: bad `quota`, or installments under 50,000 KRW (spec §4).
pub const INSTALLMENT_ERROR: &str = "8106";
/// Card number format: not 13–16 digits (spec §4, §6).
pub const CARD_NUMBER_FORMAT: &str = "8107";
/// Card number error: Luhn check failed (spec §4).
pub const CARD_NUMBER_ERROR: &str = "8108";
/// Expiry format or expired card (spec §4).
pub const EXPIRY_ERROR: &str = "8109";
/// Birth date / business number / PIN format or mismatch (spec §4).
pub const AUTHENTICATION_ERROR: &str = "8110";
/// 이미 취소된 거래 (spec §2.9, §4); also `STRA` on a cancelled point payment (assumption at
/// [`REAPPROVAL_NOT_POINT`]).
pub const ALREADY_CANCELLED: &str = "8133";
/// *Assumption*: STPC `rem_mny` differs from the ledger's balance.
pub const BALANCE_MISMATCH: &str = "8134";
/// *Assumption*: `mod_mny` is more than the cancellable balance.
pub const CANCEL_EXCEEDS_BALANCE: &str = "8135";
/// *Assumption*: a full-amount STPC on the approval day must be sent as STSC (spec §2.9).
pub const FULL_PARTIAL_CANCEL_SAME_DAY: &str = "8136";
/// *Assumption*: STPC on a card approval KCP answered `partcanc_yn N` (spec §2.4); KCP publishes no
/// code for it.
pub const PARTIAL_CANCEL_NOT_ALLOWED: &str = "8137";
/// *Assumption*: STPC on a phone (`PAMC`) or gift-certificate (`PATK`) trade: carriers refund no
/// part of a phone bill's charge, and KCP documents no partial cancel of either.
pub const PHONE_OR_GIFT_PARTIAL_CANCEL: &str = "8138";
/// *Assumption*: a cancel of a phone (`PAMC`) trade after the month (KST) it was approved in: a
/// carrier refunds a phone payment only within its billing month.
pub const PHONE_CANCEL_AFTER_MONTH: &str = "8139";
/// *Assumption*: STPC on a bank-transfer (`PABK`) trade on its approval day (KST): KCP's own
/// integrations take a transfer's partial cancel from the next day on.
pub const BANK_PARTIAL_CANCEL_SAME_DAY: &str = "8140";
/// 일일한도초과 (spec §4).
pub const DAILY_LIMIT: &str = "8186";
/// *Assumption*: 한도초과, no credit left at all (the [`crate::test_cards::INSUFFICIENT_LIMIT`] card).
pub const LIMIT_EXCEEDED: &str = "8187";
/// 월한도초과 (spec §4).
pub const MONTHLY_LIMIT: &str = "8188";
/// *Assumption*: `group_id` / `bt_group_id` is not the request's `site_cd` followed by 7 digits.
pub const BATCH_GROUP_ERROR: &str = "8301";
/// *Assumption*: no batch key with this value in this (site_cd, group_id).
pub const BATCH_KEY_NOT_FOUND: &str = "8302";
/// *Assumption*: the batch key was deleted (`tx_type` 10005010).
pub const BATCH_KEY_DELETED: &str = "8303";
/// *Assumption*: no Benepia account with this `pt_idno` in this `pt_memcorp_cd`.
pub const POINT_ACCOUNT_NOT_FOUND: &str = "8401";
/// *Assumption*: `pt_pwd` is not the account's password.
pub const POINT_PASSWORD_MISMATCH: &str = "8402";
/// *Assumption*: the account holds fewer points than the payment needs.
pub const POINT_INSUFFICIENT: &str = "8403";
/// *Assumption*: STPC on a point payment (`PAPT`: a Benepia hub payment or a window's `TPNT`);
/// KCP refunds part of a Benepia payment by `STRA` and cancels any point payment whole by `STSC`.
pub const POINT_PARTIAL_CANCEL: &str = "8404";
/// *Assumption*: STRA on a transaction that is not a point payment.
///
/// What `STRA` itself does is an *assumption* too (docs/kcp.md §8.3, `point::reapprove`): it
/// cancels the live point trade and approves `mod_mny`, what is left, under a new tno in one call
/// (seed 003 §2.4: a same-day full cancel must be STSC, so STRA is a cancel of part of a live
/// trade). STRA on a cancelled trade (the other reading: STSC first) is [`ALREADY_CANCELLED`];
/// `mod_mny` 0 or at least the trade's amount is [`AMOUNT_ERROR`] (a full cancel is STSC). Chosen
/// because it fails safe: were it wrong, KCP would refuse STRA on a live trade and nothing would
/// move, while the other reading, were it wrong, makes every partial cancel a full refund. A third
/// reading (STRA approves `mod_mny` beside the live original) is what
/// [`crate::SandboxConfig::stra_keeps_original`] plays: the gateway inquires the original before it
/// records a re-approval, so that reading ends in a conflict for the operator, not a double charge.
pub const REAPPROVAL_NOT_POINT: &str = "8405";
/// *Assumption, fixed by the gateway's contract*: no transaction for the tno / order_no.
pub const NO_SUCH_TRANSACTION: &str = "8201";
/// The message that goes with [`NO_SUCH_TRANSACTION`], exactly.
pub const NO_SUCH_TRANSACTION_MSG: &str = "해당 거래가 존재하지 않습니다.";

/// `tran_cd` missing on `gw/enc/v1/payment` (spec §4).
pub const TRAN_CD_MISSING: &str = "9562";
/// *Assumption*: a window result already redeemed at `gw/enc/v1/payment` (a replay).
pub const WINDOW_REPLAYED: &str = "9530";
/// *Assumption*: `enc_data` is no window result the sandbox handed out (or another site's).
pub const WINDOW_UNKNOWN: &str = "9531";
/// *Assumption*: approval `ordr_no` is not the registered `ordr_idxx`.
pub const ORDER_NO_MISMATCH: &str = "9532";
/// *Assumption*: approval `enc_info` is not the one the window posted with this `enc_data`
/// (spec §2.3: the two are one opaque pair, `enc_info` the key information for `enc_data`).
pub const ENC_INFO_MISMATCH: &str = "9533";
/// *Assumption*: `STE1` (or an escrow cancel `STE2`/`STE4`/`STE5`) on a transaction that is not
/// an escrow payment.
pub const NOT_ESCROW: &str = "8501";
/// *Assumption*: `STE1` a second time on the same transaction.
pub const ESCROW_ALREADY_SHIPPED: &str = "8502";
/// *Assumption*: cancel (or `STE1`) of a virtual account that has not been paid in full yet
/// (`STPC`, `STPD`, `STE1`); a refund (`STHD`/`STPD`) of one nobody paid into.
pub const VBANK_NOT_DEPOSITED: &str = "8503";
/// *Assumption*: a virtual account holding deposits cancelled without the account to refund them
/// to: `STSC` or `STPC` (which carry none, whatever fields come with them: KCP refunds a deposit
/// only with `STHD`/`STPD` to an account the buyer names, docs/kcp.md §10.2, and closing the
/// account without one would leave the money nowhere), an `STE5` without `mod_bankcode`,
/// `mod_account` and `mod_depositor`, or an `STHD`/`STPD` missing any of them.
pub const VBANK_REFUND_ACCOUNT_MISSING: &str = "8508";
/// *Assumption*: a refund (`STHD`/`STPD`, `mod_comp_type MDCP01`) to an account the bank does not
/// hold (the [`crate::test_refund_accounts::NO_SUCH_ACCOUNT`] account): KCP verifies the account
/// (계좌인증) before it registers the refund, and publishes no code for the failure.
pub const REFUND_ACCOUNT_NOT_FOUND: &str = "8509";
/// *Assumption*: a refund (`STHD`/`STPD`, `MDCP01`) whose `mod_depositor` is not the account's
/// holder (the [`crate::test_refund_accounts::NAMED_HOLDER_ACCOUNT`] account under another name).
pub const REFUND_HOLDER_MISMATCH: &str = "8510";
/// *Assumption*: `STHD` or `STPD` on a trade that is not a virtual account (`PAVC`).
pub const REFUND_NOT_VBANK: &str = "8511";
/// *Assumption*: `STSC` or `STPC` (or a refund, `STHD`/`STPD`) on an escrow transaction: KCP
/// cancels an escrow trade with an escrow status change (`STE2`/`STE4`/`STE5`, spec §2.11), whole
/// (no partial cancel before the purchase is confirmed).
pub const ESCROW_CANCEL_TYPE: &str = "8506";
/// *Assumption*: an escrow cancel that does not fit where the escrow trade stands: `STE2` after
/// its shipping start, `STE4` before it, `STE5` on anything but an unpaid virtual account, or
/// `STE2`/`STE4` on an unpaid virtual account (closed with `STE5`).
pub const ESCROW_STAGE_MISMATCH: &str = "8507";
/// *Assumption*: window-less virtual-account issuance with a `va_bankcode` the sandbox issues no
/// accounts for (it offers the window's banks: BK04, BK20, BK88, BK81, BK11, BK03, BK07).
pub const VBANK_BANK_ERROR: &str = "8504";
/// *Assumption*: window-less virtual-account issuance whose `va_date` is not `yyyyMMddHHmmss`, not
/// a real time, or not after now (KST); a virtual-account window approved once its `ipgm_date`
/// has passed (or naming no date).
pub const VBANK_DUE_ERROR: &str = "8505";
