"""The sky branch beyond one machine: the same assets on Dagster's Celery and Dask executors.

``sky_branch_celery_job`` and ``sky_branch_dask_job`` select exactly what ``sky_branch_job`` selects
(:data:`~astrid_pipeline.defs.sky.jobs.SKY_SELECTION`: the pooled ``observation_inventory`` step, then
``sky_branch`` over the run's batch of regions); only the executor differs, so moving from a laptop to a
cluster is configuration (storage in ``dagster.yaml``, the executor's block in the run config), not code.
Each step of a run is one Celery task or one Dask task, and every worker needs the package installed and
the data root on storage it shares with the others (give it as ``resources.storage.config.root``).

They are not in the default Definitions: importing ``dagster_dask`` costs about 1.8 s (dask.distributed),
which every definitions load, ``dg dev`` reload and run process would pay. They live in a second code
location, this module's ``defs`` (the default definitions plus the jobs whose executor package is
installed; built on first access, which is why the folder loader of ``astrid_pipeline/defs/`` does not
see it)::

    # workspace.yaml
    load_from:
      - python_module: astrid_pipeline.definitions      # the default code location
      - python_module:
          module_name: astrid_pipeline.defs.sky.distributed
          attribute: defs
          location_name: astrid_distributed

The multi-machine configuration (``astrid_pipeline_tests/orchestration/test_celery_postgres.py`` runs it):
``dagster.yaml`` with ``storage: {postgres: {postgres_url: postgresql://user:pw@host:5432/dagster}}``
(package ``dagster-postgres``), a Redis broker, workers started with
``dagster-celery worker start -A dagster_celery.app -y celery.yaml`` where ``celery.yaml`` holds the same
``broker``/``backend`` as the run config::

    execution:
      config: {broker: "redis://host:6379/0", backend: "redis://host:6379/1"}
    resources:
      storage: {config: {root: /shared/astrid-data}}

On Dask: ``execution: {config: {cluster: {existing: {address: "tcp://scheduler:8786"}}}}``; the Dask
executor needs a persistent ``DAGSTER_HOME`` (not ``materialize()``), and it parallelises the steps of one
run, not partitions (the run's two steps depend on each other, so a run uses one worker at a time; several
runs use several).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util

#: the module of the default Definitions (one constant, so the rename to ``astrid_pipeline.definitions`` is one line)
DEFINITIONS_MODULE = "astrid_pipeline.definitions"

CELERY_JOB = "sky_branch_celery_job"
DASK_JOB = "sky_branch_dask_job"

#: job name -> the package its executor comes from
EXECUTOR_PACKAGES = {CELERY_JOB: "dagster_celery", DASK_JOB: "dagster_dask"}


def available_jobs() -> list[str]:
    """The distributed jobs whose executor package is installed (``dagster-celery``, ``dagster-dask``)."""
    return [name for name, package in EXECUTOR_PACKAGES.items() if importlib.util.find_spec(package) is not None]


def _executor(name: str):
    if name == CELERY_JOB:
        from dagster_celery import celery_executor

        return celery_executor
    return sky_dask_executor()


def sky_job_on(name: str):
    """The sky asset job ``name`` (a key of :data:`EXECUTOR_PACKAGES`) with its executor; imports its package."""
    from dagster import define_asset_job

    from astrid_pipeline.defs.sky.jobs import SKY_SELECTION, sky_branch_job

    if name not in EXECUTOR_PACKAGES:
        raise KeyError(f"unknown distributed sky job {name!r}; known: {', '.join(EXECUTOR_PACKAGES)}")
    package = EXECUTOR_PACKAGES[name]
    try:
        executor = _executor(name)
    except ModuleNotFoundError as exc:
        from astrid_pipeline.errors import AstridError

        raise AstridError(f"{name} needs the package {package.replace('_', '-')} (pip install "
                          f"'astrid-pipeline[distributed]'): {exc}") from exc
    kind = package.removeprefix("dagster_")
    return define_asset_job(
        name, selection=SKY_SELECTION, executor_def=executor, tags={**sky_branch_job.tags, "astrid/executor": kind},
        description=f"{sky_branch_job.description} Each step runs as a {kind.title()} task.")


# --------------------------------------------------------------------------- Dask
# dagster-dask 0.29's executor hands the DagsterRun to `Client.submit` as a plain argument; distributed >= 2025
# walks every tuple among the arguments (`dask._task_spec.parse_input`), and a run over a partition range
# (its `partitions_subset`) or with a pooled step (its `run_op_concurrency`) holds Dagster records that refuse
# iteration: every sky run failed with "Iteration is not allowed on `@record` KeyRangesPartitionsSubset".
# Its task keys (`<job>.<step>`) are also the same for every run, so two runs of one job on one cluster share
# futures (dagster-io/dagster#21418). This executor keeps dagster-dask's configuration and worker-side
# execution, sends what it submits packed with Dagster's serdes, and names tasks by run.
def _execute_step_on_worker(dependencies, job_dict: dict, run_packed: str, step_keys: list, instance_ref_packed: str,
                            known_state_packed: str | None) -> list[str]:
    """Run ``step_keys`` of the run in this Dask worker; returns the Dagster events, packed.

    ``dependencies`` (the upstream steps' futures) only makes Dask wait for them.
    """
    from dagster import DagsterInstance
    from dagster._core.definitions.reconstruct import ReconstructableJob
    from dagster._core.execution.api import create_execution_plan, execute_plan
    from dagster._serdes import deserialize_value, serialize_value

    run = deserialize_value(run_packed)
    known_state = deserialize_value(known_state_packed) if known_state_packed else None
    with DagsterInstance.from_ref(deserialize_value(instance_ref_packed)) as instance:
        job = ReconstructableJob.from_dict(job_dict).get_subset(op_selection=run.resolved_op_selection)
        plan = create_execution_plan(job, run_config=run.run_config, step_keys_to_execute=step_keys,
                                     known_state=known_state)
        return [serialize_value(e) for e in execute_plan(plan, job, instance, run, run_config=run.run_config)]


def _dask_executor_class():
    from dagster_dask.executor import DaskExecutor, get_dask_resource_requirements

    class SkyDaskExecutor(DaskExecutor):
        """dagster-dask's executor with packed submissions and per-run task keys (see above)."""

        def execute(self, plan_context, execution_plan):
            import dask.distributed
            from dagster._core.errors import raise_execution_interrupts
            from dagster._serdes import deserialize_value, serialize_value
            from dagster._utils import iterate_with_context

            from astrid_pipeline.errors import AstridError

            instance = plan_context.instance
            if not instance.is_persistent:
                raise AstridError("the Dask executor needs a persistent Dagster instance (set DAGSTER_HOME); "
                                  "materialize() and ephemeral instances cannot be reached from the workers")
            run = plan_context.dagster_run
            own_cluster = None
            if self.cluster_type == "existing":
                cluster = self.cluster_configuration["address"]
            elif self.cluster_type == "local":
                cluster = own_cluster = dask.distributed.LocalCluster(**self.build_dict(plan_context.job_name))
            else:
                raise AstridError(f"Dask cluster kind {self.cluster_type!r}: start it outside Dagster (dask-jobqueue, "
                                  "dask-kubernetes, ...) and give its scheduler as cluster: {existing: {address: ...}}")
            job_dict = plan_context.reconstructable_job.to_dict()
            run_packed, ref_packed = serialize_value(run), serialize_value(instance.get_ref())
            known = execution_plan.known_state
            known_packed = serialize_value(known) if known is not None else None
            try:
                with dask.distributed.Client(cluster) as client:
                    futures = {}
                    for level in execution_plan.get_steps_to_execute_by_level():
                        for step in level:
                            deps = [futures[k] for inp in step.step_inputs for k in inp.dependency_keys if k in futures]
                            futures[step.key] = client.submit(
                                _execute_step_on_worker, deps, job_dict, run_packed, [step.key], ref_packed,
                                known_packed, key=f"{plan_context.job_name}.{step.key}.{run.run_id}", pure=False,
                                resources=get_dask_resource_requirements(step.tags))
                    done = dask.distributed.as_completed(list(futures.values()), with_results=True)
                    for _future, packed in iterate_with_context(raise_execution_interrupts, done):
                        for event in packed:
                            yield deserialize_value(event)
            finally:
                if own_cluster is not None:
                    own_cluster.close()

    return SkyDaskExecutor


@functools.cache
def sky_dask_executor():
    """The ``dask`` executor of ``sky_branch_dask_job``: dagster-dask's configuration (``cluster: existing |
    local``), runs over partition ranges and pools that dagster-dask 0.29 cannot submit (see above)."""
    from dagster import ExecutorDefinition
    from dagster_dask import dask_executor

    cls = _dask_executor_class()

    def create(init_context):
        ((kind, configuration),) = init_context.executor_config["cluster"].items()
        return cls(kind, configuration)

    return ExecutorDefinition(name="dask", config_schema=dask_executor.config_schema,
                              requirements=dask_executor.get_requirements, executor_creation_fn=create,
                              description="Dask executor (dagster-dask's configuration) for the sky jobs.")


@functools.cache
def distributed_definitions():
    """The default Definitions plus the distributed sky jobs whose executor package is installed."""
    import dagster as dg

    base = importlib.import_module(DEFINITIONS_MODULE).defs
    jobs = [sky_job_on(name) for name in available_jobs()]
    return dg.Definitions.merge(base, dg.Definitions(jobs=jobs)) if jobs else base


def celery_job_def():
    """``sky_branch_celery_job`` resolved against the definitions (for ``reconstructable`` / ``execute_job``)."""
    return distributed_definitions().resolve_job_def(CELERY_JOB)


def dask_job_def():
    """``sky_branch_dask_job`` resolved against the definitions (for ``reconstructable`` / ``execute_job``)."""
    return distributed_definitions().resolve_job_def(DASK_JOB)


def __getattr__(name: str):
    # `defs` is built on first access (PEP 562): the defs-folder loader lists module attributes with dir(),
    # so it never builds it, while a code location naming `attribute: defs` gets it
    if name == "defs":
        return distributed_definitions()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
