"""On a dask.distributed cluster (a 2-worker LocalCluster): evaluate(chunk_size=…, client=…)
equals the in-process streaming evaluation, and data preparation (Normalizer.fit) runs on
the workers with the same statistics; plus the evaluator's spawn/merge behind the former."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import xarray as xr

from climgen.data.normalize import Normalizer
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


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def test_evaluation_on_a_local_cluster_equals_the_in_process_one(client, tmp_path):
    ref_path = tmp_path / "reference.nc"
    _grf(30, 0).to_dataset().to_netcdf(ref_path)  # workers read their chunks from the file
    gen = _grf(21, 1, slope=-2.5).chunk({"time": 8})
    with dask.config.set(scheduler="synchronous"):
        local = evaluate(gen, ref_path, progress=False, chunk_size=6)
    remote = evaluate(gen, ref_path, progress=False, chunk_size=6, client=client)
    assert len(client.scheduler_info()["workers"]) == 2
    assert remote.provenance["dask_cluster"].startswith("2 worker(s) at ")
    # A scheduler address instead of a Client: climgen connects, and closes its client after.
    by_address = evaluate(
        gen, ref_path, progress=False, chunk_size=6, client=client.scheduler.address
    )
    a = local.variables["v"]
    assert set(a.distances) >= {"covariance_error", "wasserstein1", "spectrum_lsd"}
    for other in (remote, by_address):
        b = other.variables["v"]
        assert set(b.distances) == set(a.distances)
        for key, d in a.distances.items():
            assert b.distances[key].value == pytest.approx(d.value, rel=1e-12, abs=1e-15), key
            assert b.distances[key].floor == pytest.approx(d.floor, rel=1e-12, abs=1e-15), key
            assert b.distances[key].status == d.status
        for role in ("generated", "reference"):
            assert b.moments[role] == pytest.approx(a.moments[role], rel=1e-12)
        for key in ("generated", "reference", "reference_half_a", "k"):
            np.testing.assert_allclose(b.spectrum[key], a.spectrum[key], rtol=1e-12)
        np.testing.assert_array_equal(b.generated_fields, a.generated_fields)
        assert other.provenance["binning"] == local.provenance["binning"]


@pytest.mark.parametrize("method", ["standard", "robust"])
def test_normalizer_fit_runs_on_the_cluster_with_the_same_statistics(client, tmp_path, method):
    from distributed import get_task_stream

    path = tmp_path / "fields.nc"
    _grf(24, 3).to_dataset().to_netcdf(path)
    with xr.open_dataset(path, chunks={"time": 5}) as ds:
        with dask.config.set(scheduler="synchronous"):
            local = Normalizer.fit(ds, method=method)
        with get_task_stream(client) as stream:
            remote = Normalizer.fit(ds, method=method)  # the active Client runs the graph
    assert len(stream.data) > 0  # tasks ran on the workers
    assert remote.center["v"] == pytest.approx(local.center["v"], rel=1e-12)
    assert remote.scale["v"] == pytest.approx(local.scale["v"], rel=1e-12)


def test_a_bad_chunk_on_a_worker_gives_the_one_clear_error(client):
    ref, gen = _grf(12, 0), _grf(18, 1)
    gen[13, 2, 3] = np.nan
    with pytest.raises(ClimgenInputError, match=r"'v' of the generated data .*samples 12–17"):
        evaluate(gen.chunk({"time": 6}), ref, progress=False, chunk_size=6, client=client)
