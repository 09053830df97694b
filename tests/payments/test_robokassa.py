"""Robokassa: link and ResultURL signatures against fixed vectors of the documented formulas, the
Receipt encoded once, and the ResultURL callback played by the fake payment page: OK{InvId}, once."""

from __future__ import annotations

import urllib.parse
from decimal import Decimal

import pytest

import ledger
from gateway.payments import robokassa
from tests.support.accounts import login
from tests.support.payments import PURCHASE, ROBOKASSA_PASSWORD2, available, buy, deposits, history, payment_row

RESULT = "/api/v1/webhooks/robokassa/result"
# The 54-FZ receipt of 10 credits at 95.00 RUB, compact JSON, URL-encoded once (PHP urlencode).
RECEIPT = ("%7B%22sno%22%3A%22usn_income%22%2C%22items%22%3A%5B%7B%22name%22%3A%22tollgate%3A+10+credits%22%2C"
           "%22quantity%22%3A1%2C%22sum%22%3A950.00%2C%22tax%22%3A%22none%22%2C%22payment_method%22%3A"
           "%22full_prepayment%22%2C%22payment_object%22%3A%22service%22%7D%5D%7D")
SHP = {"Shp_user": "7", "Shp_item": "credits"}  # given unsorted: the formula sorts them
# Fixed vectors: hex digests of the documented strings, e.g. md5("demo:950.00:42:pass1").
LINK = {  # MerchantLogin:OutSum:InvId[:Receipt]:Password1[:Shp_item=credits:Shp_user=7]
    ("md5", False, False): "9b0f348d39eeb91d5f8c628e7f31906e",
    ("md5", True, False): "ad9bc4949dc0d10c186093522f031d82",
    ("md5", False, True): "58f1032a220b4b2826fa0d1dba79c4b9",
    ("md5", True, True): "935659c976faa544271182eeba46f2a0",
    ("sha1", False, False): "0af3e07450bf52eff8659c1912c80be8dafefd77",
    ("sha1", True, True): "119137c098bf0d4889368e05f6c1d7c309c0c618",
    ("sha256", False, False): "784b062425cfe87f0201108aeaf2427438ddf32daf8ba92eef9eae2f0f28b57b",
    ("sha256", True, False): "601cbc14e9b8b4224e3eeeb63b10a02bd46c0c7bff3d57dd3f70d327b4d76c22",
    ("sha256", True, True): "09b10bc42e51274e3d0c2e933e4256b7919253a720521a1c7bba058fe96bc85b",
    ("sha384", False, False): "ce948804bf7fc5bcdd51d27c6406a3f4eec231f40f0a0d37716526b9f8e8d12747123b977bd095662efcf86"
                              "b5ef2464f",
    ("sha384", True, True): "8589de1024ff8c652ba4e27b72f57474a1ae643bbcefc44e6e3821cda1016d455d804d960f13433112479e7e"
                            "1addd1f9",
    ("sha512", False, False): "b0295606c66784d8b5f22cba386e9e1b98d3f6cb7517498f99b2a5d93cf5d48f3a7c386028829ce2c460bb"
                              "da524f210a1e27d0cd27ac7a1c26552a085f68cdef",
    ("sha512", True, True): "ed8c3ff7c8d5566fd8b57b46fa8a8bd67cf8e7996fd81e1bcc2f6fbd83db6bbd746ef10624d6a08d2728d51"
                            "35ce73955e6e3986fa4135eb48ee062ab1afba734",
    ("ripemd160", False, False): "b45ce51f6de02b29e45fb115a250485e782f83a6",
    ("ripemd160", True, False): "5d47471902b32291a928325064258ebfe381a2eb",
    ("ripemd160", False, True): "57afa70ca343e46935f3f910c6f5a4fc7574e3d4",
    ("ripemd160", True, True): "c32f38c4097a7ec9288f524636f90d61cea5a682",
}
RESULT_VECTORS = {  # OutSum:InvId:Password2[:Shp_item=credits:Shp_user=7]
    ("md5", "950.00", False): "3fae68b67ad79430c3ec808023c7b4c0",
    ("md5", "950.00", True): "a0e6f0a8334a4fa79796c5dbffd76fe6",
    ("md5", "950.000000", False): "c187ef0e7587cf14cd494de3af47e735",
    ("sha1", "950.00", False): "37fe9d0a1993a558c4665a5aa26008f5592594d6",
    ("sha1", "950.00", True): "bf80bf7e9b6eb11a2aed87f1b0daec484c990bf0",
    ("sha256", "950.00", True): "408893a5ec5819ca915d85643cdb16edccbe3436ed6bbd0c459a659c1681e9e8",
    ("sha256", "950.000000", False): "30bc1ffb0f5c7251b8521ca365977d84dce195126151c02f083e3b0577573a8a",
    ("sha384", "950.00", False): "86d6c59b16829f9761cc35bcc3426fa53ae6c51346b1c00e44de54055a4d33c0c2ce0b00cd3b51658a"
                                 "253244b1655c90",
    ("sha384", "950.00", True): "6e1648e1befbd2e06c36a8127ad238cedf0f63a8402f642e2916d3a6de0d9e0ec77e207a4d28f201ca0f"
                                "c4b9ae4ba3b7",
    ("sha512", "950.00", False): "8d27a701fe64c00055cbbfd35bd4e94e01ad963717760a99b56982bd9dc0f06ce4ea39ef45de9ec845"
                                 "03c31f76e4fc6416687c152352f91cd36805262b410fe0",
    ("sha512", "950.00", True): "7e9fcfba7f7b8d46b5fa3477ceb28523d6af121c80b1c6008017e20296a2d8bb4f299ae7ffbd8ff66159"
                                "4465f818c039407341a254b34ee88709361783714ede",
    ("ripemd160", "950.00", False): "636da5158d13648473d7e34657ecc3aff6c239e4",
    ("ripemd160", "950.00", True): "599de2f8f72655ead87961d4ad35bc8419a92b51",
    ("ripemd160", "950.000000", False): "77b64938f3bed224866e85a14bd329c592a78c2f",
}


