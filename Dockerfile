# The Airflow image of the production deployment (docker-compose.yaml): Apache Airflow 3.3.2 on
# Python 3.11, restic, and ys1000 with its production extra (Celery executor, PostgreSQL).
#   docker build -t ys1000/airflow:0.1.0 .
ARG AIRFLOW_VERSION=3.3.2
ARG RESTIC_VERSION=v0.18.1

# restic from the Go module proxy, the same way `make setup` builds it (exact version: @latest
# resolves to an old release)
FROM golang:1.26-bookworm AS restic
ARG RESTIC_VERSION
RUN CGO_ENABLED=0 GOBIN=/out GOFLAGS=-buildvcs=false \
    go install github.com/restic/restic/cmd/restic@${RESTIC_VERSION}

FROM apache/airflow:${AIRFLOW_VERSION}-python3.11
ARG AIRFLOW_VERSION
COPY --from=restic /out/restic /usr/local/bin/restic

# the package (plugins/ys1000), installed against the project's frozen dependency set; Airflow is
# pinned again so pip can never replace the image's own Airflow
COPY --chown=airflow:0 pyproject.toml README.md requirements.lock /opt/ys1000/src/
COPY --chown=airflow:0 plugins /opt/ys1000/src/plugins
RUN pip install --no-cache-dir -c /opt/ys1000/src/requirements.lock \
        "apache-airflow==${AIRFLOW_VERSION}" "/opt/ys1000/src[production]"

# defaults baked in; docker-compose.yaml mounts the project's own dags/, config/ and include/
COPY --chown=airflow:0 dags /opt/airflow/dags
COPY --chown=airflow:0 config /opt/ys1000/config
COPY --chown=airflow:0 include /opt/ys1000/include
ENV YS1000_CONFIG_DIR=/opt/ys1000/config
RUN restic version && python -c "import ys1000.airflow.dagfactory, airflow.providers.celery, airflow.providers.postgres"
