"""The README's walk-through with the official Python client, run as written: its `python` code
blocks are read from README.md and executed in order in one namespace, with only the base URL
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