def test_the_receipt_is_compact_json_url_encoded_once():
    assert robokassa.encoded_receipt("usn_income", "none", "tollgate: 10 credits", Decimal("950.00")) == RECEIPT


@pytest.mark.parametrize("algorithm, with_receipt, with_shp", sorted(LINK))
def test_the_link_signature_matches_the_documented_formula(algorithm, with_receipt, with_shp):
    signature = robokassa.link_signature(algorithm, "demo", "950.00", "42", "pass1",
                                         RECEIPT if with_receipt else None, SHP if with_shp else None)
    assert signature == LINK[algorithm, with_receipt, with_shp]


@pytest.mark.parametrize("algorithm, out_sum, with_shp", sorted(RESULT_VECTORS))
def test_the_result_signature_matches_the_documented_formula(algorithm, out_sum, with_shp):
    assert robokassa.result_signature(algorithm, out_sum, "42", "pass2", SHP if with_shp else None) == \
        RESULT_VECTORS[algorithm, out_sum, with_shp]


async def test_the_payment_link_is_signed_with_the_receipt_as_sent(pay_gateway_factory, database, fakes):
    gateway = await pay_gateway_factory(robokassa_receipt_sno="usn_income", robokassa_hash="sha256",
                                        robokassa_test=True)
    fakes.robokassa.algorithm = "sha256"
    payment = await buy(gateway, credits="10", provider="robokassa", email="guest@example.com")
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(payment["payment_url"]).query))
    assert (query["OutSum"], query["InvId"], query["IsTest"]) == ("950.00", str(payment["payment_id"]), "1")
    assert query["Receipt"] == RECEIPT  # the link's own encoding undone: the string that was signed
    assert query["SignatureValue"] == robokassa.link_signature(
        "sha256", "tollgate-shop", "950.00", query["InvId"], "pass-one-1", RECEIPT)
    answer = await (await gateway.session.get(payment["payment_url"])).json()  # the fake checks the link
    assert answer["result"] == {"status": 200, "body": f"OK{payment['payment_id']}"}


