# agent-billing image: the official Airflow 3.3.2 image (Python 3.11, the version requirements.txt
# was resolved on) extended with the pinned requirements and the agent_billing package.
# Used by docker-compose.yaml (`build: .`) and, pushed to a registry, by the official Helm chart.
# See docs/deployment.md.
#
# The bare tag apache/airflow:3.3.2 carries the image's default Python (newer than 3.11); the
# -python3.11 tag is the same Airflow release on Python 3.11.
FROM apache/airflow:3.3.2-python3.11

# pip runs as the airflow user: the image installs Python packages into the airflow user's
# ~/.local virtualenv and refuses installs as root.
USER airflow

# requirements.txt pins the whole runtime set, apache-airflow==3.3.2 and the providers the compose
# file uses (celery + redis for the executor, fab for the login) included; test tools live in
# requirements-dev.txt and stay out of the image. Naming apache-airflow again with the image's own
# ${AIRFLOW_VERSION} (the official "extend the image" recipe) makes pip stop with a conflict
# rather than silently up- or downgrade Airflow should a pin ever disagree with the base image.
COPY --chown=airflow:0 requirements.txt /requirements.txt
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /requirements.txt

# The product, installed from its wheel: agent_billing with its SQL (include/sql ships inside
# the wheel) and migrations. The simulator and the demo (dev/pyproject.toml) are left out.
# pyproject.toml declares README.md as the project's readme, so setuptools needs it to build.
# The build directory is made by the airflow user first: a COPY creates missing parent
# directories root-owned on some builders, and setuptools writes its egg-info into include/.
RUN mkdir -p /tmp/agent-billing/include
COPY --chown=airflow:0 pyproject.toml setup.py README.md /tmp/agent-billing/
COPY --chown=airflow:0 include/agent_billing/ /tmp/agent-billing/include/agent_billing/
COPY --chown=airflow:0 include/sql/ /tmp/agent-billing/include/sql/
RUN pip install --no-cache-dir --no-deps /tmp/agent-billing && rm -rf /tmp/agent-billing

# DAGs and plugins baked in, so the image runs on its own (Kubernetes executor pods, Helm chart);
# docker-compose.yaml mounts ./dags and ./plugins over them.
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/

# Airflow puts the DAGs and plugins folders on sys.path itself; agent_billing is installed.
# (docker-compose.yaml mounts ./include and puts it first on PYTHONPATH, so that code edited
# there runs without a rebuild; the image on its own runs the installed wheel.)
ENV AIRFLOW__CORE__DAGS_FOLDER=/opt/airflow/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/airflow/plugins \
    AGENT_BILLING_RAW_PATH=/opt/airflow/data/raw

# The raw landing. The image runs with an arbitrary UID and GID 0, so the directory is
# group-writable (umask 0002, as the image documentation asks for writable directories).
# In production it is a volume shared by every worker (docs/deployment.md).
RUN umask 0002 && mkdir -p /opt/airflow/data/raw
