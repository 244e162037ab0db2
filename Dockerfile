# The gRPC server image. Envoy runs from the official envoyproxy/envoy image (docker-compose.yml).
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /srv
COPY pyproject.toml README.md ./
COPY server ./server
COPY gen ./gen
COPY envoy ./envoy
# /run/livechat: where the workers' Unix sockets for Envoy go (LIVECHAT_EDGE_SOCKET_DIR in
# docker-compose.yml); the server refuses a socket directory anyone else could write to.
RUN pip install . \
    && useradd --system --uid 10001 --no-create-home livechat \
    && install -d -o livechat -g livechat -m 0700 /run/livechat

USER livechat
EXPOSE 50051
HEALTHCHECK --interval=5s --timeout=3s --retries=5 CMD ["livechat", "health"]
CMD ["livechat", "serve"]
