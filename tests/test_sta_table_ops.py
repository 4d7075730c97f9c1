"""Table operations against synthetic ground truth: subboxing, recentring, rigid moves, duplicates, merging."""

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree

from stasnake.errors import InputError
from stasnake.geometry.euler import dynamo_euler_to_matrix, matrix_to_dynamo_euler
from stasnake.io.dynamo_table import new_table, particle_positions
from stasnake.sta import table_ops
from stasnake.sta.average import average_particles
from stasnake.sta.crop import crop_particles
from stasnake.sta.poses import table_poses
from stasnake.sta.rotate import rotate_volume
from stasnake.sta.tables import half_set, table_after_crop
from stasnake.synth.lattice import sphere_lattice
from stasnake.synth.particles import random_rotations, simulate_particles, truth_table
from stasnake.synth.unit import unit_map

APIX = 5.4
BOX = 40


def _table(centres, matrices, **columns):
    e = matrix_to_dynamo_euler(np.asarray(matrices).reshape(-1, 3, 3)).reshape(-1, 3)
    c = np.asarray(centres, float)
    return new_table(len(c), x=c[:, 0], y=c[:, 1], z=c[:, 2], tdrot=e[:, 0], tilt=e[:, 1], narot=e[:, 2],
                     **columns)  # fmt: skip


def _corr(a, b):
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


@pytest.fixture(scope="module")
def lattice_case():
    """A VLP-like lattice of Gaussian units in a noisy tomogram, and a coarse, badly centred table.

    Units sit on a geodesic sphere (``sphere_lattice``; 75 Å spacing, 5.4 Å/px, about 13 px); each has
    its true pose (z = outward normal, x toward a neighbour). The coarse table holds every unit farther
    than 2.5 spacings from the others chosen before, centred at ``unit + R v`` (v = (3.3, -2.6, 1.8) px):
    the average then shows the unit at ``c - v``, which the test marks.
    """
    rng = np.random.default_rng(3)
    shape = (176, 176, 176)
    pos_angstrom, matrices, radius_angstrom, _ = sphere_lattice(300.0, 75.0, 1.0, rng)
    units = pos_angstrom / APIX + np.array(shape[::-1]) // 2 + 1.0  # 1-based tomogram pixels
    spacing = float(np.median(cKDTree(units).query(units, k=2)[0][:, 1]))
    sigma, h = 1.5, 7
    tomo = rng.normal(0.0, 0.3, shape).astype(np.float32)
    for p in units:  # Gaussians at the exact (sub-pixel) unit positions
        lo = np.floor(p - 1).astype(int) - h
        zz, yy, xx = np.mgrid[
            lo[2] : lo[2] + 2 * h + 1, lo[1] : lo[1] + 2 * h + 1, lo[0] : lo[0] + 2 * h + 1
        ]
        d2 = (xx - (p[0] - 1)) ** 2 + (yy - (p[1] - 1)) ** 2 + (zz - (p[2] - 1)) ** 2
        tomo[lo[2] : lo[2] + 2 * h + 1, lo[1] : lo[1] + 2 * h + 1, lo[0] : lo[0] + 2 * h + 1] += (
            np.exp(-d2 / (2 * sigma**2))
        )
    chosen = []
    for i in rng.permutation(len(units)):
        if all(np.linalg.norm(units[i] - units[j]) > 2.5 * spacing for j in chosen):
            chosen.append(i)
    chosen = np.array(chosen)
    v = np.array([3.3, -2.6, 1.8])
    centres = units[chosen] + matrices[chosen] @ v
    table = _table(centres, matrices[chosen], tomo=1, reg=1, tag=np.arange(1, len(chosen) + 1) * 3)
    particles, kept, remainder = crop_particles(tomo, particle_positions(table), BOX)
    assert kept.all()
    cropped = table_after_crop(table, kept, remainder)
    average = average_particles(particles, *table_poses(cropped))
    return {"units": units, "matrices": matrices, "chosen": chosen, "v": v, "spacing": spacing,
            "radius_px": radius_angstrom / APIX, "table": cropped, "average": average}  # fmt: skip


