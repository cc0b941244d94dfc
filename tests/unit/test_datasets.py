"""The REES46 converter and the synthetic generator (suppressor.core.datasets)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from suppressor.core.datasets import rees46, synthetic
from suppressor.wire.catalog import CatalogItem
from suppressor.wire.events import Browse, Cart, Event, Purchase, parse_event
from suppressor.wire.outputs import DeadLetter, SourcePosition
from suppressor.wire.timefmt import parse_to_ms

DATA = rees46.default_data_dir()
MULTI = DATA / "multi-category-2019-10-01.csv"
COSMETICS = DATA / "cosmetics"

needs_data = pytest.mark.skipif(not MULTI.is_file(), reason=f"REES46 samples not in {DATA}")

MC_HEADER = (
    "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session"
)


def _events(lines: list[str]) -> list[Event]:
    """Every line parsed; fails on the first that does not parse."""
    events = []
    for number, line in enumerate(lines, 1):
        event = parse_event(line.encode(), SourcePosition(file="test", line=number))
        assert not isinstance(event, DeadLetter), event
        events.append(event)
    return events


def _read(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def multi() -> rees46.Conversion:
    return rees46.convert([MULTI])


@needs_data
def test_multi_category_sample_converts_with_one_dead_letter(multi: rees46.Conversion) -> None:
    counts = multi.counts()
    assert counts["browse"] == 17_055
    assert counts["cart.add"] == 165
    assert "cart.remove" not in counts
    # every purchase row of this sample is an order of its own
    assert counts["purchase"] == 214
    assert counts["events"] == 17_434
    assert counts["users"] == 4_504
    assert counts["catalog_items"] == 6_493

    [dead] = multi.dead_letters
    assert dead.error_code == "bad_csv_row"
    assert dead.source == SourcePosition(file=MULTI.name, line=17_436)
    assert dead.original.startswith("2019-10-01 02:50:00 UTC,view,10900305,")


@needs_data
def test_multi_category_lines_parse_and_keep_order(
    multi: rees46.Conversion, tmp_path: Path
) -> None:
    written = rees46.write(multi, tmp_path)
    events = _events(_read(written["events"]))
    assert len({e.event_id for e in events}) == len(events)
    times = [e.ts for e in events]
    assert times == sorted(times)
    first = events[0]
    assert isinstance(first, Browse)
    assert first.event_id == "rees46-multi-category-2019-10-01-2"
    assert (first.user_id, first.item_id, first.page) == ("541312140", "44600062", "product")
    assert first.ts == parse_to_ms("2019-10-01T00:00:00Z")
    assert json.loads(_read(written["events"])[0])["ts"] == "2019-10-01T00:00:00Z"

    catalog = [CatalogItem.model_validate_json(line) for line in _read(written["catalog"])]
    by_id = {item.item_id: item for item in catalog}
    assert len(by_id) == len(catalog) == 6_493
    heater = by_id["3900821"]
    assert heater.category == "appliances.environment.water_heater"
    assert heater.one_off is True
    assert heater.kind == "product"
    assert heater.similar is None
    assert {"brand:aqua", "cat:appliances", "price:10-50"} <= set(heater.tags)
    uncoded = by_id["44600062"]
    assert uncoded.category == "cat-2103807459595387724"
    assert uncoded.one_off is False
    event_items = {getattr(e, "item_id", None) for e in events} - {None}
    event_items |= {line.item_id for e in events if isinstance(e, Purchase) for line in e.items}
    assert event_items == set(by_id)

    dlq = [DeadLetter.model_validate_json(line) for line in _read(written["dlq"])]
    assert [d.source.line for d in dlq] == [17_436]


@needs_data
def test_no_session_id_in_the_output(multi: rees46.Conversion, tmp_path: Path) -> None:
    text = rees46.write(multi, tmp_path)["events"].read_text()
    assert "72d76fde-8bb3-4e00-8c23-a032dfed738c" not in text  # the first row's session


@needs_data
def test_cosmetics_sample_has_removes_orders_and_a_catalog(tmp_path: Path) -> None:
    files, items = rees46.default_paths(DATA, cosmetics=True)
    assert [f.name for f in files] == [
        "data_2022_oct.csv",
        "data_2022_nov.csv",
        "data_2022_dec.csv",
        "data_2023_jan.csv",
        "data_2023_feb.csv",
    ]
    conversion = rees46.convert(files, catalog_csv=items)
    counts = conversion.counts()
    assert counts["browse"] == 2_321
    assert counts["cart.add"] == 1_300
    assert counts["cart.remove"] == 1_051
    assert counts["users"] == 893
    assert counts["catalog_items"] == 2_832
    assert not conversion.dead_letters
    orders = [e for e in conversion.events if e["type"] == "purchase"]
    assert sum(len(order["items"]) for order in orders) == 323  # all purchase rows
    assert len(orders) < 323  # grouped by session and time
    assert max(len(order["items"]) for order in orders) > 1
    written = rees46.write(conversion, tmp_path)
    parsed = _events(_read(written["events"]))
    assert any(isinstance(e, Cart) and e.action == "remove" for e in parsed)
    catalog = [CatalogItem.model_validate_json(line) for line in _read(written["catalog"])]
    assert all(item.category.startswith("cat-") or "." in item.category for item in catalog)
    # the item file fills in what the event rows lack (it has several rows per product)
    assert sum(any(t.startswith("brand:") for t in item.tags) for item in catalog) > 1_000


def test_purchase_rows_of_one_session_and_time_are_one_order(tmp_path: Path) -> None:
    csv = tmp_path / "shop.csv"
    csv.write_text(
        "\n".join(
            [
                MC_HEADER,
                "2019-10-01 00:00:00 UTC,view,1,10,electronics.audio.headphone,sony,30.5,7,s1",
                "2019-10-01 00:00:05 UTC,cart,1,10,electronics.audio.headphone,sony,30.5,7,s1",
                "2019-10-01 00:01:00 UTC,purchase,1,10,electronics.audio.headphone,sony,30.5,7,s1",
                "2019-10-01 00:01:00 UTC,purchase,2,11,,,1200,7,s1",
                "2019-10-01 00:01:00 UTC,purchase,3,12,,acme,,8,s2",
                "2019-10-01 00:01:00 UTC,purchase,1,10,electronics.audio.headphone,sony,30.5,7,s1",
                "2019-10-01 00:02:00 UTC,purchase,2,11,,,1200,7,s1",
                "2019-10-01 00:02:00 UTC,remove_from_cart,2,11,,,1200,7,s1",
                "2019-10-01 00:02:00 UTC,wishlist,2,11,,,1200,7,s1",
                "2019-10-01 25:02:00 UTC,view,2,11,,,1200,7,s1",
                "2019-10-01 00:03:00 UTC,view,2,11,,,-1,7,s1",
                "",
            ]
        )
    )
    conversion = rees46.convert([csv])
    kinds = [(e["type"], e.get("action")) for e in conversion.events]
    assert kinds == [
        ("browse", None),
        ("cart", "add"),
        ("purchase", None),
        ("purchase", None),
        ("purchase", None),
        ("cart", "remove"),
    ]
    order, other, later = conversion.events[2:5]
    assert order["event_id"] == "rees46-shop-4"
    assert order["items"] == [
        {"item_id": "1", "quantity": 2, "price": 30.5},
        {"item_id": "2", "quantity": 1, "price": 1200.0},
    ]
    assert other["user_id"] == "8" and other["items"] == [{"item_id": "3", "quantity": 1}]
    assert later["ts"] == "2019-10-01T00:02:00Z"
    assert len({order["order_id"], other["order_id"], later["order_id"]}) == 3
    assert "s1" not in order["order_id"]
    assert {e["event_id"] for e in conversion.events} == {
        "rees46-shop-2",
        "rees46-shop-3",
        "rees46-shop-4",
        "rees46-shop-6",
        "rees46-shop-8",
        "rees46-shop-9",
    }
    assert len(_events([rees46.dumps(e) for e in conversion.events])) == 6
    codes = [(d.source.line, d.error_code) for d in conversion.dead_letters]
    assert codes == [(10, "unknown_type"), (11, "bad_timestamp"), (12, "invalid_field")]
    catalog = {item["item_id"]: CatalogItem.model_validate(item) for item in conversion.catalog}
    assert catalog["1"].one_off and catalog["1"].title == "sony headphone"
    assert "price:1000+" in catalog["2"].tags and catalog["2"].category == "cat-11"
    assert catalog["3"].title == "acme 3"


def test_a_file_without_the_rees46_header_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.csv"
    other.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ValueError, match="event_time"):
        rees46.convert([other])


@needs_data
def test_conversion_is_byte_deterministic(tmp_path: Path) -> None:
    assert rees46.main(["--out", str(tmp_path / "a")]) == 0
    assert rees46.main(["--out", str(tmp_path / "b"), str(MULTI)]) == 0
    for name in ("events.jsonl", "catalog.jsonl", "dlq.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


@needs_data
def test_cosmetics_command_line(tmp_path: Path) -> None:
    assert rees46.main(["--cosmetics", "--out", str(tmp_path)]) == 0
    lines = _read(tmp_path / "events.jsonl")
    # 2,321 views + 1,300 adds + 1,051 removes, and the orders
    assert len(lines) == 4_672 + sum('"type":"purchase"' in line for line in lines)
    assert _read(tmp_path / "dlq.jsonl") == []


def test_missing_input_is_a_usage_error(tmp_path: Path) -> None:
    assert rees46.main(["--out", str(tmp_path), str(tmp_path / "nope.csv")]) == 2


@pytest.fixture(scope="module")
def small_stream(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, int]]:
    out = tmp_path_factory.mktemp("synthetic")
    counts = synthetic.generate(
        out / "events.jsonl", out / "catalog.jsonl", events=5_000, users=500, seed=7
    )
    return out / "events.jsonl", out / "catalog.jsonl", counts


@needs_data
def test_synthetic_stream_has_the_requested_size(
    small_stream: tuple[Path, Path, dict[str, int]],
) -> None:
    events_path, catalog_path, counts = small_stream
    lines = _read(events_path)
    assert len(lines) == 5_000 == counts["total"]
    assert sum(counts[kind] for kind in synthetic.EVENT_TYPES) == 5_000
    assert counts["cart"] == counts["cart.add"] + counts["cart.remove"]
    parsed = _events(lines)
    assert Counter(e.type for e in parsed) == {
        kind: counts[kind] for kind in synthetic.EVENT_TYPES if counts[kind]
    }
    assert len({e.user_id for e in parsed}) == 500 == counts["users"]
    assert len({e.event_id for e in parsed}) == 5_000
    assert counts["browse"] > 4_000 and counts["cart.add"] > 0 and counts["purchase"] > 0

    catalog = [CatalogItem.model_validate_json(line) for line in _read(catalog_path)]
    assert len(catalog) == counts["catalog_items"]
    known = {item.item_id for item in catalog}
    for event in parsed:
        items = [line.item_id for line in event.items] if isinstance(event, Purchase) else []
        items += [item] if (item := getattr(event, "item_id", None)) else []
        assert set(items) <= known
    destinations = [item for item in catalog if item.kind == "destination"]
    assert destinations and all(set(item.similar or ()) <= known for item in destinations)


@needs_data
def test_synthetic_stream_is_in_time_order_up_to_the_jitter(
    small_stream: tuple[Path, Path, dict[str, int]],
) -> None:
    parsed = _events(_read(small_stream[0]))
    latest = 0
    late = 0
    for event in parsed:
        ts = event.ts
        assert ts >= latest - 30_000
        late += ts < latest
        latest = max(latest, ts)
    assert late > 0  # some events do arrive late


@needs_data
def test_synthetic_stream_is_deterministic(
    small_stream: tuple[Path, Path, dict[str, int]], tmp_path: Path
) -> None:
    counts = synthetic.generate(
        tmp_path / "e.jsonl", tmp_path / "c.jsonl", events=5_000, users=500, seed=7
    )
    assert counts == small_stream[2]
    assert (tmp_path / "e.jsonl").read_bytes() == small_stream[0].read_bytes()
    assert (tmp_path / "c.jsonl").read_bytes() == small_stream[1].read_bytes()
    synthetic.generate(tmp_path / "x.jsonl", tmp_path / "y.jsonl", events=5_000, users=500)
    assert (tmp_path / "x.jsonl").read_bytes() != small_stream[0].read_bytes()


@needs_data
def test_synthetic_jitter_is_configurable(tmp_path: Path) -> None:
    assert (
        synthetic.main(
            ["--events", "3000", "--users", "300", "--max-jitter", "0", "--out", str(tmp_path)]
        )
        == 0
    )
    times = [json.loads(line)["ts"] for line in _read(tmp_path / "events.jsonl")]
    assert times == sorted(times)


def test_synthetic_refuses_fewer_events_than_users(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="one event per user"):
        synthetic.generate(tmp_path / "e", tmp_path / "c", events=10, users=20)
