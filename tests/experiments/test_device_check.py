from experiments.device_check import batch_invariance
from service.core.guiders import GUIDERS
from service.core.step import CHUNK_ROWS


def test_the_device_check_finds_this_devices_batches_invariant(
    density_model, conditional_model, guide_model
):
    """Every registered variant, each on its default sampler (CI once failed here: `prior`
    was run on ddpm, which it refuses); cfg and autoguidance on the conditional model."""
    rows = batch_invariance(
        density_model, sizes=(CHUNK_ROWS + 40,), conditional=conditional_model, guide=guide_model
    )
    assert {r["variant"] for r in rows} == set(GUIDERS)
    assert all(r["identical"] and r["max_abs_diff"] == 0 for r in rows)
