"""Map benchmark operator: same ts and key, value = b"v:" + value."""

import weir


@weir.map_values
def tag(value: bytes) -> bytes:
    return b"v:" + value


Operator = weir.component(tag)
