"""``lambda t: t * 2.0``, marshalled by other Python versions (recorded data, not code).

Each string is ``base64.b64encode(marshal.dumps((lambda t: t * 2.0).__code__))`` as printed
by the CPython named (pyenv builds, recorded on 2026-11-29): what a Keras 2 Lambda layer
stores in its config. Keras 2 files written with those Pythons carry exactly these bytes; the
tests put them into a Lambda config to check that kfreeze names the version and refuses,
without unmarshalling them.
"""

from __future__ import annotations

LAMBDA_CODE = {
    "Python 2": (
        "YwEAAAABAAAAAgAAAEMAAABzCAAAAHwAAGQBABRTKAIAAABOZwAAAAAAAABAKAAAAAAoAQAAAHQBAAAAdCgAAAAAK"
        "AAAAABzCAAAADxzdHJpbmc+dAgAAAA8bGFtYmRhPgMAAAB0AAAAAA=="
    ),
    "Python 3.7 or earlier": (  # written by 3.6.15
        "4wEAAAAAAAAAAQAAAAIAAABDAAAAcwgAAAB8AGQBFABTACkCTucAAAAAAAAAQKkAKQHaAXRyAgAAAHICAAAA2gg8c3"
        "RyaW5nPtoIPGxhbWJkYT4DAAAAcwAAAAA="
    ),
    "Python 3.8 to 3.10": (  # written by 3.9.18
        "4wEAAAAAAAAAAAAAAAEAAAACAAAAQwAAAHMIAAAAfABkARQAUwApAk7nAAAAAAAAAECpACkB2gF0cgIAAAByAgAAAN"
        "oIPHN0cmluZz7aCDxsYW1iZGE+AwAAAPMAAAAA"
    ),
    "Python 3.13": (
        "4wEAAAAAAAAAAAAAAAIAAAADAAAA8wwAAACVAFUAUwEtBQAAJAApAk7nAAAAAAAAAECpACkB2gF0cwEAAAAg2gg8c3"
        "RyaW5nPtoIPGxhbWJkYT5yBgAAAAMAAABzCAAAAIAAiEGQA4pH8wAAAAA="
    ),
}
