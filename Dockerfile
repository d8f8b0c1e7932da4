# webvirt image: one image for the web, worker, beat and watcher processes (see docker-compose.yml).
# It talks to hypervisors only through libvirt connections: mount the host's libvirt socket
# (/var/run/libvirt) or register remote hosts (qemu+ssh://, qemu+tls://).

# Front-end packages, pinned by package-lock.json.
FROM node:20-bookworm-slim AS frontend
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund

# Python packages; libvirt-python is built from source against Debian's libvirt.
FROM python:3.11-slim-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends libvirt-dev pkg-config gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -r /tmp/requirements.txt

FROM python:3.11-slim-bookworm
# libvirt0: the client library; openssh-client: qemu+ssh:// connections to remote hosts.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libvirt0 openssh-client \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home --home-dir /home/webvirt --shell /usr/sbin/nologin webvirt \
    && mkdir -p /var/lib/webvirt \
    && chown webvirt:webvirt /var/lib/webvirt
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    WEBVIRT_STATE_DIR=/var/lib/webvirt
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --from=frontend /src/node_modules /app/node_modules
COPY . /app
# Static files are collected into the image; the keys here exist only for this build step.
RUN WEBVIRT_SECRET_KEY=collectstatic-only WEBVIRT_ENCRYPTION_KEY=collectstatic-only \
    WEBVIRT_STATE_DIR=/tmp/webvirt-build python manage.py collectstatic --noinput \
    && rm -rf /tmp/webvirt-build
USER webvirt
EXPOSE 8000
CMD ["uvicorn", "webvirt.asgi:application", "--host", "0.0.0.0", "--port", "8000", \
     "--ws", "websockets", "--ws-per-message-deflate", "false", \
     "--no-proxy-headers"]
