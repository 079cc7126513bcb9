"""astrid-crmasks: numina parameter files in, numina's files out; bad input leaves nothing."""

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from astropy.io import fits

from astrid_pipeline.cli_crmasks import main
from astrid_pipeline.science.mmcosmic import simulate_stack

EXAMPLE1 = Path(__file__).parent / "data" / "params_example1.yaml"
COMBINED = ("mean", "median", "min", "mediancr", "meancrt", "meancr", "meancr2")


def write_stack(folder: Path, n=3, shape=(64, 64), seed=3, names=None):
    sim = simulate_stack(shape, n, seed=seed, n_coincident=6)
    names = names or [f"fake_{i + 1}a.fits" for i in range(n)]
    for img, name in zip(sim.images, names):
        fits.PrimaryHDU(img).writeto(folder / name)
    return sim, names


def params_file(folder: Path, names, **req) -> Path:
    data = yaml.safe_load(EXAMPLE1.read_text())
    data["images"] = list(names)
    data["requirements"].update({"crmethod": "mmcosmic", "interactive": False, "mm_nsimulations": 4, **req})
    p = folder / "params.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def listing(folder: Path):
    return sorted(os.listdir(folder)) if folder.exists() else []


def test_cli_writes_numina_outputs(tmp_path, monkeypatch):
    sim, names = write_stack(tmp_path)
    p = params_file(tmp_path, names, dilation=1)
    monkeypatch.chdir(tmp_path)  # numina resolves image names from the working directory
    out = tmp_path / "example1"
    assert main([str(p), "--output_dir", str(out)]) == 0
    files = set(listing(out))
    for c in COMBINED:
        assert f"combined_{c}.fits" in files
    for cat in ("any4", "only3", "only2", "other"):
        assert f"mediancr_identified_{cat}.csv" in files
    assert {"crmasks.fits", "diagnostic_histogram2d.png", "diagnostic_mediancr.png", "problematic_pixels.csv"} <= files
    assert not [f for f in files if f.startswith(".")]  # no temporary folder left
    with fits.open(out / "crmasks.fits") as h:
        assert [x.name for x in h] == ["PRIMARY", "MEDIANCR", "MEANCRT", "CRMASK1", "CRMASK2", "CRMASK3", "MEANCR", "AUXCLEAN"]
        assert h[0].data is None and h[0].header["FLUXF1"] == 1.0 and len(h[0].header["UUID"]) == 36
        assert any("mm_nsimulations = 4" in str(v) for v in h[0].header["HISTORY"])
        for name in ("MEDIANCR", "MEANCRT", "CRMASK1", "MEANCR"):
            assert h[name].header["BITPIX"] == 8 and set(np.unique(h[name].data)) <= {0, 1}
            assert h[name].header["NPMASKED"] == int(h[name].data.sum())
        assert h["AUXCLEAN"].header["BITPIX"] == -32
        mediancr = h["MEDIANCR"].data.astype(bool)
        assert mediancr.sum() > 0
        # every MEDIANCR pixel is also in MEANCRT; every CRMASKi pixel is in MEANCRT
        assert not (mediancr & ~h["MEANCRT"].data.astype(bool)).any()
        assert not (h["CRMASK2"].data.astype(bool) & ~h["MEANCRT"].data.astype(bool)).any()
    for c in COMBINED:
        with fits.open(out / f"combined_{c}.fits") as h:
            assert [x.name for x in h] == ["PRIMARY", "VARIANCE", "MAP", "SCATTER"]
            assert h[0].header["BITPIX"] == -32 and h["VARIANCE"].header["BITPIX"] == -32
            assert h["MAP"].header["BITPIX"] == 16
            assert h[0].data.shape == (64, 64)
    # combined_mediancr = median with MEDIANCR pixels replaced by the minimum
    med = fits.getdata(out / "combined_median.fits")
    mn = fits.getdata(out / "combined_min.fits")
    mcr = fits.getdata(out / "combined_mediancr.fits")
    np.testing.assert_array_equal(mcr[mediancr], mn[mediancr])
    np.testing.assert_array_equal(mcr[~mediancr], med[~mediancr])
    # the CSV tables list exactly the MEDIANCR pixels, FITS numbered
    rows = []
    for cat in ("any4", "only3", "only2", "other"):
        with open(out / f"mediancr_identified_{cat}.csv") as fh:
            r = list(csv.reader(fh))
            assert r[0] == ["CR_number", "X_pixel", "Y_pixel", "Mask_value"]
            rows += r[1:]
    got = {(int(x), int(y)) for _, x, y, _ in rows}
    want = {(c + 1, r + 1) for r, c in zip(*np.nonzero(mediancr))}
    assert got == want


