"""The feature declarations and their executions, on hand-made transactions whose features are known in advance."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from fraudlab.detect import features as F
from fraudlab.exceptions import DataValidationError, InvalidParameterError

T0 = 1_735_689_600_000  # 2025-01-01T00:00:00Z in ms
HOUR = F.HOUR_MS


def _row(ts: int, user: int, dest: int, amount: float, *, kind: str = "TRANSFER", ip: str = "", country: str = "",
         lat: float = np.nan, lon: float = np.nan, asn: int = -1, hosting: bool = False, **balances: float) -> dict:
    return {
        "timestamp": ts, "user_id": user, "dest_user_id": dest, "amount": amount, "type": kind,
        "old_balance_orig": balances.get("old_orig", 1_000_000.0), "new_balance_orig": balances.get("new_orig", 0.0),
        "old_balance_dest": balances.get("old_dest", 0.0), "new_balance_dest": balances.get("new_dest", 0.0),
        "dest_is_merchant": False, "ip_address": ip, "ip_country": country, "ip_latitude": lat, "ip_longitude": lon,
        "ip_asn": asn, "ip_hosting": hosting,
    }


def _table(rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    table.insert(0, "transaction_id", [f"t{i}" for i in range(len(table))])
    return table


def _both(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features from the table executor and from the one-record executor (indexed by transaction_id)."""
    batch = F.compute_features(table).set_axis(table["transaction_id"].to_numpy())
    records = F.feature_inputs(table).to_dict("records")
    streamed = F.StreamingFeatures().run(records)
    return batch, streamed.loc[batch.index]


def test_window_includes_exactly_one_hour_back_and_excludes_a_millisecond_more() -> None:
    table = _table([_row(T0, 1, 9, 10.0), _row(T0 + 1, 1, 9, 20.0), _row(T0 + HOUR, 1, 9, 30.0),
                    _row(T0 + HOUR + 1, 1, 9, 40.0)])  # T0 is 1 h + 1 ms before it: out
    for features in _both(table):
        assert features["acct_count_1h"].tolist() == [1, 2, 3, 3]
        assert features["acct_sum_1h"].tolist() == [10.0, 30.0, 60.0, 90.0]
        assert features["acct_max_1h"].tolist() == [10.0, 20.0, 30.0, 40.0]
        assert features["acct_count_24h"].tolist() == [1, 2, 3, 4]


def test_transactions_at_the_same_instant_see_each_other() -> None:
    table = _table([_row(T0, 1, 8, 5.0), _row(T0, 1, 9, 7.0)])
    for features in _both(table):
        assert features["acct_count_1h"].tolist() == [2, 2]
        assert features["acct_sum_1h"].tolist() == [12.0, 12.0]


def test_money_is_summed_exactly_in_cents() -> None:
    table = _table([_row(T0 + i, 1, 9, 0.1) for i in range(10)])
    for features in _both(table):
        assert features["acct_sum_1h"].iloc[-1] == 1.0  # ten float 0.1s add up to 0.9999999999999999


def test_novelty_flags_the_first_destination_address_country_and_network_of_an_account() -> None:
    table = _table([
        _row(T0, 1, 9, 1.0, ip="1.1.1.1", country="IN", asn=10),
        _row(T0 + 1000, 1, 9, 1.0, ip="1.1.1.1", country="IN", asn=10),
        _row(T0 + 2000, 1, 8, 1.0, ip="2.2.2.2", country="IN", asn=11),
        _row(T0 + 3000, 1, 8, 1.0, ip="3.3.3.3", country="US", asn=11),
        _row(T0 + 4000, 1, 7, 1.0),  # no address: nothing about it is new
    ])
    for features in _both(table):
        assert features["new_destination"].tolist() == [1, 0, 1, 0, 1]
        assert features["new_ip"].tolist() == [1, 0, 1, 1, 0]
        assert features["new_country"].tolist() == [1, 0, 0, 1, 0]
        assert features["new_asn"].tolist() == [1, 0, 1, 0, 0]


def test_novelty_forgets_after_the_memory_window() -> None:
    table = _table([_row(T0, 1, 9, 1.0), _row(T0 + F.MEMORY_MS + 1, 1, 9, 1.0)])
    for features in _both(table):
        assert features["new_destination"].tolist() == [1, 1]


