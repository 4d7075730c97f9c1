"""Alignment-project configuration: validation before work starts, selections, chunking."""

import numpy as np
import pytest
import yaml

from stasnake.errors import InputError
from stasnake.io.dynamo_table import new_table
from stasnake.io.mrc import write_mrc
from stasnake.sta.project import (
    ParticleStacks,
    check_mask,
    chunk_labels,
    chunk_rows,
    load_project,
    load_projects,
    particle_index,
    referenced_project,
    select_for_average,
)

ROUND = {"iterations": 2, "cone_range": 30, "cone_sampling": 10, "inplane_range": 30, "inplane_sampling": 10,
         "refine": 2, "refine_factor": 2, "area_search": [3, 3, 4], "area_search_modus": 2, "low": 10, "high": 1,
         "dim": 32, "sym": "c6"}  # fmt: skip


def project(**changes):
    spec = {"tomograms": "all", "rounds": [dict(ROUND), {**ROUND, "iterations": 3, "area_search_modus": 3}]}
    spec.update(changes)
    return load_project("p", spec, box_size=32, tomograms=["TS_01", "TS_02"])


def test_rounds_iterations_and_shift_origins():
    p = project()
    assert p.n_iterations == 5
    assert [p.round_index(k) for k in range(1, 6)] == [0, 0, 1, 1, 1]
    assert [p.round_start(k) for k in range(1, 6)] == [1, 1, 3, 3, 3]
    # mode 2: previous iteration; mode 3: the iteration before the round's first
    assert [p.shift_origin_iteration(k) for k in range(1, 6)] == [0, 1, 2, 2, 2]
    assert p.rounds[0].area_search == (3.0, 3.0, 4.0)
    assert p.rounds[0].final_sampling_deg == 2.5
    assert p.tomograms == ("TS_01", "TS_02")
    assert project(gold_standard=True).halves == ("half1", "half2")


@pytest.mark.parametrize(
    ("changes", "round_changes", "key", "words"),
    [
        ({"colour": "red"}, {}, "p.colour", "unknown project key"),
        ({}, {"cone_smapling": 5}, "rounds[1].cone_smapling", "unknown round parameter"),
        ({}, {"cone_sampling": 0}, "rounds[1].cone_sampling", "> 0"),
        ({}, {"inplane_sampling": -3}, "rounds[1].inplane_sampling", "> 0"),
        ({}, {"dim": 64}, "rounds[1].dim", "exceeds the particle box"),
        ({}, {"low": 20}, "rounds[1].low", "beyond the Nyquist"),
        ({}, {"low": 1, "high": 2}, "rounds[1].low", "must exceed the high-pass"),
        ({}, {"area_search": [3, 3]}, "rounds[1].area_search", "one number or three"),
        ({}, {"area_search": 20}, "rounds[1].area_search", "reach the edge"),
        ({}, {"threshold_modus": 7}, "rounds[1].threshold_modus", "must be one of"),
        ({}, {"threshold_modus": 5, "threshold": 2}, "rounds[1].threshold", "fraction"),
        ({}, {"sym": "d6"}, "rounds[1].sym", "cyclic"),
        ({}, {"cone_range": 400}, "rounds[1].cone_range", ""),
        ({"tomograms": ["TS_09"]}, {}, "p.tomograms", "not in the sample list"),
        ({"chunk_size": 0}, {}, "p.chunk_size", ">= 1"),
        ({"gold_standard": "yes"}, {}, "p.gold_standard", "true or false"),
    ],
)
def test_bad_values_name_the_key(changes, round_changes, key, words):
    spec = {"rounds": [{**ROUND, **round_changes}], **changes}
    with pytest.raises(InputError) as err:
        load_project("p", spec, box_size=32, tomograms=["TS_01", "TS_02"])
    assert key in str(err.value)
    assert words in str(err.value)


def test_projects_from_a_yaml_file(tmp_path):
    path = tmp_path / "initial.yaml"
    path.write_text(yaml.safe_dump({"rounds": [ROUND], "tomograms": ["TS_02"]}))
    projects = load_projects({"initial": str(path)}, 32, ["TS_01", "TS_02"])
    assert projects["initial"].tomograms == ("TS_02",)
    path.write_text(yaml.safe_dump({"rounds": [{**ROUND, "cone_sampling": 0}]}))
    with pytest.raises(InputError, match=r"initial.yaml: rounds\[1\].cone_sampling"):
        load_projects({"initial": str(path)}, 32, ["TS_01"])
    with pytest.raises(InputError, match="does not exist"):
        load_projects({"initial": str(tmp_path / "missing.yaml")}, 32, ["TS_01"])


