"""The faster five-bit helpers swapped into the bolt11 package give the package's own results."""

from __future__ import annotations

from bolt11 import bit_utils
from hypothesis import given, settings
from hypothesis import strategies as st

from client.wallet.invoices import _bits_to_u5, _u5_to_bits


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 31), max_size=400))
def test_fast_helpers_equal_the_package_helpers(groups: list[int]) -> None:
    bits = _u5_to_bits(groups)
    assert bits == bit_utils.u5_to_bitarray(groups)
    assert _bits_to_u5(bits) == bit_utils.bitarray_to_u5(bits) == groups
