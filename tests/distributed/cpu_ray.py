"""Test only: ``USE_RAY=1 python -m cpu_ray train <yaml>`` is ``llamafactory-cli train`` on CPU-only Ray workers.

LLaMA-Factory's Ray launcher (train/tuner.py, ``_ray_training_function``) counts the cluster's devices as
``ray.cluster_resources()[device]``, which without accelerators is the number of CPUs, and asks for a placement group
of that many bundles of ``{"CPU": 10}`` (trainer_utils.py, ``get_placement_group``): ten times the cluster's CPUs,
so ``ray.get(pg.ready())`` waits forever on any CPU-only cluster, whatever ``ray_init_kwargs`` declares. This module
opens that one gate: the group gets the bundles that fit, CPUs // 10. Everything else is LLaMA-Factory's, unmodified:
``ray.init(**ray_init_kwargs)``, the head-node address, the bundle order, one ``Worker`` actor of 10 CPUs per rank
with RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT, and the training function run inside each actor.
"""

from llamafactory.train import tuner

_placement_group = tuner.get_placement_group


def _placement_group_that_fits(num_devices: int):
    return _placement_group(max(1, num_devices // 10))


if __name__ == "__main__":
    from llamafactory.cli import main

    tuner.get_placement_group = _placement_group_that_fits
    main()
