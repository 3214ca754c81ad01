# Event Watcher on Red Hat UBI 9 with Python 3.11.
#
#   docker build -t event-watcher .
#   docker run -v $PWD/conf:/etc/config:z \
#       -v $PWD/kubernetes.io/serviceaccount:/var/run/secrets/kubernetes.io/serviceaccount:z \
#       -e CONFIG_FILE=/etc/config/config.ini event-watcher
#
# Two stages: the first builds wheels and installs them with pip into a virtual environment; the second
# is the same Python 3.11 base with the compilers removed, and gets only that finished environment. The
# application is owned by root and read-only to the user that runs it; it runs as UID 1001 here and as
# any arbitrary UID (always in group 0) under OpenShift's restricted SCC.

ARG BASE_IMAGE=registry.access.redhat.com/ubi9/python-311:1

# --- build: wheels for the package and its dependencies, installed into /opt/event-watcher ----------
FROM ${BASE_IMAGE} AS build

USER 0
RUN mkdir -p /src /wheels /opt/event-watcher && chown 1001:0 /src /wheels /opt/event-watcher
USER 1001
WORKDIR /src
COPY --chown=1001:0 setup.py pyproject.toml README.md watch.py ./
COPY --chown=1001:0 watcher/ watcher/
COPY --chown=1001:0 plugins/ plugins/
# All runtime dependencies ship binary wheels for x86_64 and aarch64; --only-binary keeps it that way,
# so nothing is compiled and no build dependency leaks into the image.
RUN /usr/bin/python3.11 -m venv /opt/event-watcher \
    && /opt/event-watcher/bin/pip install --no-cache-dir --upgrade "pip>=24" \
    && /opt/event-watcher/bin/pip wheel --no-cache-dir --wheel-dir /wheels --only-binary=:all: \
        --no-binary=event-watcher . \
    && /opt/event-watcher/bin/pip install --no-cache-dir --no-index --find-links /wheels event-watcher \
    && /opt/event-watcher/bin/pip uninstall --yes pip setuptools \
    && /opt/event-watcher/bin/python -c "import watcher.cli" \
    && chmod -R u=rwX,g=rX,o=rX /opt/event-watcher

# --- runtime -----------------------------------------------------------------------------------------
FROM ${BASE_IMAGE}

LABEL name="event-watcher" \
      summary="Watch an OpenShift/Kubernetes resource and hand every change to plugins" \
      io.k8s.display-name="Event Watcher" \
      io.k8s.description="Watches one Kubernetes/OpenShift resource and hands every change to plugins." \
      io.openshift.expose-services="8080:http" \
      io.openshift.tags="event-watcher,python311"

USER 0
# The builder base image carries a C/C++/Fortran toolchain; the runtime needs none of it. Removal works
# from the local RPM database, so no repository is contacted.
RUN dnf -y --disablerepo='*' remove gcc gcc-c++ gcc-gfortran cpp make autoconf automake \
    && dnf -y clean all \
    && rm -rf /var/cache/dnf /var/cache/yum

COPY --from=build /opt/event-watcher /opt/event-watcher
COPY docker/entrypoint.sh /usr/local/bin/event-watcher-entrypoint

# /etc/config and /etc/watcher are where the seed's `docker run` lines mount config.ini; they exist in
# the image so that the mount points are there even with a read-only root filesystem. Group 0 owns
# them (OpenShift runs the container as an arbitrary UID whose group is always 0).
RUN mkdir -p /etc/config /etc/watcher \
    && chgrp 0 /etc/config /etc/watcher \
    && chmod 0775 /etc/config /etc/watcher \
    && chmod 0755 /usr/local/bin/event-watcher-entrypoint

ENV PATH="/opt/event-watcher/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# The probes and /metrics (metrics_port, default 8080).
EXPOSE 8080

USER 1001
WORKDIR /opt/app-root/src
ENTRYPOINT ["/usr/local/bin/event-watcher-entrypoint"]
# The base image's CMD prints s2i usage; clear it so that `docker run IMAGE` just starts the watcher.
CMD []
