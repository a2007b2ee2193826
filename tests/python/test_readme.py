"""The README's walk-throughs run as written: the curl block with bash, and the official Python
client's `python` blocks in order in one namespace, each read from README.md with only the base URL
pointed at the openport under test (OPENPORT_URL). A README example that stops working fails CI.
"""
import os
import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"
URL = os.environ.get("OPENPORT_URL", "http://127.0.0.1:8080/").rstrip("/") + "/"


def readme_python_blocks():
    text = README.read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_readmes_python_walk_through_runs_as_written():
    blocks = readme_python_blocks()
    assert len(blocks) >= 2, "the key-in and the recurring-billing examples"
    namespace = {"__name__": "readme"}
    for block in blocks:
        assert '"http://127.0.0.1:8080/"' in block or "iamport." in block
        code = block.replace('"http://127.0.0.1:8080/"', repr(URL))
        exec(compile(code, str(README), "exec"), namespace)
    iamport = namespace["iamport"]
    # The key-in payment, cancelled in two steps, and the recurring block's `again`.
    assert namespace["paid"]["status"] == "paid"
    assert namespace["paid"]["customer_uid"] == "user-42"
    schedule = iamport.pay_schedule_get(f"sub-{namespace['run']}-12")
    assert schedule["schedule_status"] == "revoked"


def test_the_readmes_curl_walk_through_runs_as_written():
    import json
    import subprocess
    from urllib.parse import urlsplit

    text = README.read_text(encoding="utf-8")
    section = text.split("## Five-minute walk-through (curl)", 1)[1]
    script = re.search(r"```sh\n(.*?)```", section, flags=re.S).group(1)
    assert "localhost:8080" in script
    script = script.replace("localhost:8080", urlsplit(URL).netloc)
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    # The curls print their answers back to back: the payment, its lookup and the two cancels.
    answers, decoder, at = [], json.JSONDecoder(), 0
    while at < len(out):
        answer, at = decoder.raw_decode(out, at)
        answers.append(answer)
        while at < len(out) and out[at].isspace():
            at += 1
    assert [a["code"] for a in answers] == [0, 0, 0, 0], out
    paid, found, partly, fully = (a["response"] for a in answers)
    assert paid["status"] == "paid" and found["imp_uid"] == paid["imp_uid"]
    assert partly["cancel_amount"] == 3000
    assert fully["status"] == "cancelled" and fully["cancel_amount"] == 10000
