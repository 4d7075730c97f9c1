"""The protocol's projects (stasnake.protocol): defaults scaled to the data, overrides, checks;
and the small helpers of its stages (halves by VLP, accuracy against the truth)."""

import numpy as np
import pandas as pd
import pytest

from stasnake.errors import InputError
from stasnake.io.dynamo_table import new_table
from stasnake.protocol import (
    average_of_averages_round,
    default_subbox,
    merge_stage_spec,
    protocol_projects,
    search_params_of,
)
from stasnake.sta.tables import half_set, tags_with_halves_by_group
from stasnake.validation.accuracy import match_to_truth, pose_errors

TOMOGRAMS = ["TS_01", "TS_03"]


def test_defaults_at_the_protocols_sampling_give_its_own_numbers():
    """At 1.35 Å and boxes 256/192 the scaled defaults are the paper's: dim 64 then 128, low 23,
    32 and 38 Fourier px, C1 then C6, 2 x 3 and 3 x 3 iterations."""
    projects = protocol_projects({}, TOMOGRAMS, 256, 192, 1.35)
    assert sorted(projects) == sorted(["protocol_reference", "protocol_tomogram_TS_01", "protocol_tomogram_TS_03",
                                       "protocol_subboxed_TS_01", "protocol_subboxed_TS_03", "protocol_gold",
                                       "protocol_refined"])  # fmt: skip
    ref = projects["protocol_reference"]
    assert ref.tomograms == ("TS_01",) and ref.randomize_azimuth and ref.n_iterations == 6
    assert [(r.dim, r.low, r.sym) for r in ref.rounds] == [(64, 23.0, "c1"), (128, 23.0, "c1")]
    tomo = projects["protocol_tomogram_TS_03"]
    assert tomo.tomograms == ("TS_03",) and [r.sym for r in tomo.rounds] == ["c6", "c6"]
    assert tomo.reference == "results/reference/initial_reference.mrc"
    assert tomo.rounds[0].area_search_modus == 4  # limits around the re-centred start
    gold = projects["protocol_gold"]
    assert gold.gold_standard and gold.particles == "cleaned" and gold.n_iterations == 9
    assert [r.dim for r in gold.rounds] == [96, None, None]  # the last two rounds unbinned
    assert [r.low for r in gold.rounds] == [32.0] * 3
    refined = projects["protocol_refined"]
    assert refined.rounds[0].low == pytest.approx(38.1, abs=0.1) and refined.mask.endswith("tight_mask.mrc")
    assert projects["protocol_subboxed_TS_01"].particles == "subboxed"
    assert default_subbox(256) == 192


def test_defaults_scale_to_coarser_data_and_stay_below_nyquist():
    """The demo's 5.4 Å pixels: no binning (already 4 x 1.35 Å) and the low-pass capped under
    Nyquist; every project passes the same validation as a hand-written one."""
    projects = protocol_projects({}, TOMOGRAMS, 48, 32, 5.4)
    for p in projects.values():
        for r in p.rounds:
            assert r.dim is None
            assert r.low <= 48 / 2 - 1.5 if p.particles == "cropped" else r.low <= 32 / 2 - 1.5
    assert projects["protocol_reference"].rounds[0].low == pytest.approx(48 * 5.4 / 15, abs=0.1)
    # shift limits: 0.6 of the 75 Å spacing along z in round 1, in x and y in round 2, in pixels
    assert projects["protocol_reference"].rounds[0].area_search[2] == pytest.approx(0.6 * 75 / 5.4, abs=0.1)
    assert projects["protocol_reference"].rounds[1].area_search[0] == pytest.approx(0.6 * 75 / 5.4, abs=0.1)
    assert [r.mask for r in projects["protocol_reference"].rounds] == ["none", "lattice"]
    params = search_params_of(average_of_averages_round(48, 5.4, 75.0))
    assert params.symmetry_order == 6 and params.inplane_range == 30