def _centroid_near(volume, guess_1based, radius=3):
    """Sub-pixel centroid (1-based x, y, z) of the blob around a guessed position in a (z, y, x) volume."""
    n = volume.shape[0]
    g = np.rint(np.asarray(guess_1based) - 1).astype(int)
    zz, yy, xx = np.mgrid[:n, :n, :n]
    w = np.where((xx - g[0]) ** 2 + (yy - g[1]) ** 2 + (zz - g[2]) ** 2 <= radius**2, volume, 0.0)
    w = np.clip(w - 0.1 * w.max(), 0.0, None)
    return np.array([(w * xx).sum(), (w * yy).sum(), (w * zz).sum()]) / w.sum() + 1.0


def test_subbox_maps_marked_unit_back_to_true_lattice(lattice_case):
    """Issue acceptance: a unit marked in the average maps back to the true lattice positions within 1 px."""
    case = lattice_case
    centre = BOX // 2 + 1
    marker = _centroid_near(case["average"], centre - case["v"])
    sub = table_ops.subbox(case["table"], [marker], BOX)
    truth = case["units"][case["chosen"]]
    err = np.linalg.norm(particle_positions(sub) - truth, axis=1)
    print(
        f"\nmarker {marker.round(3)} (true {centre - case['v']}); subbox error to the true units: "
        f"max {err.max():.3f} px, median {np.median(err):.3f} px over {len(err)} particles"
    )
    assert err.max() < 1.0
    # poses unchanged without orientations; shifts zeroed; parents recorded
    np.testing.assert_allclose(table_poses(sub)[0], table_poses(case["table"])[0], atol=1e-9)
    assert (sub[["dx", "dy", "dz"]].to_numpy() == 0).all()
    assert sub["otag"].tolist() == case["table"]["tag"].tolist()
    assert sub["tag"].tolist() == list(range(1, len(sub) + 1))
    assert (sub["tomo"] == 1).all() and (sub["reg"] == 1).all()


def test_subbox_neighbour_marker_lands_on_neighbouring_units(lattice_case):
    """Marking the neighbour seen in the average adds the neighbouring units (geodesic-lattice distortion limits it)."""
    case = lattice_case
    centre = BOX // 2 + 1
    unit = _centroid_near(case["average"], centre - case["v"])
    s, r = case["spacing"], case["radius_px"]
    neighbour = _centroid_near(case["average"], unit + [s, 0.0, -(s**2) / (2 * r)])
    sub = table_ops.subbox(case["table"], [unit, neighbour], BOX, marker_column="sref")
    assert sub["sref"].tolist() == [1, 2] * len(case["table"])
    assert sub["otag"].tolist() == np.repeat(case["table"]["tag"].to_numpy(), 2).tolist()
    dist, nearest = cKDTree(case["units"]).query(particle_positions(sub))
    dist = dist.reshape(-1, 2)
    print(
        f"\nneighbour marker {neighbour.round(2)}; distance to the nearest true unit: centre max "
        f"{dist[:, 0].max():.2f} px, neighbour median {np.median(dist[:, 1]):.2f} / max {dist[:, 1].max():.2f} px "
        f"(spacing {s:.1f} px)"
    )
    assert dist[:, 0].max() < 1.0
    # the geodesic lattice's spacing varies by about +-10 %: a fixed marker cannot hit every unit exactly
    assert np.median(dist[:, 1]) < 1.5 and dist[:, 1].max() < 0.25 * s
    # every neighbour subbox is a different unit from its parent
    assert np.all(nearest.reshape(-1, 2)[:, 0] != nearest.reshape(-1, 2)[:, 1])


def test_subbox_with_orientation_composes_pose():
    rng = np.random.default_rng(8)
    mats = random_rotations(5, rng)
    table = _table(rng.uniform(50, 150, (5, 3)), mats, tomo=2)
    rk = random_rotations(2, rng)
    markers = np.array([[21.0, 21.0, 21.0], [25.5, 18.0, 30.0]])
    sub = table_ops.subbox(table, markers, BOX, orientations=rk)
    got = dynamo_euler_to_matrix(sub[["tdrot", "tilt", "narot"]].to_numpy()).reshape(5, 2, 3, 3)
    np.testing.assert_allclose(got, np.einsum("nij,kjl->nkil", mats, rk), atol=1e-9)
    expected = particle_positions(table)[:, None] + np.einsum("nij,kj->nki", mats, markers - 21.0)
    np.testing.assert_allclose(particle_positions(sub).reshape(5, 2, 3), expected, atol=1e-9)


