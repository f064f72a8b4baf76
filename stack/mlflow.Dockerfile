# The MLflow server of stack/compose.yaml: the official image plus the PostgreSQL driver and
# the S3 client its store and artifacts need (versions as in requirements.lock).
# Not exercised here (no container engine on the build machine): see compose.yaml's header.
FROM ghcr.io/mlflow/mlflow:v3.17.2
RUN pip install --no-cache-dir psycopg2-binary==2.9.13 boto3==1.43.117