def test_numina_can_apply_our_masks(tmp_path, monkeypatch):
    apply_mod = pytest.importorskip("numina.array.crmasks.apply_crmasks")
    sim, names = write_stack(tmp_path, seed=8)
    p = params_file(tmp_path, names)
    monkeypatch.chdir(tmp_path)
    assert main([str(p), "--output_dir", "out", "--no-plots"]) == 0
    arrays = [fits.getdata(tmp_path / n).astype(np.float64) for n in names]
    with fits.open(tmp_path / "out" / "crmasks.fits") as hdul:
        for comb in ("mediancr", "meancrt", "meancr2"):
            theirs, _, their_map = apply_mod.apply_crmasks(
                arrays, hdul_masks=hdul, combination=comb, use_auxmedian=False, apply_flux_factor=True, bias=0.0
            )
            ours = fits.getdata(tmp_path / "out" / f"combined_{comb}.fits")
            np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-3)


def test_cli_with_lacosmic_and_a_bias_frame(tmp_path, monkeypatch):
    pytest.importorskip("astroscrappy")
    sim, names = write_stack(tmp_path, seed=4)
    fits.PrimaryHDU(np.zeros((64, 64), np.float32)).writeto(tmp_path / "bias.fits")
    p = params_file(tmp_path, names, crmethod="mm_lacosmic", use_auxmedian=True)
    data = yaml.safe_load(p.read_text())
    data["bias"] = "bias.fits"
    p.write_text(yaml.safe_dump(data))
    monkeypatch.chdir(tmp_path)
    assert main([str(p), "--no-plots"]) == 0  # default output_dir: the working directory
    with fits.open(tmp_path / "crmasks.fits") as h:
        assert h[0].header["CRMETHOD"] == "mm_lacosmic"


@pytest.mark.parametrize("case", ["two_images", "shapes_differ", "missing_extension", "nans", "not_fits", "bad_value", "missing_file"])
def test_bad_input_gives_a_named_error_and_no_output(tmp_path, monkeypatch, capsys, case):
    sim, names = write_stack(tmp_path)
    extra = {}
    expected_rc = 1
    if case == "two_images":
        names = names[:2]
        expected_rc = 2
    elif case == "shapes_differ":
        fits.PrimaryHDU(np.zeros((64, 60), np.float32)).writeto(tmp_path / "odd.fits")
        names = names[:2] + ["odd.fits"]
    elif case == "nans":
        img = fits.getdata(tmp_path / names[1]).copy()
        img[5, 7] = np.nan
        fits.PrimaryHDU(img).writeto(tmp_path / "nan.fits")
        names = [names[0], "nan.fits", names[2]]
    elif case == "not_fits":
        (tmp_path / "page.fits").write_text("<html>not found</html>" * 200)
        names = names[:2] + ["page.fits"]
    elif case == "bad_value":
        extra = {"mm_knots_splfit": 0}
        expected_rc = 2
    elif case == "missing_file":
        names = names[:2] + ["nowhere.fits"]
    p = params_file(tmp_path, names, **extra)
    if case == "missing_extension":
        data = yaml.safe_load(p.read_text())
        data["extnum"] = 1
        p.write_text(yaml.safe_dump(data))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    rc = main([str(p), "--output_dir", str(out)])
    err = capsys.readouterr().err
    assert rc == expected_rc, err
    assert "error" in err
    expected_words = {
        "two_images": "images", "shapes_differ": "odd.fits", "missing_extension": "extension",
        "nans": "nan.fits", "not_fits": "page.fits", "bad_value": "mm_knots_splfit", "missing_file": "nowhere.fits",
    }[case]
    assert expected_words in err
    assert listing(out) == []


def test_a_failure_while_writing_leaves_nothing(tmp_path, monkeypatch):
    from astrid_pipeline.science.mmcosmic import outputs

    sim, names = write_stack(tmp_path)
    p = params_file(tmp_path, names)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("not ours")
    calls = {"n": 0}
    real = outputs.write_fits

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real(*a, **k)

    monkeypatch.setattr(outputs, "write_fits", flaky)
    monkeypatch.chdir(tmp_path)
    assert main([str(p), "--output_dir", str(out), "--no-plots"]) == 1
    assert listing(out) == ["keep.txt"]
    calls["n"] = 0
    fresh = tmp_path / "fresh" / "deeper"
    assert main([str(p), "--output_dir", str(fresh), "--no-plots"]) == 1
    assert not fresh.exists()
