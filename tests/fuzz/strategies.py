"""Strategies shared by the fuzz tests: any JSON value, and a text mutated the way a fuzzer mutates
bytes (bits flipped, bytes inserted, deleted, duplicated, cut), so that hypothesis explores the
neighbourhood of valid input as well as arbitrary bytes."""

from __future__ import annotations

from hypothesis import strategies as st

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from(["", "\r\n", "\x00", "\u202e", "https://", "javascript:alert(1)", "9" * 400])
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
# Bytes a mutation inserts: the structure of JSON and mail, and what breaks decoders.
_INSERTS = st.sampled_from(
    [
        b"\x00",
        b"\xff",
        b"\xc3",
        b"\r",
        b"\n",
        b"\r\n",
        b'"',
        b"\\",
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b":",
        b"\\u0000",
        b"\\ud800",
        b"=?",
        b"?=",
        b"--",
        b"\r\n\r\n",
        b"\xed\xa0\x80",
        b"1e999",
    ]
) | st.binary(min_size=1, max_size=4)


@st.composite
def mutated(draw: st.DrawFn, original: str | bytes, max_mutations: int = 4) -> bytes:
    """``original`` with a few byte-level mutations at drawn positions."""
    data = bytearray(original.encode("utf-8", "surrogatepass") if isinstance(original, str) else original)
    for _ in range(draw(st.integers(1, max_mutations))):
        position = draw(st.integers(0, len(data)))
        operation = draw(st.sampled_from(["flip", "insert", "delete", "duplicate", "cut"]))
        if operation == "flip" and position < len(data):
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif operation == "insert":
            data[position:position] = draw(_INSERTS)
        elif operation == "delete":
            del data[position : position + draw(st.integers(1, 8))]
        elif operation == "duplicate":
            data[position:position] = data[position : position + draw(st.integers(1, 32))]
        elif operation == "cut":
            del data[position:]
    return bytes(data)
