#!/usr/bin/env python3
"""Prints `country_zones.rs`: the IANA zone of every country that has a single one.

Usage: python3 scripts/gen_country_zones.py [ZONEINFO_DIR] > src/domain/campaign/country_zones.rs

ZONEINFO_DIR defaults to /usr/share/zoneinfo and must hold `zone.tab`, the compiled zone
files, and the tzdata version (in `+VERSION` or the `# version` line of `tzdata.zi`). Use
tzdata of the version chrono-tz bundles, so both agree on the zones.

The rule: a country maps to a zone when it has exactly one row in `zone.tab`. OVERRIDES
adds a few countries with several rows whose rows all keep the same clock today; the
script checks that claim (hourly UTC offsets over ten years from now) and fails when a
newer tzdata breaks it, so an override never outlives its reason unnoticed.
"""

import datetime
import os
import re
import sys
import zoneinfo
from collections import defaultdict

# country: (zone, one-line reason). Keep it short; every entry is checked below.
OVERRIDES = {
    "AR": ("America/Argentina/Buenos_Aires", "all 12 rows have kept -03 without DST since 2009"),
    "CY": ("Asia/Nicosia", "Northern Cyprus (Asia/Famagusta) has kept Nicosia's clock since 2017"),
    "DE": ("Europe/Berlin", "the Busingen exclave keeps Zurich's clock, the same as Berlin's"),
    "KZ": ("Asia/Almaty", "Kazakhstan moved to a single +05 in 2024; its rows differ only in history"),
    "MY": ("Asia/Kuala_Lumpur", "Sabah and Sarawak (Asia/Kuching) keep +08 like the peninsula"),
    "UZ": ("Asia/Tashkent", "Samarkand and Tashkent have both kept +05 without DST since 1992"),
}

CHECK_YEARS = 10


def tzdata_version(zoneinfo_dir):
    plain = os.path.join(zoneinfo_dir, "+VERSION")
    if os.path.exists(plain):
        with open(plain, encoding="ascii") as f:
            return f.read().strip()
    zi = os.path.join(zoneinfo_dir, "tzdata.zi")
    if os.path.exists(zi):
        with open(zi, encoding="ascii") as f:
            for line in f:
                m = re.match(r"# version (\S+)", line)
                if m:
                    return m.group(1)
    sys.exit(f"no tzdata version found in {zoneinfo_dir} (+VERSION or tzdata.zi)")


def read_zone_tab(path):
    rows = defaultdict(list)
    with open(path, encoding="ascii") as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            country, zone = fields[0], fields[2]
            if not re.fullmatch(r"[A-Z]{2}", country):
                sys.exit(f"unexpected country code {country!r} in {path}")
            rows[country].append(zone)
    return rows


def load_zone(zoneinfo_dir, zone):
    with open(os.path.join(zoneinfo_dir, zone), "rb") as f:
        return zoneinfo.ZoneInfo.from_file(f, key=zone)


def offsets(zone, instants):
    return [i.astimezone(zone).utcoffset() for i in instants]


def check_override(zoneinfo_dir, country, zone, rows):
    zones = rows.get(country, [])
    if len(zones) < 2:
        sys.exit(f"override {country}: it has {len(zones)} row(s) in zone.tab; drop the override")
    if zone not in zones:
        sys.exit(f"override {country}: {zone} is not one of its zones {zones}")
    year = datetime.date.today().year
    start = datetime.datetime(year, 1, 1, tzinfo=datetime.timezone.utc)
    instants = [start + datetime.timedelta(hours=h) for h in range(24 * 366 * CHECK_YEARS)]
    main = offsets(load_zone(zoneinfo_dir, zone), instants)
    for other in zones:
        if offsets(load_zone(zoneinfo_dir, other), instants) != main:
            sys.exit(f"override {country}: {other} no longer keeps {zone}'s clock; drop the override")


def variant(zone):
    """The chrono-tz enum variant of a zone name, e.g. `America/Port-au-Prince` -> `America__PortauPrince`."""
    return zone.replace("/", "__").replace("-", "")


def main():
    zoneinfo_dir = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/zoneinfo"
    version = tzdata_version(zoneinfo_dir)
    rows = read_zone_tab(os.path.join(zoneinfo_dir, "zone.tab"))
    for country, (zone, _) in OVERRIDES.items():
        check_override(zoneinfo_dir, country, zone, rows)

    table = []
    for country, zones in rows.items():
        if country in OVERRIDES:
            zone, reason = OVERRIDES[country]
            table.append((country, zone, f"override: {reason}"))
        elif len(zones) == 1:
            table.append((country, zones[0], None))
    table.sort()

    out = sys.stdout
    out.write("//! The IANA zone of every country that has a single one, for `time::zone_for_country`.\n")
    out.write("//!\n")
    out.write(f"//! Generated from `zone.tab` of tzdata {version} by `scripts/gen_country_zones.py`; do not edit by\n")
    out.write("//! hand, regenerate with\n")
    out.write("//! `python3 scripts/gen_country_zones.py > src/domain/campaign/country_zones.rs`. A country is listed\n")
    out.write("//! when it has exactly one row in `zone.tab`, or when it is one of the script's overrides\n")
    out.write("//! (several rows that all keep the same clock; each row below says why). Every zone is a\n")
    out.write("//! `chrono_tz::Tz` variant, so a zone chrono-tz does not know fails to compile.\n")
    out.write("\n")
    out.write("use chrono_tz::Tz;\n")
    out.write("\n")
    out.write(f"/// `(ISO 3166-1 alpha-2 code, zone)`, sorted by code for binary search; {len(table)} countries.\n")
    out.write("#[rustfmt::skip]\n")
    out.write("pub(super) static COUNTRY_ZONES: &[(&str, Tz)] = &[\n")
    for country, zone, note in table:
        if note:
            out.write(f"    // {note}\n")
        out.write(f'    ("{country}", Tz::{variant(zone)}),\n')
    out.write("];\n")


if __name__ == "__main__":
    main()
