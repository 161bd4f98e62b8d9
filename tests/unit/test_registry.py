from pathlib import Path

import pytest

from clickstream.core.stores import RegistryError, load_registry, parse_store_file

GOOD = """\
store_id: {sid}
display_name: Test store
database: {db}
timezone: Europe/Berlin
earliest_ds: 2026-01-01
"""


def write(dir_: Path, name: str, text: str) -> Path:
    path = dir_ / name
    path.write_text(text)
    return path


def test_shipped_registry_has_three_zones():
    reg = load_registry()
    zones = {s.timezone for s in reg}
    assert {"America/New_York", "Asia/Kolkata"} <= zones
    assert len(reg) >= 3
    for store in reg:
        assert store.schedule_interval_seconds == 1800
        assert store.collision_strategy in ("ENQUEUE", "CANCEL_NEW")


def test_defaults(tmp_path):
    store = parse_store_file(
        write(tmp_path, "de-berlin.yaml", GOOD.format(sid="de-berlin", db="de_berlin"))
    )
    assert store.active is True
    assert store.schedule_interval_seconds == 1800
    assert store.collision_strategy == "ENQUEUE"


@pytest.mark.parametrize(
    ("replace", "field", "words"),
    [
        (("timezone: Europe/Berlin", "timezone: Mars/Olympus"), "timezone", "unknown IANA"),
        (("database: de_berlin", "database: a;drop"), "database", "safe identifier"),
        (("database: de_berlin", "database: ../x"), "database", "safe identifier"),
        (("database: de_berlin", "database: DeBerlin"), "database", "safe identifier"),
        (("earliest_ds: 2026-01-01", "earliest_ds: someday"), "earliest_ds", "date"),
        (("store_id: de-berlin", "store_id: de-berlin\ncolour: red"), "colour", "unknown key"),
        (
            ("earliest_ds: 2026-01-01", "earliest_ds: 2026-01-01\ncollision_strategy: SKIP"),
            "collision_strategy",
            "ENQUEUE",
        ),
        (
            ("earliest_ds: 2026-01-01", "earliest_ds: 2026-01-01\nschedule_interval_seconds: 5"),
            "schedule_interval_seconds",
            "greater than or equal",
        ),
    ],
)
def test_bad_field_names_file_and_field(tmp_path, replace, field, words):
    text = GOOD.format(sid="de-berlin", db="de_berlin").replace(*replace)
    path = write(tmp_path, "de-berlin.yaml", text)
    with pytest.raises(RegistryError) as exc:
        parse_store_file(path)
    msg = str(exc.value)
    assert "de-berlin.yaml" in msg
    assert f": {field}:" in msg
    assert words in msg


@pytest.mark.parametrize("bad_id", ["../x", "a;drop", "Upper", "-lead", "trail-", "x", "a__b"])
def test_bad_slug(tmp_path, bad_id):
    path = write(
        tmp_path,
        "bad.yaml",
        GOOD.format(sid=bad_id, db="ok_db").replace("store_id: ../x", 'store_id: "../x"'),
    )
    with pytest.raises(RegistryError) as exc:
        parse_store_file(path)
    assert "bad.yaml: store_id:" in str(exc.value)


def test_file_name_must_match_store_id(tmp_path):
    path = write(tmp_path, "other.yaml", GOOD.format(sid="de-berlin", db="de_berlin"))
    with pytest.raises(RegistryError, match=r"other.yaml: store_id: .*must match the file name"):
        parse_store_file(path)


def test_malformed_yaml(tmp_path):
    path = write(tmp_path, "de-berlin.yaml", "store_id: [unclosed\n")
    with pytest.raises(RegistryError, match="de-berlin.yaml: not valid YAML"):
        parse_store_file(path)


def test_not_a_mapping(tmp_path):
    path = write(tmp_path, "de-berlin.yaml", "- just\n- a list\n")
    with pytest.raises(RegistryError, match="expected a mapping"):
        parse_store_file(path)


def test_duplicate_ids_and_databases(tmp_path):
    write(tmp_path, "de-berlin.yaml", GOOD.format(sid="de-berlin", db="shared"))
    write(tmp_path, "de-berlin.yml", GOOD.format(sid="de-berlin", db="other"))
    write(tmp_path, "fr-paris.yaml", GOOD.format(sid="fr-paris", db="shared"))
    with pytest.raises(RegistryError) as exc:
        load_registry(tmp_path)
    msg = str(exc.value)
    assert "store_id: duplicate 'de-berlin'" in msg
    assert "fr-paris.yaml: database: 'shared' is already used" in msg


def test_all_errors_reported_together(tmp_path):
    write(tmp_path, "a-one.yaml", GOOD.format(sid="a-one", db="a;b"))
    write(
        tmp_path,
        "b-two.yaml",
        GOOD.format(sid="b-two", db="b_two").replace("Europe/Berlin", "Nowhere"),
    )
    with pytest.raises(RegistryError) as exc:
        load_registry(tmp_path)
    assert "a-one.yaml: database" in str(exc.value)
    assert "b-two.yaml: timezone" in str(exc.value)


def test_unknown_store_lists_known(tmp_path):
    with pytest.raises(RegistryError, match="known stores: au-sydney, in-mumbai, us-flagship"):
        load_registry().get("nope")


def test_duplicate_key_in_one_file(tmp_path):
    text = GOOD.format(sid="de-berlin", db="de_berlin") + "timezone: Asia/Tokyo\n"
    path = write(tmp_path, "de-berlin.yaml", text)
    with pytest.raises(
        RegistryError, match="de-berlin.yaml: not valid YAML.*duplicate key 'timezone'"
    ):
        parse_store_file(path)
