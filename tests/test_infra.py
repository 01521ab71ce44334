"""The cluster files carry the S3 credentials path to every node that touches s3:// (issue 25)."""

from pathlib import Path

import yaml

INFRA = Path(__file__).resolve().parents[1] / "infra"


def test_every_cluster_node_gets_s3_credentials_without_keys_in_files():
    cluster = yaml.safe_load((INFRA / "cluster.yaml").read_text())
    for name, node in cluster["available_node_types"].items():
        assert "IamInstanceProfile" in node["node_config"], name  # boto3 / pyarrow / s3fs: the instance role
    text = (INFRA / "cluster.yaml").read_text() + (INFRA / "rayjob.yaml").read_text()
    assert "AWS_SECRET_ACCESS_KEY=" not in text and "aws_secret_access_key:" not in text.lower()  # no keys


def test_every_rayjob_pod_runs_as_the_s3_service_account_or_reads_the_s3_secret():
    job = yaml.safe_load((INFRA / "rayjob.yaml").read_text())["spec"]["rayClusterSpec"]
    pods = [job["headGroupSpec"]["template"]["spec"], *(g["template"]["spec"] for g in job["workerGroupSpecs"])]
    for pod in pods:
        assert pod["serviceAccountName"] == "rtml-s3"
        for c in pod["containers"]:
            assert {"name": "rtml-s3", "optional": True} in [e["secretRef"] for e in c["envFrom"]]


def test_rayjob_entrypoint_is_a_valid_rtml_train_command():
    """The RayJob's entrypoint parses with today's flags (a renamed flag would fail only on the cluster)."""
    import shlex

    from rtml.cli import recipes
    from rtml.cli.parsing import parse_from_recipe
    from rtml.platform.train.config import TrainConfig, check

    words = shlex.split(yaml.safe_load((INFRA / "rayjob.yaml").read_text())["spec"]["entrypoint"])
    assert words[:2] == ["rtml", "train"]
    cfg = parse_from_recipe(words[2:], TrainConfig, recipes.TRAIN, prog="rtml train", check=check)
    assert cfg.data.store == "s3://rtml-data/train.zarr" and cfg.scaling.num_workers == 8 and cfg.recipe == "base"
