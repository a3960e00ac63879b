"""Pipeline stage 2 (Python): `customer,country,amount` -> `customer,country,amount,region`.

Key and ts unchanged (the key is empty). Region by country code; unknown codes are
"other".
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


Operator = weir.component(enrich)
