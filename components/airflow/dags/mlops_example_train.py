"""Example pipeline on the platform: train a tiny scikit-learn model, log its parameters, metrics and the model to the
platform's MLflow, register it as `example-model` and point the `champion` alias at the new version (dev's model
serving follows that alias).

The file is delivered to the pods on its own (a ConfigMap, or git-sync): it imports nothing from this repository.

Why a virtualenv task: the official Airflow image has neither MLflow nor scikit-learn, and installing them next to
Airflow would mix two sets of pins (MLflow's and Airflow's clash). `@task.virtualenv` builds a separate environment
from the pinned requirements below, once per pod (`venv_cache_path`), with uv when the image has it; the Airflow
processes stay exactly the official image. Pipelines whose environment is heavy or must not be downloaded at run time
belong in their own image (KubernetesPodOperator, or the Kubernetes executor's pod override).
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import dag, task

DAG_ID = "mlops_example_train"
MODEL_NAME = "example-model"
ALIAS = "champion"
EXPERIMENT = "airflow-example"
# The MLflow client equals the platform's server release; scikit-learn the release the serving tests load models with;
# skops is how MLflow 3 saves scikit-learn models by default (the full mlflow package brings it, mlflow-skinny not).
REQUIREMENTS = ["mlflow-skinny==3.15.1", "scikit-learn==1.9.1", "pandas==2.3.3", "skops==0.16.0"]
# Where task environments are kept between runs: the pod's /tmp emptyDir (the root filesystem is read-only).
VENV_CACHE = os.environ.get("MLOPS_TASK_VENV_CACHE", "/tmp/airflow-venvs")


@dag(
    dag_id=DAG_ID,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["mlops-example"],
    doc_md=__doc__,
)
def mlops_example_train():
    @task.virtualenv(
        task_id="train_and_register",
        requirements=REQUIREMENTS,
        system_site_packages=False,
        # The image's interpreter (apache/airflow:<version>-python3.11). Without it uv looks for a bare `python`.
        python_version="3.11",
        venv_cache_path=VENV_CACHE,
    )
    def train_and_register(model_name: str, alias: str, experiment: str) -> dict:
        # Runs in the task's virtualenv: MLFLOW_TRACKING_URI comes from the pod's environment.
        import mlflow
        import mlflow.sklearn
        import pandas as pd
        from mlflow import MlflowClient
        from mlflow.models import infer_signature
        from sklearn import __version__ as sklearn_version
        from sklearn.linear_model import LinearRegression

        frame = pd.DataFrame({"x1": [0.0, 1.0, 2.0, 3.0, 4.0], "x2": [1.0, 0.0, 1.0, 0.0, 1.0]})
        target = 2.0 * frame["x1"] + frame["x2"] + 1.0
        model = LinearRegression().fit(frame, target)
        mlflow.set_experiment(experiment)
        with mlflow.start_run() as run:
            mlflow.log_params({"model": "LinearRegression", "rows": len(frame)})
            mlflow.log_metric("r2", float(model.score(frame, target)))
            info = mlflow.sklearn.log_model(
                model, name="model", registered_model_name=model_name, input_example=frame.head(2),
                signature=infer_signature(frame, target),
                # Given, not inferred: inference would run the model again in a subprocess.
                pip_requirements=[f"scikit-learn=={sklearn_version}"],
            )
        version = str(info.registered_model_version)
        MlflowClient().set_registered_model_alias(model_name, alias, version)
        return {"run_id": run.info.run_id, "version": version}

    train_and_register(MODEL_NAME, ALIAS, EXPERIMENT)


mlops_example_train()