def test_impossible_travel_gives_distance_and_implied_speed_since_the_previous_transaction() -> None:
    delhi, london = (28.6139, 77.2090), (51.5072, -0.1276)
    table = _table([_row(T0, 1, 9, 1.0, ip="1.1.1.1", country="IN", lat=delhi[0], lon=delhi[1]),
                    _row(T0 + 1_800_000, 1, 9, 1.0, ip="2.2.2.2", country="GB", lat=london[0], lon=london[1]),
                    _row(T0 + 1_810_000, 1, 9, 1.0, ip="2.2.2.2", country="GB", lat=london[0], lon=london[1])])
    for features in _both(table):
        assert features["seconds_since_previous"].tolist() == [F.NO_PREVIOUS, 1800.0, 10.0]
        km = features["km_since_previous"].tolist()
        assert km[0] == F.NO_PREVIOUS and km[1] == pytest.approx(6_710, rel=0.01) and km[2] == 0.0
        assert features["kmh_since_previous"].iloc[1] == pytest.approx(km[1] * 2, rel=1e-9)  # half an hour


def test_received_then_cashed_out_reads_what_the_account_received_in_the_hour_before() -> None:
    victim, mule, shop = 1, 2, 3
    table = _table([
        _row(T0, victim, mule, 5_000.0),                               # the transfer to the mule
        _row(T0 + 600_000, mule, shop, 4_900.0, kind="CASH_OUT"),      # cashed out ten minutes later
        _row(T0 + 2 * HOUR, mule, shop, 100.0, kind="CASH_OUT"),       # too late to be linked
    ])
    for features in _both(table):
        assert features["received_1h"].tolist() == [0.0, 5_000.0, 0.0]
        assert features["cashout_of_received"].tolist() == [0.0, 0.98, 0.0]
        assert features["dest_count_1h"].tolist() == [1, 1, 1]
        assert features["dest_sum_1h"].tolist() == [5_000.0, 4_900.0, 100.0]


def test_distinct_accounts_behind_one_address() -> None:
    table = _table([_row(T0 + i * 1000, user, 9, 1.0, ip="5.5.5.5") for i, user in enumerate([1, 2, 1, 3])]
                   + [_row(T0 + 2 * HOUR, 4, 9, 1.0, ip="5.5.5.5"), _row(T0 + 2 * HOUR, 5, 9, 1.0)])
    for features in _both(table):
        assert features["ip_accounts_1h"].tolist() == [1, 2, 2, 3, 1, 0]


def test_balance_errors_follow_paysim_bookkeeping() -> None:
    table = _table([_row(T0, 1, 9, 100.0, old_orig=100.0, new_orig=0.0, old_dest=0.0, new_dest=0.0)])
    features = F.compute_features(table)
    assert features["error_balance_orig"].iloc[0] == 0.0
    assert features["error_balance_dest"].iloc[0] == 100.0  # the destination's balance did not move
    assert features["orig_zero_after"].iloc[0] == 1.0 and features["amount_to_orig_balance"].iloc[0] == 100 / 101


def test_streaming_releases_in_event_time_and_agrees_on_out_of_order_records_within_the_lateness() -> None:
    ordered = _table([_row(T0 + i * 1500, 1 + i % 2, 9, float(i + 1)) for i in range(8)])
    inputs = F.feature_inputs(ordered)
    arrival = [1, 0, 3, 2, 5, 4, 7, 6]  # each pair swapped: 1.5 s apart, inside the 5 s lateness
    streaming = F.StreamingFeatures()
    released = [row["transaction_id"] for i in arrival for row in streaming.push(inputs.iloc[i].to_dict())]
    assert released == ["t0", "t1", "t2", "t3"]  # held until the watermark passed them
    released += [row["transaction_id"] for row in streaming.flush()]
    assert released == [f"t{i}" for i in range(8)] and streaming.late == []
    batch = F.compute_features(ordered).set_axis(ordered["transaction_id"].to_numpy())
    streamed = F.StreamingFeatures().run(inputs.iloc[arrival].to_dict("records"))
    pd.testing.assert_frame_equal(streamed.loc[batch.index], batch, check_names=False)


