"""The official iamport Python client (PyPI `iamport-rest-client` 0.9.0), unchanged but for its
base URL, against a running openport in test mode (OPENPORT_URL, default http://127.0.0.1:8080/).

These are the README walk-through's calls: key-in payment, lookups, partial and full cancel, prepare.
"""
import os
import time
import uuid

import pytest
from iamport import Iamport

URL = os.environ.get("OPENPORT_URL", "http://127.0.0.1:8080/").rstrip("/") + "/"
# openport's documented demo credentials (test mode only).
IMP_KEY = "imp_apikey"
IMP_SECRET = "ekKoeW8RyKuT0zgaZsUtXXTLQ4AhPFW3ZGseDA6bkA5lamv9OqDMnxyeB9wqOsuO9W3Mx9YSJ4dTqJ3f"


@pytest.fixture
def client():
    return Iamport(imp_key=IMP_KEY, imp_secret=IMP_SECRET, imp_url=URL)


def new_uid(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def pay(client, merchant_uid, amount=10000, card="4111-1111-1111-1111"):
    return client.pay_onetime(
        merchant_uid=merchant_uid,
        amount=amount,
        card_number=card,
        expiry="2031-12",
        birth="800101",
        pwd_2digit="00",
        name="openport 테스트 상품",
        buyer_name="홍길동",
    )


def test_a_key_in_payment_is_paid_and_found_by_imp_uid_and_merchant_uid(client):
    uid = new_uid("py-pay")
    paid = pay(client, uid)
    assert paid["status"] == "paid"
    assert paid["amount"] == 10000
    assert paid["card_number"] == "411111******1111"
    assert client.find(imp_uid=paid["imp_uid"])["merchant_uid"] == uid
    assert client.find(merchant_uid=uid)["imp_uid"] == paid["imp_uid"]
    assert client.is_paid(10000, imp_uid=paid["imp_uid"])
    assert not client.is_paid(9999, imp_uid=paid["imp_uid"])


def test_partial_then_full_cancel_with_the_official_client(client):
    paid = pay(client, new_uid("py-cancel"))
    partial = client.cancel("부분 환불", imp_uid=paid["imp_uid"], amount=3000)
    assert partial["status"] == "cancelled"
    assert partial["cancel_amount"] == 3000
    full = client.cancel_by_imp_uid(paid["imp_uid"], "전액 환불")
    assert full["cancel_amount"] == 10000
    assert len(full["cancel_history"]) == 2
    with pytest.raises(Iamport.ResponseError) as err:
        client.cancel_by_imp_uid(paid["imp_uid"], "again")
    assert err.value.code == 1
    assert err.value.message == "이미 전액취소된 주문입니다."


def test_a_declined_card_is_a_failed_payment_and_bad_card_data_a_response_error(client):
    failed = pay(client, new_uid("py-decline"), card="4000-0000-0000-8187")
    assert failed["status"] == "failed"
    assert "8186" in failed["fail_reason"]
    with pytest.raises(Iamport.ResponseError) as err:
        pay(client, new_uid("py-luhn"), card="4111-1111-1111-1112")
    assert err.value.code == -1


def test_prepare_and_validate(client):
    uid = new_uid("py-prep")
    client.prepare(merchant_uid=uid, amount=5000)
    assert client.prepare_validate(merchant_uid=uid, amount=5000)
    assert not client.prepare_validate(merchant_uid=uid, amount=4000)
    with pytest.raises(Iamport.ResponseError):
        pay(client, uid, amount=4000)
    assert pay(client, uid, amount=5000)["status"] == "paid"


def test_an_unknown_payment_is_an_http_error_404(client):
    with pytest.raises(Iamport.HttpError) as err:
        client.find(imp_uid="imp_000000000000")
    assert err.value.code == 404


def test_a_wrong_secret_is_refused():
    bad = Iamport(imp_key=IMP_KEY, imp_secret="wrong", imp_url=URL)
    with pytest.raises(Iamport.HttpError) as err:
        bad.find(imp_uid="imp_000000000000")
    assert err.value.code == 401


def test_recurring_billing_with_the_official_client(client):
    uid = new_uid("py-cust")
    customer = client.customer_create(customer_uid=uid, card_number="4111-1111-1111-1111",
                                      expiry="2031-12", birth="800101", pwd_2digit="00")
    assert customer["card_number"] == "411111******1111"
    assert client.customer_get(uid)["customer_uid"] == uid

    paid = client.pay_again(customer_uid=uid, merchant_uid=new_uid("py-again"), amount=9900, name="월간 구독")
    assert paid["status"] == "paid"
    assert paid["customer_uid_usage"] == "payment"

    at = int(time.time()) + 3600
    scheduled = client.pay_schedule(customer_uid=uid, schedules=[
        {"merchant_uid": new_uid("py-sch"), "schedule_at": at, "amount": 9900, "name": "다음 달"},
        {"merchant_uid": new_uid("py-sch"), "schedule_at": at + 86400, "amount": 9900},
    ])
    assert [s["schedule_status"] for s in scheduled] == ["scheduled", "scheduled"]
    assert scheduled[0]["imp_uid"] is None
    assert client.pay_schedule_get(scheduled[0]["merchant_uid"])["schedule_at"] == at
    between = client.pay_schedule_get_between(schedule_from=at, schedule_to=at + 86401)
    # Both listed (an earlier run on the same database may have schedules in the window too).
    assert {s["merchant_uid"] for s in scheduled} <= {s["merchant_uid"] for s in between["list"]}

    revoked = client.pay_unschedule(customer_uid=uid)
    assert len(revoked) == 2
    deleted = client.customer_delete(uid)
    assert deleted["customer_uid"] == uid
    with pytest.raises(Iamport.ResponseError) as err:
        client.pay_again(customer_uid=uid, merchant_uid=new_uid("py-again"), amount=1000)
    assert err.value.message == "등록되지 않은 구매자입니다."


def test_a_declined_again_is_a_failed_payment(client):
    uid = new_uid("py-kb")
    client.customer_create(customer_uid=uid, card_number="5272-8900-0000-6050", expiry="2031-12", birth="800101")
    failed = client.pay_again(customer_uid=uid, merchant_uid=new_uid("py-again"), amount=1000)
    assert failed["status"] == "failed"
    assert failed["imp_uid"].startswith("imp_")
