"""Pipeline stage 2 (Python): `customer,country,amount` -> `customer,country,amount,region`.

Key and ts unchanged (the key is empty). Region by country code; unknown codes are
"other". It keeps no state but declares state version 1 all the same and logs the
version it is handed at open: the tests read in the TaskManagers' logs that an attempt
restored from a checkpoint sees 1 and a fresh one None.
"""

import weir

REGIONS = {}
for region, countries in {
    "americas": ("US", "CA", "MX"),
    "europe": ("DE", "FR", "GB", "NL", "ES", "IT"),
    "asia": ("JP", "CN", "IN", "SG", "KR"),
}.items():
    for c in countries:
        REGIONS[c.encode()] = region.encode()


@weir.map_values
def enrich(value: bytes) -> bytes:
    country = value.split(b",")[1]
    return value + b"," + REGIONS.get(country, b"other")


enrich.state_version = 1


def _open(ctx):
    weir.log.info(f"enrich: restored state version {ctx.restored_state_version}")


enrich.open = _open

Operator = weir.component(enrich)
