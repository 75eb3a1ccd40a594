"""evaluate(chunk_size=…, client=…): chunks summarised on a dask.distributed cluster equal the
in-process streaming evaluation; and the evaluator's spawn/merge that makes this possible."""

from __future__ import annotations

import numpy as np
import pytest

from climgen.data.samples import grf_dataarray
from climgen.errors import ClimgenInputError
from climgen.metrics.streaming import StreamingEvaluator
from climgen.report.evaluate import evaluate

NY, NX = 16, 24


def _grf(n, seed, slope=-3.0):
    return grf_dataarray(n, NY, NX, slope=slope, seed=seed, name="v", units="K")


def test_spawned_evaluators_fed_out_of_order_merge_to_the_single_pass_result():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((23, 6, 8))
    gen = 1.3 * rng.standard_normal((17, 6, 8)) + 0.2
    splits = [(np.arange(0, 11), np.arange(11, 22)), (np.arange(0, 22, 2), np.arange(1, 22, 2))]
    one = StreamingEvaluator(23, splits=splits).run(
        generated=[gen[:9], gen[9:]], reference=[ref[:5], ref[5:12], ref[12:]]
    )
    root = StreamingEvaluator(23, splits=splits).set_binning(ref[:5])
    parts = {}
    # Reference chunks summarised in reverse order by separate evaluators (as on workers).
    for start, stop in ((12, 23), (5, 12), (0, 5)):
        parts[start] = root.spawn()
        parts[start].add_reference(ref[start:stop], start=start)
    g0, g1 = root.spawn(), root.spawn()
    g1.add_generated(gen[9:])
    g0.add_generated(gen[:9])
    for part in (parts[0], parts[5], parts[12], g0, g1):
        root.merge(part)
    a, b = one.distances(), root.distances()
    assert set(a) == set(b) and "covariance_error" in a
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-12, atol=1e-15)
    ra, rb = one.reference().moments.result(), root.reference().moments.result()
    assert rb == pytest.approx(ra, rel=1e-12)
    assert root.reference().n == 23 and root.generated.n == 17


def test_spawn_needs_a_binning_and_merge_refuses_other_binnings():
    ev = StreamingEvaluator(8)
    with pytest.raises(ClimgenInputError, match="set_binning"):
        ev.spawn()
    a = StreamingEvaluator(8, range=(0.0, 1.0)).set_binning(np.zeros((1, 2, 2)))
    b = StreamingEvaluator(8, range=(0.0, 2.0)).set_binning(np.zeros((1, 2, 2)))
    with pytest.raises(ClimgenInputError, match="binning"):
        a.merge(b.spawn())
    with pytest.raises(ClimgenInputError, match="n_reference is 8"):
        a.spawn().add_reference(np.zeros((3, 2, 2)), start=6)


def test_client_needs_chunk_size_and_a_client_or_address():
    ref, gen = _grf(8, 0), _grf(8, 1)
    with pytest.raises(ClimgenInputError, match="chunk_size"):
        evaluate(gen, ref, progress=False, client="tcp://127.0.0.1:1")
    pytest.importorskip("distributed")
    with pytest.raises(ClimgenInputError, match="scheduler address"):
        evaluate(gen, ref, progress=False, chunk_size=4, client=42)


def test_evaluation_on_a_local_cluster_equals_the_in_process_one(tmp_path):
    distributed = pytest.importorskip("distributed")
    ref_path = tmp_path / "reference.nc"
    _grf(30, 0).to_dataset().to_netcdf(ref_path)  # workers read their chunks from the file
    gen = _grf(21, 1, slope=-2.5).chunk({"time": 8})
    local = evaluate(gen, ref_path, progress=False, chunk_size=6)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        remote = evaluate(gen, ref_path, progress=False, chunk_size=6, client=client)
        assert len(client.scheduler_info()["workers"]) == 2
    assert remote.provenance["dask_cluster"].startswith("2 worker(s) at ")
    a, b = local.variables["v"], remote.variables["v"]
    assert set(b.distances) == set(a.distances) and "covariance_error" in a.distances
    for key, d in a.distances.items():
        assert b.distances[key].value == pytest.approx(d.value, rel=1e-12, abs=1e-15), key
        assert b.distances[key].floor == pytest.approx(d.floor, rel=1e-12, abs=1e-15), key
        assert b.distances[key].status == d.status
    for role in ("generated", "reference"):
        assert b.moments[role] == pytest.approx(a.moments[role], rel=1e-12)
    for key in ("generated", "reference", "reference_half_a", "k"):
        np.testing.assert_allclose(b.spectrum[key], a.spectrum[key], rtol=1e-12)
    np.testing.assert_array_equal(b.generated_fields, a.generated_fields)
    assert remote.provenance["binning"] == local.provenance["binning"]