def test_a_record_behind_the_watermark_is_late_and_dropped() -> None:
    inputs = F.feature_inputs(_table([_row(T0 + 10_000, 1, 9, 1.0), _row(T0, 1, 9, 1.0)]))
    streaming = F.StreamingFeatures(lateness_ms=5_000)
    emitted = [row for record in inputs.to_dict("records") for row in streaming.push(record)] + streaming.flush()
    assert [row["transaction_id"] for row in emitted] == ["t0"] and streaming.late == ["t1"]


def test_cold_features_are_those_of_each_accounts_first_transaction() -> None:
    table = _table([_row(T0 + i, 100 + i, 200 + i, 10.0 * (i + 1), kind=kind)
                    for i, kind in enumerate(["TRANSFER", "CASH_OUT", "PAYMENT"])])
    pd.testing.assert_frame_equal(F.cold_features(table), F.compute_features(table))


def test_paysim_rows_derive_accounts_time_and_merchants_from_their_names() -> None:
    table = pd.DataFrame({"step": [1, 2], "type": ["TRANSFER", "PAYMENT"], "amount": [5.0, 6.0],
                          "name_orig": ["C123", "C123"], "name_dest": ["C77", "M88"],
                          **{column: [0.0, 0.0] for column in ("old_balance_orig", "new_balance_orig",
                                                               "old_balance_dest", "new_balance_dest")}})
    inputs = F.feature_inputs(table)
    assert inputs["user_id"].tolist() == [123, 123] and inputs["dest_user_id"].tolist() == [77, 88]
    assert inputs["timestamp"].tolist() == [HOUR, 2 * HOUR] and inputs["dest_is_merchant"].tolist() == [False, True]
    assert F.compute_features(table)["seconds_since_previous"].tolist() == [F.NO_PREVIOUS, 3600.0]


def test_missing_columns_are_named() -> None:
    table = _table([_row(T0, 1, 9, 1.0)]).drop(columns=["amount", "old_balance_dest"])
    with pytest.raises(DataValidationError, match=r"'amount'(.|\n)*'old_balance_dest'"):
        F.feature_inputs(table)


def test_addresses_without_a_geoip_database_are_refused() -> None:
    table = _table([_row(T0, 1, 9, 1.0, ip="8.8.8.8")]).drop(columns=list(F.ENRICHMENT_COLUMNS))
    with pytest.raises(InvalidParameterError, match=r"'8\.8\.8\.8'.*fraudlab geoip fetch"):
        F.feature_inputs(table)


def test_every_feature_is_in_exactly_one_family_and_every_raw_column_is_declared_once() -> None:
    assert len(F.FEATURES) == len(set(F.FEATURES)) == sum(len(names) for names in F.FAMILIES.values())
    assert len(F.RAW_COLUMNS) == len(set(F.RAW_COLUMNS))


def test_the_schema_hash_changes_with_any_declaration(monkeypatch: pytest.MonkeyPatch) -> None:
    before = F.schema_hash()
    assert before == F.schema_hash()
    changed = (dataclasses.replace(F.WINDOWS[0], span_ms=2 * HOUR), *F.WINDOWS[1:])
    monkeypatch.setattr(F, "WINDOWS", changed)
    assert F.schema_hash() != before


def test_flink_sql_nests_one_over_level_per_window_shape_and_yields_every_declaration() -> None:
    query = F.flink_sql("enriched")
    for name in F.RAW_COLUMNS:
        assert query.count(f"AS `{name}`") == 1, name
    shapes = {(w.key, w.events_key, w.span_ms) for w in F.WINDOWS}
    assert query.count(" OVER w AS ") >= len(F.WINDOWS) and query.count("WINDOW w AS") == len(shapes) + 1
    assert "PARTITION BY `user_id` ORDER BY `event_time` RANGE BETWEEN INTERVAL '1' HOUR PRECEDING" in query
    assert "PARTITION BY `user_id`, `dest_user_id` ORDER BY `event_time` RANGE BETWEEN INTERVAL '30' DAY" in query
    assert "COUNT(DISTINCT `user_id`)" in query and "ROWS BETWEEN 1 PRECEDING AND CURRENT ROW" in query
    assert "COUNT(*) OVER w AS" not in query  # Flink 2.2 fails to plan a deep nest of bare COUNT(*) levels
    assert "UNION ALL" in query and "FROM `enriched`" in query and "LAG(" not in query  # LAG mis-orders ties
