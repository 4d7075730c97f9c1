"""Tilt-series import: sorting, acquisition order, pre-exposure, exclusion, mdoc checks."""

import numpy as np
import pandas as pd
import pytest

from stasnake.errors import InputError
from stasnake.tilt.importing import acquisition_order, plan_import, sort_tilts

DOSE_SYMMETRIC = [0, 3, -3, -6, 6, 9, -9, -12, 12]  # Hagen order, as in EMPIAR-10164 TS_01


def sections(angles, dose=3.0, **extra):
    return pd.DataFrame({"ZValue": np.arange(len(angles)), "TiltAngle": angles, "ExposureDose": dose, **extra})


def test_sort_and_pre_exposure_dose_symmetric():
    order = sort_tilts(np.array(DOSE_SYMMETRIC, float), np.arange(9), np.full(9, 3.0))
    assert order.tilt_angle_deg.tolist() == sorted(DOSE_SYMMETRIC)
    # pre-exposure = 3 e/Å² times the number of earlier exposures
    expected = {a: 3.0 * k for k, a in enumerate(DOSE_SYMMETRIC)}
    assert order.pre_exposure_e_per_A2.tolist() == [expected[a] for a in sorted(DOSE_SYMMETRIC)]
    assert order.raw_index.tolist() == [DOSE_SYMMETRIC.index(a) for a in sorted(DOSE_SYMMETRIC)]


def test_excluded_views_keep_their_dose_and_full_index():
    order = sort_tilts(np.array(DOSE_SYMMETRIC, float), np.arange(9), np.full(9, 3.0), exclude_angles_deg=[-12, 3])
    assert -12 not in order.tilt_angle_deg.tolist() and 3 not in order.tilt_angle_deg.tolist()
    row = order[order.tilt_angle_deg == 12].iloc[0]
    assert row.pre_exposure_e_per_A2 == 24.0  # the excluded -12 (acquired 8th) still counted
    assert row.full_sorted_index == 8
    with pytest.raises(InputError, match="excluded view 45 deg matches no tilt"):
        sort_tilts(np.array(DOSE_SYMMETRIC, float), np.arange(9), np.full(9, 3.0), exclude_angles_deg=[45])


def test_acquisition_order_from_datetime_overrides_zvalue():
    s = sections([-3.0, 0.0, 3.0], DateTime=["30-Nov-15  15:22:00", "30-Nov-15  15:21:00", "30-Nov-15  15:23:00"])
    assert acquisition_order(s).tolist() == [1, 0, 2]


def test_plan_import_checks_counts_and_dose():
    header = {"PixelSpacing": 5.4, "TiltAxisAngle": 85.3}
    order, acq = plan_import(header, sections(DOSE_SYMMETRIC), 9, {}, [], "x.mdoc")
    assert acq["pixel_size_angstrom"] == 5.4 and acq["n_views_raw"] == 9
    with pytest.raises(InputError, match="x.mdoc: describes 9 tilts but the stack has 8 images"):
        plan_import(header, sections(DOSE_SYMMETRIC), 8, {}, [], "x.mdoc")
    with pytest.raises(InputError, match="ExposureDose is missing or 0"):
        plan_import(header, sections(DOSE_SYMMETRIC, dose=0.0), 9, {}, [], "x.mdoc")
    order, acq = plan_import(header, sections(DOSE_SYMMETRIC, dose=0.0), 9, {"dose_per_tilt_e_per_A2": 2.5}, [], "x.mdoc")
    assert order.pre_exposure_e_per_A2.max() == 20.0
    with pytest.raises(InputError, match="no tilt-axis angle"):
        plan_import({"PixelSpacing": 5.4}, sections(DOSE_SYMMETRIC), 9, {}, [], "x.mdoc")


@pytest.mark.parametrize(
    "acquired, scheme",
    [
        ([-9, -6, -3, 0, 3, 6, 9], "unidirectional"),
        ([0, 3, 6, 9, -3, -6, -9], "bidirectional"),
        ([0, -3, -6, -9, 3, 6, 9], "bidirectional, negative branch first"),
    ],
)
def test_pre_exposure_for_each_scheme(acquired, scheme):
    """Stacks written in acquisition order (SerialEM): pre-exposure = dose x earlier exposures, any scheme."""
    header = {"PixelSpacing": 5.4, "TiltAxisAngle": 85.3}
    order, _ = plan_import(header, sections(acquired, dose=2.0), len(acquired), {}, [], "x.mdoc")
    assert order.tilt_angle_deg.tolist() == sorted(acquired), scheme
    expected = {a: 2.0 * k for k, a in enumerate(acquired)}
    assert order.pre_exposure_e_per_A2.tolist() == [expected[a] for a in sorted(acquired)], scheme
    assert order.raw_index.tolist() == [acquired.index(a) for a in sorted(acquired)], scheme