async def test_a_guest_pays_gets_an_account_a_login_mail_and_sets_a_password(pay_gateway, database, fakes, outbox):
    payment = await buy(pay_gateway, credits="10", provider="robokassa", email="guest@example.com")
    assert (payment["amount"], payment["currency"]) == ("950.00", "RUB")
    answer = await (await pay_gateway.session.get(payment["payment_url"])).json()
    assert answer["result"]["body"] == f"OK{payment['payment_id']}"
    row = await payment_row(database, payment["payment_id"])
    assert row["status"] == "paid" and await available(database, row["user_id"]) == 10 * ledger.MICRO_PER_CREDIT
    token = outbox.sent[-1].text.split("token=")[1].split()[0]
    assert outbox.sent[-1].to == "guest@example.com"
    pair = await (await pay_gateway.post("/api/v1/auth/magic-link/verify", json={"token": token})).json()
    headers = {"Authorization": f"Bearer {pair['access_token']}"}
    response = await pay_gateway.post("/api/v1/auth/password", headers=headers, json={"password": "a new password"})
    assert response.status == 200
    assert (await login(pay_gateway, "guest@example.com", "a new password"))["access_token"]
    again = await pay_gateway.post("/api/v1/auth/password", headers=headers, json={"password": "another one!"})
    assert again.status == 401  # now the current password is needed
    mine = await (await pay_gateway.get(f"/api/v1/payments/{payment['payment_id']}", headers=headers)).json()
    assert [entry["status"] for entry in mine["history"]] == ["pending", "paid"]


async def test_a_duplicate_result_is_answered_ok_and_credits_once(pay_gateway, database, fakes):
    payment = await buy(pay_gateway, credits="10", provider="robokassa", email="guest@example.com")
    await pay_gateway.session.get(payment["payment_url"] + "&deliver=0")
    form = fakes.robokassa.result_form(fakes.robokassa.links[-1])
    for method in ("POST", "POST", "GET"):
        if method == "POST":
            response = await pay_gateway.post(RESULT, data=form)
        else:
            response = await pay_gateway.get(RESULT + "?" + urllib.parse.urlencode(form))
        assert (response.status, await response.text()) == (200, f"OK{payment['payment_id']}")
    user_id = (await payment_row(database, payment["payment_id"]))["user_id"]
    assert await deposits(database, user_id) == 10 * ledger.MICRO_PER_CREDIT


async def test_an_out_sum_with_extra_decimals_verifies(pay_gateway, database, fakes):
    payment = await buy(pay_gateway, credits="10", provider="robokassa", email="guest@example.com")
    answer = await (await pay_gateway.session.get(payment["payment_url"] + "&out_sum_decimals=6")).json()
    assert answer["result"] == {"status": 200, "body": f"OK{payment['payment_id']}"}
    assert (await payment_row(database, payment["payment_id"]))["status"] == "paid"


async def test_shp_pairs_are_verified_in_sorted_order(pay_gateway, database, fakes):
    payment = await buy(pay_gateway, credits="10", provider="robokassa", email="guest@example.com")
    await pay_gateway.session.get(payment["payment_url"] + "&deliver=0")
    form = fakes.robokassa.result_form({**fakes.robokassa.links[-1], **SHP})
    assert (await pay_gateway.post(RESULT, data=form)).status == 200


@pytest.mark.parametrize("forge", ["password", "out_sum", "inv_id", "shp", "missing"])
async def test_a_forged_or_wrong_result_is_400_and_credits_nothing(pay_gateway, database, fakes, forge):
    payment = await buy(pay_gateway, credits="10", provider="robokassa", email="guest@example.com")
    await pay_gateway.session.get(payment["payment_url"] + "&deliver=0")
    link = fakes.robokassa.links[-1]
    form = fakes.robokassa.result_form(link, password2="guessed" if forge == "password" else ROBOKASSA_PASSWORD2)
    if forge == "out_sum":  # correctly signed, but not the payment's amount
        form = fakes.robokassa.result_form(link, out_sum="9.50")
    elif forge == "inv_id":
        form["InvId"] = str(payment["payment_id"] + 1)
    elif forge == "shp":
        form["Shp_extra"] = "1"
    elif forge == "missing":
        del form["SignatureValue"]
    response = await pay_gateway.post(RESULT, data=form)
    assert response.status == 400
    assert (await payment_row(database, payment["payment_id"]))["status"] == "pending"
    assert await database.fetchval("SELECT count(*) FROM transfers") == 0
    if forge == "out_sum":
        assert ("pending", "rejected:result") in await history(database, payment["payment_id"])


async def test_robokassa_takes_rubles_only(pay_gateway):
    response = await pay_gateway.post(PURCHASE, json={"credits": "1", "provider": "robokassa",
                                                      "email": "guest@example.com", "currency": "USD"})
    assert (response.status, (await response.json())["error"]["code"]) == (400, "invalid_currency")
