"""{{name}}: a Weir operator (component of world `operator-component`).

Every record comes out with its value in ASCII uppercase; key and ts unchanged.
"""

import weir


@weir.map_values
def upper(value: bytes) -> bytes:
    return value.upper()


# The export componentize-py looks for.
Operator = weir.component(upper)
