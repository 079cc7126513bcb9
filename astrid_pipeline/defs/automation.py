"""The automation sensor of every branch other than the sky's (which has its own, in ``defs/sky/automation.py``).

The detector and M.M.Cosmic assets re-materialize when their code version changes (and the detections when a
new simulated exposure lands); without a sensor that evaluates their automation conditions, Dagster's default
one would be created STOPPED and they would never run on their own. This one is on by default.
"""

from dagster import AssetSelection, AutomationConditionSensorDefinition, DefaultSensorStatus

from astrid_pipeline.defs.sky.jobs import SKY_SELECTION

branch_automation_sensor = AutomationConditionSensorDefinition(
    "branch_automation_sensor", target=AssetSelection.all() - SKY_SELECTION,
    default_status=DefaultSensorStatus.RUNNING, minimum_interval_seconds=60,
    description="Evaluates the automation conditions of the detector, M.M.Cosmic and training assets (code "
                "version changed, new upstream data).")
