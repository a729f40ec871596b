"""A bounded PyFlink job for the cluster test; runs in the Flink venv (``flink run``), never imported by pytest.

datagen rows pass through a Python UDF (so the TaskManager really starts a Python worker from the venv that the
cluster's configuration names) into a blackhole, and the job ends. ``--name`` becomes the job's name, so the test
finds it in the REST API and knows the arguments after ``--`` reached the job.
"""

import argparse

from pyflink.table import DataTypes, EnvironmentSettings, TableEnvironment
from pyflink.table.udf import udf


@udf(result_type=DataTypes.BIGINT())
def plus_one(n: int) -> int:
    return n + 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--rows", type=int, default=100)
    options = parser.parse_args()
    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    t_env.get_config().set("pipeline.name", options.name)
    t_env.create_temporary_function("plus_one", plus_one)
    rows = f"'number-of-rows' = '{options.rows}'"
    t_env.execute_sql(f"CREATE TABLE src (n BIGINT) WITH ('connector' = 'datagen', {rows})")
    t_env.execute_sql("CREATE TABLE sink (n BIGINT) WITH ('connector' = 'blackhole')")
    t_env.execute_sql("INSERT INTO sink SELECT plus_one(n) FROM src").wait()


if __name__ == "__main__":
    main()