def test_overrides_merge_round_by_round_and_name_the_key():
    default = {"chunk_size": 500, "rounds": [{"iterations": 3, "cone_range": 30}, {"iterations": 3, "cone_range": 15}]}
    merged = merge_stage_spec(default, {"chunk_size": 50, "rounds": [{"iterations": 1}]}, "where")
    assert merged["chunk_size"] == 50
    assert merged["rounds"] == [{"iterations": 1, "cone_range": 30}, {"iterations": 3, "cone_range": 15}]
    assert len(merge_stage_spec(default, {"n_rounds": 1}, "w")["rounds"]) == 1
    projects = protocol_projects({"projects": {"gold": {"rounds": [{"iterations": 1}, {}, {"iterations": 2}]}}},
                                 TOMOGRAMS, 48, 32, 5.4)  # fmt: skip
    assert [r.iterations for r in projects["protocol_gold"].rounds] == [1, 3, 2]
    with pytest.raises(InputError, match=r"protocol.projects.golden.*unknown stage"):
        protocol_projects({"projects": {"golden": {}}}, TOMOGRAMS, 48, 32, 5.4)
    with pytest.raises(InputError, match=r"protocol.projects.gold.rounds\[1\].cone_sampling"):
        protocol_projects({"projects": {"gold": {"rounds": [{"cone_sampling": 0}]}}}, TOMOGRAMS, 48, 32, 5.4)
    with pytest.raises(InputError, match=r"protocol.reference_tomogram.*TS_02.*not in the sample list"):
        protocol_projects({"reference_tomogram": "TS_02"}, TOMOGRAMS, 48, 32, 5.4)


def test_halves_by_vlp_keep_each_vlp_whole_and_balance_the_halves():
    rng = np.random.default_rng(0)
    sizes = [40, 35, 30, 22, 18, 12, 9]
    reg = np.repeat(np.arange(1, len(sizes) + 1), sizes)
    rng.shuffle(reg)
    table = new_table(len(reg), tomo=1, reg=reg)
    tags = tags_with_halves_by_group(table)
    halves = half_set(tags)
    assert len(np.unique(tags)) == len(tags)
    for v in np.unique(reg):
        assert len(np.unique(halves[reg == v])) == 1  # a VLP never spans both halves
    n1, n2 = int((halves == 1).sum()), int((halves == 2).sum())
    print(f"halves {n1} / {n2} particles from VLPs of sizes {sizes}")
    assert abs(n1 - n2) <= max(sizes) // 2


def test_match_to_truth_counts_recall_precision_and_duplicates():
    truth = np.array([[0.0, 0, 0], [10, 0, 0], [20, 0, 0], [30, 0, 0]])
    found = np.array([[0.5, 0, 0], [0.0, 1, 0], [10, 1, 0], [50, 0, 0]])
    m = match_to_truth(found, truth, radius_px=2.0)
    assert m["recall"] == 0.5 and m["precision"] == 0.75 and m["duplicates"] == 1


def test_pose_errors_are_taken_modulo_the_symmetry():
    truth = new_table(2, x=[10.0, 40.0], y=20.0, z=20.0, tdrot=[0.0, 30.0], tilt=[10.0, 50.0], narot=[5.0, 0.0])
    table = truth.copy()
    table["narot"] = table["narot"] + 60.0  # a C6-equivalent pose
    table.loc[1, "narot"] += 2.0
    table["dx"] = 0.5
    errors = pose_errors(table, truth, radius_px=3.0, symmetry_order=6)
    assert errors["angle_deg"].to_numpy() == pytest.approx([0.0, 2.0], abs=1e-4)
    assert errors["shift_px"].to_numpy() == pytest.approx([0.5, 0.5])
    assert len(pd.DataFrame(errors)) == 2


def test_simulated_user_finds_the_units_where_the_alignment_put_them():
    """The demo's user carries the true units into the average's frame by the particles' poses:
    particles centred between units (a 3-fold site) put a unit 8 px off the box centre."""
    from stasnake.synth.demo_user import true_unit_centres

    a = 75.0 / 5.4
    ij = np.array([(i, j) for i in range(-6, 7) for j in range(-6, 7)], float)
    units = np.column_stack([a * (ij[:, 0] + 0.5 * ij[:, 1]), a * np.sqrt(3) / 2 * ij[:, 1], np.zeros(len(ij))]) + 200
    truth = new_table(len(units), x=units[:, 0], y=units[:, 1], z=units[:, 2])
    site = units[:, :2].mean(axis=0)  # shift every particle by the vector to a 3-fold site
    offset = np.array([a / 2, a / (2 * np.sqrt(3)), 0.0])
    picks = units[np.linalg.norm(units[:, :2] - site, axis=1) < 4 * a][:20] + offset
    rng = np.random.default_rng(1)
    table = new_table(len(picks), x=picks[:, 0], y=picks[:, 1], z=picks[:, 2],
                      narot=rng.choice([0.0, 60.0, 120.0], len(picks)))  # fmt: skip
    centres = true_unit_centres([table], [truth], 48, a)
    print(np.round(centres[:4], 2))
    centre = np.full(3, 25.0)  # 1-based box centre
    assert np.linalg.norm(centres[0] - centre) == pytest.approx(a / np.sqrt(3), abs=0.3)  # a unit, not the site
    assert min(np.linalg.norm(c - centres[0]) for c in centres[1:]) == pytest.approx(a, abs=0.3)
    assert len(centres) >= 7
