"""Real third-party data loaded into a database, for tests and ``sleepd bench``.

``load_tau2_retail(url)`` turns tau2-bench's retail ``db.json`` (500 users, 1000 orders, 50
products; see shared/data/README.md) into four tables in any SQLAlchemy database::

    users(user_id PK, first_name, last_name, email, address1, address2, city, state, country, zip,
          updated_at)
    payment_methods(payment_method_id PK, user_id, source, brand, last_four, balance, updated_at)
    orders(order_id PK, user_id, status, address JSON, items JSON, fulfillments JSON,
           payment_history JSON, updated_at)
    products(product_id PK, name, variants JSON, updated_at)

Nested lists (an order's items, fulfilments and payments) stay JSON text in their row, as a
shop's database often keeps them. Every ``user_id`` and ``updated_at`` column is indexed, so
``tau2_retail_source`` can poll by watermark.

``load_tau2_airline(url)`` does the same for the airline domain (500 users, 2000 reservations)::

    users(user_id PK, first_name, last_name, email, dob, membership, address JSON,
          saved_passengers JSON, updated_at)
    payment_methods(payment_method_id PK, user_id, source, brand, last_four, amount, updated_at)
    reservations(reservation_id PK, user_id, status, origin, destination, flight_type, cabin,
                 flights JSON, passengers JSON, payment_history JSON, total_baggages,
                 nonfree_baggages, insurance, created_at, updated_at)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Column, DateTime, Float, Integer, MetaData, String, Table, Text, create_engine, insert
from sqlalchemy.schema import CreateSchema

from sleepd.settings import SqlSource, SqlTable

__all__ = ["DATA_DIR", "TAU2_AIRLINE", "TAU2_RETAIL", "airline_tables", "data_dir", "load_tau2_airline",
           "load_tau2_retail", "retail_tables", "tau2_airline_source", "tau2_retail_source"]


def data_dir() -> Path:
    """The evaluation corpora (shared/data/README.md): ``$SLEEPD_DATA``, else ``../shared/data``
    beside the checkout, else ``/work/shared/data``."""
    if os.environ.get("SLEEPD_DATA"):
        return Path(os.environ["SLEEPD_DATA"])
    beside = Path(__file__).resolve().parents[2] / "shared" / "data"
    return beside if beside.is_dir() else Path("/work/shared/data")


DATA_DIR = data_dir()
TAU2_RETAIL = DATA_DIR / "tau2" / "retail" / "db.json"
TAU2_AIRLINE = DATA_DIR / "tau2" / "airline" / "db.json"
#: the loaded rows' updated_at: fixed, so two loads of the same data hash the same
LOADED_AT = datetime(2025, 1, 1)


def _stamp() -> Column[Any]:
    return Column("updated_at", DateTime, nullable=True, index=True)


def _payment_methods(metadata: MetaData, schema: str | None, money: str) -> Table:
    """A user's payment methods; ``money`` names the column of a gift card's balance (a voucher's amount)."""
    return Table("payment_methods", metadata, Column("payment_method_id", String(64), primary_key=True),
                 Column("user_id", String(64), index=True), Column("source", String(32)), Column("brand", String(32)),
                 Column("last_four", String(8)), Column(money, Float), _stamp(), schema=schema)


def _method_rows(user: dict[str, Any], money: str) -> list[dict[str, Any]]:
    return [{"payment_method_id": method["id"], "user_id": user["user_id"], "source": method["source"],
             "brand": method.get("brand"), "last_four": method.get("last_four"), money: method.get(money),
             "updated_at": LOADED_AT} for method in user["payment_methods"].values()]


def retail_tables(metadata: MetaData, schema: str | None = None) -> dict[str, Table]:
    """The four tables, declared on ``metadata``."""
    return {
        "users": Table("users", metadata, Column("user_id", String(64), primary_key=True),
                       Column("first_name", String(128)), Column("last_name", String(128)),
                       Column("email", String(256)), Column("address1", String(256)), Column("address2", String(256)),
                       Column("city", String(128)), Column("state", String(64)), Column("country", String(64)),
                       Column("zip", String(32)), _stamp(), schema=schema),
        "payment_methods": _payment_methods(metadata, schema, "balance"),
        "orders": Table("orders", metadata, Column("order_id", String(32), primary_key=True),
                        Column("user_id", String(64), index=True), Column("status", String(64)),
                        Column("address", Text), Column("items", Text), Column("fulfillments", Text),
                        Column("payment_history", Text), _stamp(), schema=schema),
        "products": Table("products", metadata, Column("product_id", String(32), primary_key=True),
                          Column("name", String(128)), Column("variants", Text), _stamp(), schema=schema),
    }


def _rows(db: dict[str, Any], users: Sequence[str] | None) -> dict[str, list[dict[str, Any]]]:
    keep = set(users) if users is not None else None
    out: dict[str, list[dict[str, Any]]] = {"users": [], "payment_methods": [], "orders": [], "products": []}
    for user in db["users"].values():
        if keep is not None and user["user_id"] not in keep:
            continue
        out["users"].append({"user_id": user["user_id"], **user["name"], "email": user["email"],
                             **{k: user["address"].get(k) for k in ("address1", "address2", "city", "state",
                                                                    "country", "zip")},
                             "updated_at": LOADED_AT})
        out["payment_methods"] += _method_rows(user, "balance")
    for order in db["orders"].values():
        if keep is not None and order["user_id"] not in keep:
            continue
        out["orders"].append({
            "order_id": order["order_id"], "user_id": order["user_id"], "status": order["status"],
            **{k: json.dumps(order[k]) for k in ("address", "items", "fulfillments", "payment_history")},
            "updated_at": LOADED_AT})
    for product in db["products"].values():
        out["products"].append({"product_id": product["product_id"], "name": product["name"],
                                "variants": json.dumps(product["variants"]), "updated_at": LOADED_AT})
    return out


def load_tau2_retail(url: str, schema: str | None = None, users: Iterable[str] | None = None,
                     path: Path = TAU2_RETAIL) -> dict[str, int]:
    """Create the retail tables in the database at ``url`` (in ``schema`` if given, created if
    missing) and fill them, optionally with only some ``users`` and their orders. Existing tables
    of those names are dropped first. Returns rows loaded per table."""
    db = json.loads(path.read_text(encoding="utf-8"))
    return _load(url, schema, retail_tables, _rows(db, list(users) if users is not None else None))


def _load(url: str, schema: str | None, declare: Callable[[MetaData, str | None], dict[str, Table]],
          rows: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    engine = create_engine(url)
    try:
        metadata = MetaData()
        tables = declare(metadata, schema)
        with engine.begin() as conn:
            if schema is not None and engine.dialect.name != "sqlite":
                conn.execute(CreateSchema(schema, if_not_exists=True))
            metadata.drop_all(conn)
            metadata.create_all(conn)
            for name, table in tables.items():
                if rows[name]:
                    conn.execute(insert(table), rows[name])
    finally:
        engine.dispose()
    return {name: len(r) for name, r in rows.items()}


def tau2_retail_source(url: str, name: str = "retail", schema: str | None = None,
                       **options: Any) -> SqlSource:
    """The sql source that watches the loaded tables: one item per user, with their payment
    methods and orders (products are reference data, not part of an account)."""
    tables = (SqlTable("users", "user_id", updated_at="updated_at"),
              SqlTable("orders", "user_id", updated_at="updated_at", id="order_id"),
              SqlTable("payment_methods", "user_id", updated_at="updated_at", id="payment_method_id"))
    return SqlSource(name=name, url=url, tables=tables, db_schema=schema, **options)


def airline_tables(metadata: MetaData, schema: str | None = None) -> dict[str, Table]:
    """The three airline tables, declared on ``metadata`` (flights are reference data: left out)."""
    return {
        "users": Table("users", metadata, Column("user_id", String(64), primary_key=True),
                       Column("first_name", String(128)), Column("last_name", String(128)),
                       Column("email", String(256)), Column("dob", String(16)), Column("membership", String(32)),
                       Column("address", Text), Column("saved_passengers", Text), _stamp(), schema=schema),
        "payment_methods": _payment_methods(metadata, schema, "amount"),
        "reservations": Table("reservations", metadata, Column("reservation_id", String(16), primary_key=True),
                              Column("user_id", String(64), index=True), Column("status", String(32)),
                              Column("origin", String(8)), Column("destination", String(8)),
                              Column("flight_type", String(16)), Column("cabin", String(32)),
                              Column("flights", Text), Column("passengers", Text), Column("payment_history", Text),
                              Column("total_baggages", Integer), Column("nonfree_baggages", Integer),
                              Column("insurance", String(8)), Column("created_at", String(32)), _stamp(),
                              schema=schema),
    }


def load_tau2_airline(url: str, schema: str | None = None, users: Iterable[str] | None = None,
                      path: Path = TAU2_AIRLINE) -> dict[str, int]:
    """Create and fill the airline tables as :func:`load_tau2_retail` does the retail ones."""
    db = json.loads(path.read_text(encoding="utf-8"))
    keep = set(users) if users is not None else None
    rows: dict[str, list[dict[str, Any]]] = {"users": [], "payment_methods": [], "reservations": []}
    for user in db["users"].values():
        if keep is not None and user["user_id"] not in keep:
            continue
        rows["users"].append({"user_id": user["user_id"], **user["name"], "email": user["email"], "dob": user["dob"],
                              "membership": user["membership"], "address": json.dumps(user["address"]),
                              "saved_passengers": json.dumps(user["saved_passengers"]), "updated_at": LOADED_AT})
        rows["payment_methods"] += _method_rows(user, "amount")
    for booking in db["reservations"].values():
        if keep is not None and booking["user_id"] not in keep:
            continue
        rows["reservations"].append({
            **{k: booking.get(k) for k in ("reservation_id", "user_id", "origin", "destination", "flight_type",
                                           "cabin", "total_baggages", "nonfree_baggages", "insurance",
                                           "created_at")},
            "status": booking.get("status") or "booked",
            **{k: json.dumps(booking.get(k) or []) for k in ("flights", "passengers", "payment_history")},
            "updated_at": LOADED_AT})
    return _load(url, schema, airline_tables, rows)


def tau2_airline_source(url: str, name: str = "airline", schema: str | None = None,
                        **options: Any) -> SqlSource:
    """One item per airline user: their payment methods and reservations."""
    tables = (SqlTable("users", "user_id", updated_at="updated_at"),
              SqlTable("reservations", "user_id", updated_at="updated_at", id="reservation_id"),
              SqlTable("payment_methods", "user_id", updated_at="updated_at", id="payment_method_id"))
    return SqlSource(name=name, url=url, tables=tables, db_schema=schema, **options)