def test_threshold_modes():
    cc = np.array([0.1, 0.5, 0.3, 0.9, 0.7])
    assert select_for_average(cc, 0, 0).all()
    assert select_for_average(cc, 1, 0.4).tolist() == [False, True, False, True, True]
    assert select_for_average(cc, 2, 0.9).tolist() == [False, True, False, True, True]  # mean 0.5
    assert select_for_average(cc, 3, 1.0).sum() == 1  # mean + std = 0.78
    assert select_for_average(cc, 4, 2).tolist() == [False, False, False, True, True]
    assert select_for_average(cc, 5, 0.6).tolist() == [False, True, False, True, True]
    assert select_for_average(cc, 41, 2).tolist() == select_for_average(cc, 4, 2).tolist()
    # statistics use only the eligible particles
    eligible = np.array([True, True, True, False, True])
    assert select_for_average(cc, 4, 1, eligible).tolist() == [False, False, False, False, True]


@pytest.mark.parametrize("gold", [False, True])
def test_chunks_cover_every_row_once(gold):
    table = new_table(23)
    p = project(gold_standard=gold, chunk_size=5)
    rows = [chunk_rows(table, h, c, 5) for h, c in chunk_labels(table, p)]
    assert all(0 < len(r) <= 5 for r in rows)
    assert sorted(np.concatenate(rows).tolist()) == list(range(23))
    labels = chunk_labels(table, p, split_halves=True)
    assert {h for h, _ in labels} == {"half1", "half2"}
    halves = [chunk_rows(table, h, c, 5) for h, c in labels]
    assert sorted(np.concatenate(halves).tolist()) == list(range(23))
    for (h, _), r in zip(labels, halves, strict=True):
        assert np.all(table["tag"].to_numpy()[r] % 2 == (0 if h == "half1" else 1))


def test_particle_stacks_read_the_indexed_boxes(tmp_path):
    stacks, tables = {}, {}
    for ts, n in (("TS_01", 3), ("TS_02", 2)):
        boxes = np.stack([np.full((4, 4, 4), 10 * (ts == "TS_02") + i, np.float32) for i in range(n)])
        stacks[ts] = tmp_path / f"{ts}.mrc"
        write_mrc(stacks[ts], boxes, 5.4)
        tables[ts] = new_table(n)
    index = particle_index(tables, stacks)
    assert index["tag"].tolist() == [1, 2, 3, 4, 5]
    assert index["source_tag"].tolist() == [1, 2, 3, 1, 2]
    boxes = ParticleStacks(index, [4, 0, 3])
    assert len(boxes) == 3
    assert [float(boxes[i][0, 0, 0]) for i in range(3)] == [11.0, 0.0, 10.0]


def test_masks_of_the_wrong_size_or_values_are_refused():
    check_mask(np.ones((16, 16, 16), np.float32), 16, "mask.mrc")
    with pytest.raises(InputError, match=r"mask.mrc.*shape \(32, 32, 32\) for particles of box 16"):
        check_mask(np.ones((32, 32, 32), np.float32), 16, "mask.mrc")
    with pytest.raises(InputError, match=r"values must lie in \[0, 1\]"):
        check_mask(np.full((16, 16, 16), 2.0, np.float32), 16, "mask.mrc")
    with pytest.raises(InputError, match="empty"):
        check_mask(np.zeros((16, 16, 16), np.float32), 16, "mask.mrc")


def test_per_tomogram_projects_and_reference_chains():
    rounds = [dict(ROUND)]
    projects = load_projects(
        {"initial": {"tomograms": ["TS_01"], "rounds": rounds},
         "each": {"per_tomogram": True, "reference": "project:initial", "rounds": rounds},
         "again": {"per_tomogram": True, "reference": "project:each", "rounds": rounds}},
        32, ["TS_01", "TS_02"],
    )  # fmt: skip
    assert sorted(projects) == ["again_TS_01", "again_TS_02", "each_TS_01", "each_TS_02", "initial"]
    assert projects["each_TS_02"].tomograms == ("TS_02",)
    assert referenced_project(projects["each_TS_02"], projects) == "initial"
    assert referenced_project(projects["again_TS_02"], projects) == "each_TS_02"  # its own tomogram's project
    assert referenced_project(projects["initial"], projects) is None
    with pytest.raises(InputError, match="no project 'missing'"):
        load_projects({"a": {"reference": "project:missing", "rounds": rounds}}, 32, ["TS_01"])
    with pytest.raises(InputError, match="loop: a -> b -> a"):
        load_projects({"a": {"reference": "project:b", "rounds": rounds},
                       "b": {"reference": "project:a", "rounds": rounds}}, 32, ["TS_01"])  # fmt: skip