def test_recentre_recovers_true_centres():
    """Particles centred 4 px off their true centre (in their own frame) are recentred on the marked point."""
    rng = np.random.default_rng(11)
    mats = random_rotations(50, rng)
    truth = rng.uniform(40, 400, (50, 3))
    v = np.array([4.0, -1.5, 2.5])
    table = _table(truth + mats @ v, mats)
    table[["dx", "dy", "dz"]] = rng.uniform(-0.5, 0.5, (50, 3))
    # the same centres, part of them in the shifts
    table[["x", "y", "z"]] -= table[["dx", "dy", "dz"]].to_numpy()
    out = table_ops.recentre(table, BOX // 2 + 1 - v, BOX)
    err = np.linalg.norm(particle_positions(out) - truth, axis=1).max()
    print(f"\nrecentring error max {err:.2e} px")
    assert err < 1e-9
    np.testing.assert_array_equal(out[["x", "y", "z", "tdrot", "tilt", "narot"]],
                                  table[["x", "y", "z", "tdrot", "tilt", "narot"]])  # fmt: skip
    # input untouched, output new
    assert (table[["dx", "dy", "dz"]] != out[["dx", "dy", "dz"]]).to_numpy().any()


def test_rigid_transform_average_gives_transformed_map():
    """Averaging with the transformed table gives new_ref(p + c) = ref(R_a p + c + s_a)."""
    rng = np.random.default_rng(5)
    n, box = 24, 32
    ref = unit_map(box, APIX)
    mats = random_rotations(n, rng)
    shifts = rng.uniform(-1.5, 1.5, (n, 3))
    particles = simulate_particles(ref, mats, shifts, rng, snr=np.inf)
    table = truth_table(mats, shifts, box_size=box)
    r_a = random_rotations(1, rng)[0]
    s_a = np.array([1.5, -1.0, 2.0])
    new_ref = rotate_volume(ref, r_a, s_a, order=3)
    moved = table_ops.rigid_transform(table, r_a, s_a)
    avg_new = average_particles(particles, *table_poses(moved))
    avg_old = average_particles(particles, *table_poses(table))
    zz, yy, xx = np.mgrid[:box, :box, :box] - box // 2
    inner = xx**2 + yy**2 + zz**2 <= 12**2  # away from the box edge, where shifted content is cut
    c_new, c_old = _corr(avg_new[inner], new_ref[inner]), _corr(avg_old[inner], new_ref[inner])
    c_self = _corr(avg_old[inner], ref[inner])
    print(
        f"\ncorrelation with the transformed map: transformed table {c_new:.3f}, original table {c_old:.3f}; "
        f"original table vs original map {c_self:.3f}"
    )
    assert c_new > 0.95
    # the test can fail: the untransformed table does not give the transformed map
    assert c_old < 0.8
    # the other order of composition (R_a R_i, s_i + s_a) is wrong for a general R_a
    wrong = truth_table(r_a @ mats, shifts + s_a, box_size=box)
    c_wrong = _corr(average_particles(particles, *table_poses(wrong))[inner], new_ref[inner])
    print(f"wrong composition R_a R_i, s_i + s_a: {c_wrong:.3f}")
    assert c_wrong < 0.8
    np.testing.assert_allclose(
        particle_positions(moved, apply_shifts=False), particle_positions(table, False)
    )


def test_randomize_azimuth_keeps_z_axis():
    rng = np.random.default_rng(2)
    mats = random_rotations(400, rng)
    table = _table(rng.uniform(0, 100, (400, 3)), mats)
    # gimbal lock: only the matrix is defined
    table.loc[0, ["tdrot", "tilt", "narot"]] = [30.0, 0.0, 0.0]
    out = table_ops.randomize_azimuth(table, np.random.default_rng(9))
    before, _ = table_poses(table)
    after, _ = table_poses(out)
    z_err = np.abs(after[:, :, 2] - before[:, :, 2]).max()
    # in-plane angle of the new x axis relative to the old one, about the shared z axis
    cos_phi = np.einsum("ni,ni->n", before[:, :, 0], after[:, :, 0])
    sin_phi = np.einsum("ni,ni->n", before[:, :, 1], after[:, :, 0])
    phi = np.degrees(np.arctan2(sin_phi, cos_phi)) % 360
    hist = np.histogram(phi, bins=4, range=(0, 360))[0]
    print(f"\nz axis change max {z_err:.1e}; azimuth quarters {hist.tolist()}")
    assert z_err < 1e-9
    assert hist.min() > 70  # ~100 per quarter: uniform, not unchanged
    again = table_ops.randomize_azimuth(table, np.random.default_rng(9))
    pd.testing.assert_frame_equal(out, again)
    assert (
        (
            out[["x", "y", "z", "dx", "dy", "dz", "tag"]]
            == table[["x", "y", "z", "dx", "dy", "dz", "tag"]]
        )
        .all()
        .all()
    )


def test_exclude_duplicates_keeps_best_of_each_pair():
    rng = np.random.default_rng(4)
    n = 60
    grid = np.stack(
        np.meshgrid(np.arange(5), np.arange(4), np.arange(3), indexing="ij"), -1
    ).reshape(-1, 3)
    centres = 20.0 + 12.0 * grid  # 12 px apart
    jitter = rng.normal(size=(n, 3))
    jitter *= rng.uniform(1.0, 2.0, (n, 1)) / np.linalg.norm(jitter, axis=1, keepdims=True)
    doubled = np.concatenate([centres, centres + jitter])
    cc = rng.uniform(0, 1, 2 * n)
    table = new_table(2 * n, x=doubled[:, 0], y=doubled[:, 1], z=doubled[:, 2], cc=cc, tomo=1)
    order = rng.permutation(2 * n)
    table = table.iloc[order].reset_index(drop=True)
    kept, mask = table_ops.exclude_duplicates(table, 4.0, return_mask=True)
    pair = np.concatenate([np.arange(n), np.arange(n)])[order]
    best = np.array(
        [max(np.flatnonzero(pair == p), key=lambda i: table["cc"].iloc[i]) for p in range(n)]
    )
    print(f"\nkept {len(kept)} of {len(table)} (pairs {n})")
    assert len(kept) == n and sorted(np.flatnonzero(mask)) == sorted(best)
    # another tomogram's particles at the same places are not duplicates; exactly-at-radius is kept
    other = table.assign(tomo=2)
    assert (
        len(table_ops.exclude_duplicates(pd.concat([table, other], ignore_index=True), 4.0))
        == 2 * n
    )
    two = new_table(2, x=[10.0, 14.0], y=10.0, z=10.0, cc=[0.5, 0.9])
    assert table_ops.exclude_duplicates(two, 4.0)["tag"].tolist() == [1, 2]
    assert table_ops.exclude_duplicates(two, 4.01)["tag"].tolist() == [2]


def test_merge_tables_unique_tags_keep_halves():
    a, b, c = new_table(5), new_table(4), new_table(3)
    b["tag"] = [2, 3, 9, 10]
    merged, mapping = table_ops.merge_tables([a, b, c], return_mapping=True)
    assert merged["tag"].is_unique and len(merged) == 12
    np.testing.assert_array_equal(half_set(merged["tag"]), half_set(pd.concat([a, b, c])["tag"]))
    assert mapping.columns.tolist() == ["table", "old_tag", "new_tag"]
    np.testing.assert_array_equal(mapping["new_tag"], merged["tag"])
    assert (mapping["new_tag"] - mapping["old_tag"]).mod(2).eq(0).all()
    # already unique: unchanged
    b["tag"] = [6, 7, 8, 9]
    assert table_ops.merge_tables([a, b])["tag"].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    with pytest.raises(InputError, match="duplicate tags"):
        table_ops.merge_tables([a, a], renumber_tags=False)


def test_split_even_odd_uses_the_half_rule():
    table = new_table(7)
    h1, h2 = table_ops.split_even_odd(table)
    assert h1["tag"].tolist() == [2, 4, 6] and h2["tag"].tolist() == [1, 3, 5, 7]


def test_bad_input_names_row_and_problem():
    table = new_table(3, x=[1.0, np.nan, 3.0], y=1.0, z=1.0)
    with pytest.raises(InputError, match=r"my\.tbl: row 2 \(tag 2\)"):
        table_ops.recentre(table, [21, 21, 21], BOX, source="my.tbl")
    good = new_table(3, x=[1.0, 2.0, 3.0])
    with pytest.raises(InputError, match="marker 2 .* outside"):
        table_ops.subbox(good, [[21, 21, 21], [41, 20, 20]], BOX)
    with pytest.raises(InputError, match="positive"):
        table_ops.exclude_duplicates(good, 0.0)
    with pytest.raises(InputError, match="proper rotation"):
        table_ops.rigid_transform(good, np.diag([1.0, 1.0, -1.0]), [0, 0, 0])
    with pytest.raises(InputError, match="2 orientations for 1 markers"):
        table_ops.subbox(good, [[21, 21, 21]], BOX, orientations=np.stack([np.eye(3)] * 2))
